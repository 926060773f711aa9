"""/v2 over HTTP against the real SQLite store, without Docker: partial updates, refusals
that change nothing, quarantined apps, deployments and the queue."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from kade import model
from kade.api.app import create_app
from kade.auth import create_token
from kade.model import QueueEntry
from kade.store import SqliteStore

pytestmark = pytest.mark.timeout(60)

WEB = {"id": "/shop/web", "instances": 2, "container": {"docker": {"image": "nginx"}},
       "routes": [{"rule": "Host(`shop.example`)"}], "env": {"A": "1"}}


@pytest.fixture
async def api(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store))
    token, _ = await create_token(store, role="admin", now=0.0)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                 headers={"Authorization": f"token={token}"}) as client:
        yield client


async def test_put_is_a_partial_update_that_keeps_what_only_kade_has(
        api: httpx.AsyncClient) -> None:
    assert (await api.post("/v2/apps", json=WEB)).status_code == 201
    changed = await api.put("/v2/apps/shop/web", json={"instances": 3}, params={"force": "true"})
    assert changed.status_code == 200 and set(changed.json()) == {"version", "deploymentId"}
    v1 = (await api.get("/v1/apps/shop/web")).json()["app"]
    assert v1["instances"] == 3 and v1["routes"][0]["rule"] == "Host(`shop.example`)"
    assert v1["env"] == {"A": "1"}
    deployments = (await api.get("/v2/deployments")).json()
    assert [d["id"] for d in deployments] == [changed.json()["deploymentId"]]
    assert deployments[0]["steps"][0]["actions"] == [{"action": "ScaleApplication",
                                                      "app": "/shop/web"}]


async def test_a_refused_definition_changes_nothing(api: httpx.AsyncClient) -> None:
    await api.post("/v2/apps", json=WEB)
    before = (await api.get("/v2/apps/shop/web")).json()["app"]["version"]
    bad = await api.put("/v2/apps/shop/web", json={"mem": -1})
    assert bad.status_code == 422 and "mem: must be >= 0" in bad.json()["message"]
    group = await api.post("/v2/groups", json={"id": "/g", "apps": [
        {"id": "ok", "cmd": "sleep 1"}, {"id": "bad", "cmd": "x", "cpus": "many"}]})
    assert group.status_code == 422 and "/g/bad: cpus: must be a number" in group.text
    assert (await api.get("/v2/groups/g")).status_code == 404
    assert (await api.get("/v2/apps/shop/web")).json()["app"]["version"] == before
    assert (await api.post("/v2/apps", json=WEB)).status_code == 409


async def test_a_quarantined_app_is_named_not_hidden(store: SqliteStore,
                                                     api: httpx.AsyncClient) -> None:
    await store.put(model.app_key("/shop/web"), b'{"id": "/shop/web", "mem": null}')
    assert (await api.get("/v2/apps")).json() == {"apps": []}
    one = await api.get("/v2/apps/shop/web")
    assert one.status_code == 409 and "cannot be read" in one.json()["message"]
    replaced = await api.put("/v2/apps/shop/web", json=WEB)
    assert replaced.status_code == 201


async def test_cancelling_a_deployment_with_force_just_stops_it(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v2/apps", json=WEB)).json()
    dep_id = created["deployments"][0]["id"]
    assert (await api.delete(f"/v2/deployments/{dep_id}", params={"force": "true"})
            ).status_code == 202
    assert (await api.get("/v2/deployments")).json() == []
    assert (await api.delete(f"/v2/deployments/{dep_id}")).status_code == 404


async def test_a_cancelled_deployment_rolls_back(api: httpx.AsyncClient) -> None:
    first = (await api.post("/v2/apps", json=WEB)).json()["version"]
    changed = (await api.put("/v2/apps/shop/web", json={"env": {"A": "2"}})).json()
    rolled = await api.delete(f"/v2/deployments/{changed['deploymentId']}")
    assert rolled.status_code == 200 and rolled.json()["deploymentId"] != changed["deploymentId"]
    app = (await api.get("/v2/apps/shop/web")).json()["app"]
    assert app["env"] == {"A": "1"} and app["version"] > first


async def test_the_queue_lists_apps_waiting_to_launch(store: SqliteStore,
                                                      api: httpx.AsyncClient) -> None:
    await api.post("/v2/apps", json=WEB)
    await store.put(model.queue_key("/shop/web"), QueueEntry(
        app_id="/shop/web", failures=1, delay_until=4e9, last_failure="exit 1").dump())
    [item] = (await api.get("/v2/queue")).json()["queue"]
    assert item["app"]["id"] == "/shop/web" and item["count"] == 2
    assert item["delay"]["overdue"] is False and item["delay"]["timeLeftSeconds"] > 0
    app = (await api.get("/v2/apps/shop/web")).json()["app"]
    assert app["lastTaskFailure"]["message"] == "exit 1"


async def test_unknown_tasks_are_refused_before_any_is_killed(api: httpx.AsyncClient) -> None:
    missing = await api.post("/v2/tasks/delete", json={"ids": ["nope.1"]})
    assert missing.status_code == 404 and "nope.1" in missing.json()["message"]
    bad = await api.post("/v2/tasks/delete", json={"ids": "nope.1"})
    assert bad.status_code == 400 and bad.json()["message"] == "ids: must be a list of task ids"
