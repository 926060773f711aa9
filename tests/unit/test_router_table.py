"""The compiled table: priority order, host dispatch, broken routers left out, balancing."""

from __future__ import annotations

from typing import Any

import pytest

from kade.router.balancer import Server, Service, parse_server_url
from kade.router.metrics import Stats
from kade.router.table import Table, TableError, compile_table
from tests.unit.test_router_rules import Req


def compile_(data: dict[str, Any]) -> Table:
    servers: dict[str, Server] = {}

    def server_for(url: str, task: str) -> Server:
        host, port = parse_server_url(url)
        return servers.setdefault(url, Server(url, host, port, task))

    return compile_table(data, server_for, lambda r, s: Stats(r, s))


def table_of(*routers: tuple[str, str, int]) -> Table:
    return compile_({
        "revision": 1,
        "routers": [{"name": n, "rule": rule, "priority": p, "service": "s"}
                    for n, rule, p in routers],
        "services": {"s": {"servers": [{"url": "http://127.0.0.1:1"}]}},
    })


def found(table: Table, req: Req) -> str | None:
    route = table.find(req)
    return route.name if route is not None else None


CASES = [
    # (request, expected router)
    (Req(host="www.localhost", path="/"), "www"),
    (Req(host="www.localhost", path="/api/x"), "www-api"),  # longer rule wins by default
    (Req(host="www.localhost", path="/admin"), "admin"),  # explicit priority beats length
    (Req(host="other.localhost", path="/"), "catch-all"),
    (Req(host="other.localhost", path="/static/a.css"), "static"),
    (Req(host="www.localhost", path="/static/a.css"), "www"),  # www outranks static by length
    (Req(host="api.localhost", path="/"), "either"),
    (Req(host="b.localhost", path="/"), "either"),
    (Req(host="b.localhost", path="/x", method="POST"), "catch-all"),
]


@pytest.mark.parametrize(("req", "expected"), CASES,
                         ids=[f"{c[0].host}{c[0].path}" for c in CASES])
def test_most_specific_router_wins(req: Req, expected: str) -> None:
    table = table_of(
        ("www", "Host(`www.localhost`)", 0),
        ("www-api", "Host(`www.localhost`) && PathPrefix(`/api`)", 0),
        ("admin", "PathPrefix(`/admin`)", 1000),
        ("static", "PathPrefix(`/st`)", 0),
        ("either", "(Host(`api.localhost`) || Host(`b.localhost`)) && Method(`GET`)", 0),
        ("catch-all", "PathPrefix(`/`)", 1),
    )
    assert found(table, req) == expected


def test_equal_priority_is_decided_by_name() -> None:
    table = table_of(("b", "Host(`x`)", 5), ("a", "Host(`x`)", 5))
    assert found(table, Req(host="x")) == "a"


def test_no_router_matches() -> None:
    table = table_of(("www", "Host(`www.localhost`)", 0))
    assert found(table, Req(host="nope")) is None


def test_broken_routers_are_listed_and_the_rest_serve() -> None:
    table = compile_({
        "revision": 3,
        "routers": [
            {"name": "ok", "rule": "Host(`a`)", "service": "s", "app": "/a"},
            {"name": "bad", "rule": "Host(`a`", "service": "s", "app": "/b"},
            {"name": "orphan", "rule": "Host(`c`)", "service": "missing", "app": "/c"},
            {"name": "ok", "rule": "Host(`d`)", "service": "s"},
            "not an object",
        ],
        "services": {"s": {"servers": [{"url": "http://127.0.0.1:1"}, {"url": "ftp://x"}]}},
        "errors": [{"app": "/z", "router": "z", "message": "from the control plane"}],
    })
    assert [r.name for r in table.routes] == ["ok"]
    messages = [e["message"] for e in table.errors]
    assert "from the control plane" in messages
    assert any("only http:// is supported" in m for m in messages)
    assert any(m.startswith("rule `Host(`a`") for m in messages)
    assert "unknown service 'missing'" in messages
    assert any("used twice" in m for m in messages)
    assert len(table.services["s"].servers) == 1


@pytest.mark.parametrize("data", [
    [], {"revision": "1"}, {"revision": -1}, {"revision": 1, "routers": {}},
    {"revision": True},
])
def test_unusable_tables_are_refused_whole(data: Any) -> None:
    with pytest.raises(TableError):
        compile_(data)


def servers(n: int) -> list[Server]:
    return [Server(f"http://127.0.0.1:{i}", "127.0.0.1", i) for i in range(1, n + 1)]


def test_round_robin_takes_turns() -> None:
    svc = Service("s", "round-robin", servers(3))
    picks = [svc.pick() for _ in range(6)]
    assert [p.port for p in picks if p] == [1, 2, 3, 1, 2, 3]


def test_least_conn_prefers_the_least_busy() -> None:
    pool = servers(3)
    pool[0].inflight, pool[1].inflight, pool[2].inflight = 5, 1, 3
    svc = Service("s", "least-conn", pool)
    assert svc.pick() is pool[1]
    pool[1].inflight = 9
    assert svc.pick() is pool[2]


def test_pick_skips_excluded_servers_and_empty_services() -> None:
    pool = servers(2)
    svc = Service("s", "round-robin", pool)
    for _ in range(4):
        assert svc.pick(exclude=(pool[0],)) is pool[1]
    assert svc.pick(exclude=tuple(pool)) is None
    assert Service("e", "round-robin", []).pick() is None


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("http://[::1]:81", ("::1", 81)),
    ("http://example.com", ("example.com", 80)),
])
def test_server_urls(url: str, expected: tuple[str, int]) -> None:
    assert parse_server_url(url) == expected


@pytest.mark.parametrize("url", ["https://a:1", "http://:80", "http://a:x", "http://a:1/path"])
def test_bad_server_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_server_url(url)


def test_routes_marked_tls() -> None:
    table = compile_({
        "revision": 1,
        "routers": [{"name": "a", "rule": "Host(`a`)", "service": "s", "tls": True},
                    {"name": "b", "rule": "Host(`b`)", "service": "s", "tls": "yes"},
                    {"name": "c", "rule": "Host(`c`)", "service": "s"}],
        "services": {"s": {"servers": []}},
    })
    assert {r.name: r.tls for r in table.routes} == {"a": True, "b": False, "c": False}
