"""The router under attack: stalled bodies, abandoned requests, bytes smuggled after an
`Upgrade`, a catastrophic regexp, absolute-form URIs and spoofed forwarding headers.

Each test runs a real `python -m kade.router` against real upstream sockets on 127.0.0.1 and
asserts what the attacker (or the app behind the router) sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_router_support import (
    ControlPlane,
    Env,
    RouterProcess,
    Upstream,
    raw_request,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def router_env(tmp_path: Path, *args: str) -> AsyncIterator[Env]:
    cp = await ControlPlane().start()
    router = RouterProcess(tmp_path / "state", cp.url, *args)
    try:
        await router.start()
        yield Env(cp, router)
        assert await router.stop() == 0
        assert "Traceback" not in router.logs(), router.logs()
    finally:
        await router.stop()
        await cp.stop()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = await Upstream("app").start()
    yield up
    await up.stop()


def open_fds(router: RouterProcess) -> int:
    assert router.proc is not None
    return len(os.listdir(f"/proc/{router.proc.pid}/fd"))


Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    """Raw client connections a test opens; closed at the end whatever happened."""
    opened: list[Client] = []
    yield opened
    for _, writer in opened:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def one_request(clients: list[Client], port: int, data: bytes) -> Client:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clients.append((reader, writer))
    writer.write(data)
    await writer.drain()
    return reader, writer


async def test_stalled_bodies_get_408_and_free_both_connections(
        tmp_path: Path, upstream: Upstream, clients: list[Client]) -> None:
    async with router_env(tmp_path, "--body-timeout", "1") as env:
        await env.route_one("PathPrefix(`/`)", upstream)
        assert (await raw_request(env.router.port, b"GET / HTTP/1.1\r\nHost: a\r\n"
                                  b"Connection: close\r\n\r\n")).startswith(b"HTTP/1.1 200")
        baseline = open_fds(env.router)
        for _ in range(30):  # a body of 1,000 bytes of which 10 ever come
            await one_request(
                clients, env.router.port,
                b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789")
        # the bodies reached the app: each holds an upstream connection, for now
        await wait_until(lambda: len(upstream._writers) >= 30, 10, "30 upstream connections")
        assert open_fds(env.router) >= baseline + 55  # a client and an upstream socket each
        for reader, _ in clients:
            async with asyncio.timeout(15):
                answer = await reader.read()  # until the router closes
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            assert b"connection: close" in answer.lower()
        # the app sees its connections closed; the router holds no socket for them any more
        await wait_until(lambda: not upstream._writers, 10, "upstream connections closed")
        await wait_until(lambda: open_fds(env.router) <= baseline, 10, "fds back to baseline")
        assert upstream.seen and all(s.get("body_size") is None for s in upstream.seen[1:])


async def test_a_client_that_goes_away_frees_the_upstream_at_once(
        tmp_path: Path, upstream: Upstream, clients: list[Client]) -> None:
    # the app takes 60 s to answer: nothing may wait for it once the clients are gone
    async with router_env(tmp_path, "--response-header-timeout", "120") as env:
        await env.route_one("PathPrefix(`/`)", upstream)
        await raw_request(env.router.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close"
                                           b"\r\n\r\n")
        baseline = open_fds(env.router)
        for _ in range(20):
            await one_request(clients, env.router.port,
                              b"GET /slow?s=60 HTTP/1.1\r\nHost: a\r\n\r\n")
        for _ in range(10):  # half a body, then gone
            await one_request(clients, env.router.port, b"PUT /sink HTTP/1.1\r\nHost: a\r\n"
                                                        b"Content-Length: 100\r\n\r\nabc")
        await wait_until(lambda: upstream.requests >= 31, 10, "the requests at the app")
        assert open_fds(env.router) >= baseline + 55
        for _, writer in clients:
            writer.close()  # a FIN, as a browser tab closed or a client timing out
        await wait_until(lambda: open_fds(env.router) <= baseline, 10,
                         "the router's client and upstream sockets closed")
        text = await metrics(env)
        assert 'kade_router_requests_total{router="web",service="web",code="4xx"} 30' in text


async def metrics(env: Env) -> str:
    import httpx

    async with httpx.AsyncClient() as c:
        return (await c.get(f"{env.router.admin}/metrics")).text


SMUGGLED = (b"GET /admin HTTP/1.1\r\nHost: www.localhost\r\nX-Real-IP: 127.0.0.1\r\n"
            b"X-Forwarded-For: 127.0.0.1\r\n\r\n")


@pytest.mark.parametrize("same_packet", [True, False])
async def test_bytes_after_an_upgrade_never_reach_the_app_without_101(
        tmp_path: Path, upstream: Upstream, same_packet: bool) -> None:
    async with router_env(tmp_path) as env:
        await env.route_one("PathPrefix(`/public`)", upstream)
        upgrade = (b"GET /public/chat HTTP/1.1\r\nHost: www.localhost\r\nConnection: Upgrade\r\n"
                   b"Upgrade: websocket\r\n\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)
        if same_packet:
            writer.write(upgrade + SMUGGLED)
        else:
            writer.write(upgrade)
            await writer.drain()
            await wait_until(lambda: upstream.requests >= 1, 10, "the upgrade request")
            writer.write(SMUGGLED)
        async with asyncio.timeout(15):
            answer = await reader.read()  # the app answered 200, not 101: the router closes
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert answer.count(b"HTTP/1.1 ") == 1
        await asyncio.sleep(0.5)  # time for a smuggled request to arrive, were it sent
        assert [s["target"] for s in upstream.seen] == ["/public/chat"]


async def test_a_catastrophic_regexp_does_not_stall_routing(tmp_path: Path,
                                                            upstream: Upstream) -> None:
    async with router_env(tmp_path) as env:
        await env.route(
            [{"name": "evil", "rule": "PathRegexp(`^/(a+)+$`)", "service": "web"},
             {"name": "web", "rule": "Host(`www.localhost`)", "service": "web", "priority": 1}],
            {"web": {"servers": [{"url": upstream.url}]}})
        evil = b"/" + b"a" * 4000 + b"!"

        async def attack() -> bytes:
            return await raw_request(env.router.port, b"GET " + evil + b" HTTP/1.1\r\n"
                                     b"Host: x\r\nConnection: close\r\n\r\n")

        answers = await asyncio.gather(*(attack() for _ in range(20)))
        assert all(a.startswith(b"HTTP/1.1 404 ") for a in answers)  # matched by neither
        ok = await raw_request(env.router.port, b"GET /aaa HTTP/1.1\r\nHost: x\r\n"
                                                b"Connection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 ")  # the regexp route itself works


async def test_absolute_form_routes_and_forwards_the_authority(tmp_path: Path) -> None:
    www, api = await Upstream("www").start(), await Upstream("api").start()
    try:
        async with router_env(tmp_path) as env:
            await env.route(
                [{"name": "www", "rule": "Host(`www.localhost`)", "service": "www"},
                 {"name": "api", "rule": "Host(`api.localhost`)", "service": "api"}],
                {"www": {"servers": [{"url": www.url}]},
                 "api": {"servers": [{"url": api.url}]}})
            answer = await raw_request(
                env.router.port, b"GET http://api.localhost:8080/x?y=1 HTTP/1.1\r\n"
                                 b"Host: www.localhost\r\nConnection: close\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert www.requests == 0
            seen = api.seen[0]
            assert seen["target"] == "/x?y=1"
            hosts = [v for k, v in seen["headers"] if k.lower() == "host"]
            assert hosts == ["api.localhost:8080"]  # the original Host is not passed on
            forwarded = {k.lower(): v for k, v in seen["headers"]}
            assert forwarded["x-forwarded-host"] == "api.localhost:8080"
            for bad in (b"GET http:///x HTTP/1.1\r\nHost: www.localhost\r\n\r\n",
                        b"GET http://user@api.localhost/ HTTP/1.1\r\nHost: a\r\n\r\n",
                        b"GET ftp://api.localhost/ HTTP/1.1\r\nHost: a\r\n\r\n"):
                answer = await raw_request(env.router.port, bad)
                assert answer.startswith(b"HTTP/1.1 400 "), (bad, answer)
            assert api.requests == 1 and www.requests == 0
    finally:
        await www.stop()
        await api.stop()


SPOOFED = {"X-Forwarded-For": "10.9.9.9", "X-Real-IP": "10.9.9.9", "X-Forwarded-Proto": "https",
           "X-Forwarded-Host": "admin.internal", "X-Forwarded-Port": "443",
           "Forwarded": "for=10.9.9.9", "X-Forwarded-Prefix": "/admin"}


def request_with(headers: dict[str, str]) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"GET / HTTP/1.1\r\nHost: www.localhost\r\n{lines}Connection: close\r\n\r\n".encode()


async def test_forwarding_headers_from_clients_are_replaced(tmp_path: Path,
                                                            upstream: Upstream) -> None:
    async with router_env(tmp_path) as env:
        await env.route_one("PathPrefix(`/`)", upstream)
        for _ in range(3):  # the third time the request is served from the repeat memo
            await raw_request(env.router.port, request_with(SPOOFED))
        for seen in upstream.seen:
            got = {k.lower(): v for k, v in seen["headers"]}
            assert got["x-forwarded-for"] == "127.0.0.1"
            assert got["x-real-ip"] == "127.0.0.1"
            assert got["x-forwarded-proto"] == "http"
            assert got["x-forwarded-host"] == "www.localhost"
            assert got["x-forwarded-port"] == "80"
            assert "forwarded" not in got and "x-forwarded-prefix" not in got
            assert "10.9.9.9" not in str(seen["headers"])


async def test_a_trusted_proxy_keeps_its_forwarding_headers(tmp_path: Path,
                                                            upstream: Upstream) -> None:
    async with router_env(tmp_path, "--trusted-proxies", "10.0.0.0/8,127.0.0.1") as env:
        await env.route_one("PathPrefix(`/`)", upstream)
        for _ in range(3):
            await raw_request(env.router.port, request_with(SPOOFED))
            await raw_request(env.router.port, request_with({"X-Forwarded-For": "10.1.1.1"}))
        for seen in upstream.seen[0::2]:
            got = {k.lower(): v for k, v in seen["headers"]}
            assert got["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"  # the proxy appended
            assert got["x-real-ip"] == "10.9.9.9"
            assert got["x-forwarded-proto"] == "https"
            assert got["x-forwarded-host"] == "admin.internal"
            assert got["forwarded"] == "for=10.9.9.9"
        for seen in upstream.seen[1::2]:
            got = {k.lower(): v for k, v in seen["headers"]}
            assert got["x-forwarded-for"] == "10.1.1.1, 127.0.0.1"
            assert got["x-real-ip"] == "127.0.0.1"
            assert got["x-forwarded-proto"] == "http"


async def test_a_bad_trusted_proxies_value_stops_the_start(tmp_path: Path) -> None:
    router = RouterProcess(tmp_path / "state", "http://127.0.0.1:9", "--trusted-proxies",
                           "10.0.0.0/8,not-a-net")
    router._spawn()
    assert router.proc is not None
    code = await asyncio.to_thread(router.proc.wait, 20)
    assert code == 2
    assert "--trusted-proxies: 'not-a-net' is not an IP address or CIDR range" in router.logs()
