"""The app page's own judgement, with plain values: which tasks are ended, which failed last,
the DNS names of an app, the queries of its charts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from kade import model
from kade.api.app import create_app
from kade.api.security import SecurityConfig
from kade.auth import create_token
from kade.spec import parse_app
from kade.store import SqliteStore
from kade.ui.app_page import chart_queries, dns_names, last_failed, split_tasks
from kade.ui.pages import ui_router


def task(id_: str, state: str, started: str | None) -> dict[str, object]:
    return {"id": id_, "state": state, "startedAt": started, "stagedAt": "2026-01-01T00:00:00Z"}


def test_tasks_are_split_into_active_and_ended_newest_first() -> None:
    tasks = [task("a", "TASK_RUNNING", "2026-01-01T00:00:01Z"),
             task("b", "TASK_FAILED", "2026-01-01T00:00:02Z"),
             task("c", "TASK_STAGING", None),
             task("d", "TASK_KILLED", "2026-01-01T00:00:03Z"),
             task("e", "TASK_RUNNING", "2026-01-01T00:00:04Z")]
    active, ended = split_tasks(tasks)
    assert [t["id"] for t in active] == ["e", "a", "c"]
    assert [t["id"] for t in ended] == ["d", "b"]


def test_the_last_failed_task_is_the_newest_failed_one() -> None:
    tasks = [task("b", "TASK_FAILED", "2026-01-01T00:00:02Z"),
             task("d", "TASK_KILLED", "2026-01-01T00:00:09Z"),
             task("f", "TASK_FAILED", "2026-01-01T00:00:05Z")]
    found = last_failed(tasks)
    assert found is not None and found["id"] == "f"
    assert last_failed([task("a", "TASK_RUNNING", None)]) is None


def test_dns_names_follow_the_service_name_and_named_ports() -> None:
    app = parse_app({"id": "/shop/web", "cmd": "x",
                     "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0}]}).app
    assert dns_names(app) == ("web-shop", ["web-shop.service.consul",
                                           "http.web-shop.service.consul"], None)
    labelled = parse_app({"id": "/shop/web", "cmd": "x",
                          "labels": {"kade.service.name": "Bad_"}}).app
    name, names, problem = dns_names(labelled)
    assert name == "web-shop" and problem is not None and "not a valid service name" in problem


def test_chart_queries_quote_the_app_and_service() -> None:
    queries = {c["id"]: c["query"] for c in chart_queries('/a"b', "web-shop")}
    assert queries["cpu"] == 'sum by (task) (rate(kade_task_cpu_seconds_total{app="/a\\"b"}[$w]))'
    assert 'service="web-shop",code="5xx"' in queries["errors"]
    assert queries["p99"].startswith("histogram_quantile(0.99, ")
    assert set(queries) == {"cpu", "memory", "requests", "errors", "p99"}


# -- the page as the server renders it, on a store without nodes ---------------------------

NOW = 1_800_000_000.0
BASE = "http://127.0.0.1:7400"
LIVE_BLOCKS = ("live_header", "live_tasks", "live_versions", "live_deployments",
               "live_service", "live_alerts")


@pytest.fixture
async def api(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    def clock() -> float:
        return NOW
    app = create_app(store, clock=clock, extra=[ui_router(store, clock)],
                     security=SecurityConfig())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


async def bearer(store: SqliteStore, role: str) -> dict[str, str]:
    text, _ = await create_token(store, role=role, now=NOW)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {text}"}


async def test_a_read_token_sees_the_app_and_no_button_that_changes_it(
        api: httpx.AsyncClient, store: SqliteStore) -> None:
    admin, read = await bearer(store, "admin"), await bearer(store, "read")
    put = await api.put("/v1/apps/shop/web", headers=admin,
                        json={"id": "/shop/web", "cmd": "sleep 1000", "instances": 2,
                              "env": {"SECRET": "hunter2"},
                              "routes": [{"rule": "Host(`shop.localhost`)"}]})
    assert put.status_code == 200, put.text
    shown = await api.get("/ui/apps/shop/web", headers=read)
    assert shown.status_code == 200
    text = shown.text
    assert "/shop/web" in text and "web-shop.service.consul" in text
    assert "Host(`shop.localhost`)" in text
    assert "hunter2" not in text
    for action in ("data-action=", ">Kill<", "Roll back", ">Destroy<", "Edit</a>"):
        assert action not in text, action
    full = await api.get("/ui/apps/shop/web", headers=admin)
    assert 'data-action="POST /v1/apps/shop/web/scale"' in full.text
    assert '/ui/deploy/shop/web' in full.text
    for block in LIVE_BLOCKS:
        part = await api.get("/ui/apps/shop/web", params={"fragment": block}, headers=read)
        assert part.status_code == 200, (block, part.text)
        assert "<html" not in part.text


async def test_an_unreadable_app_is_shown_with_its_reason(api: httpx.AsyncClient,
                                                           store: SqliteStore) -> None:
    await store.put(model.app_key("/shop/broken"), b'{"id": "/shop/broken", "mem": "lots"}')
    shown = await api.get("/ui/apps/shop/broken", headers=await bearer(store, "admin"))
    assert shown.status_code == 200
    assert "cannot be read" in shown.text and "quarantined" in shown.text


async def test_a_missing_app_and_the_editors_path_are_not_this_page(
        api: httpx.AsyncClient, store: SqliteStore) -> None:
    admin = await bearer(store, "admin")
    missing = await api.get("/ui/apps/shop/none", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["message"] == "app /shop/none does not exist"
    # a live region of an app destroyed while its page is open says so
    region = await api.get("/ui/apps/shop/none", params={"fragment": "live_tasks"},
                           headers=admin)
    assert region.status_code == 200
    assert region.text == '<p class="empty">app /shop/none does not exist</p>'
    await api.put("/v1/apps/shop/web", headers=admin, json={"id": "/shop/web", "cmd": "x"})
    edit = await api.get("/ui/deploy/shop/web", headers=admin)
    assert "Versions" not in edit.text


async def test_an_unknown_live_region_is_refused_in_plain_text(api: httpx.AsyncClient,
                                                               store: SqliteStore) -> None:
    """The region's name comes from the address: it is never sent back as markup."""
    injected = '<meta http-equiv="refresh" content="0;url=https://example.invalid">'
    r = await api.get("/ui/apps", params={"fragment": injected},
                      headers=await bearer(store, "admin"))
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith("no live region '<meta")
