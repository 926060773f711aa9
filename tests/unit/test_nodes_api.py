"""`/v1/nodes` in process: a real SQLite store, the real FastAPI app with its front door."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kade import model
from kade.api.app import create_app
from kade.api.closing import closing_event
from kade.api.events import event_json
from kade.auth import create_token, needed_permission
from kade.model import Node, NodeControl, Task, TaskStatus
from kade.scheduler.sim import app_spec
from kade.store import SqliteStore

NOW = 1_800_000_000.0


@pytest.fixture
def app(store: SqliteStore) -> FastAPI:
    return create_app(store, clock=lambda: NOW)


@pytest.fixture
async def api(app: FastAPI, store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    text, _ = await create_token(store, role="admin", now=NOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7400",
                                 headers={"Authorization": f"Bearer {text}"}) as c:
        yield c


async def register(store: SqliteStore, name: str, **attributes: str) -> None:
    """A node whose agent runs: its record, and its liveness key (kade.agent.liveness)."""
    node = Node(name=name, address="127.0.0.1", hostname="h", cpus=2, mem=1024,
                attributes=attributes, updated_at=NOW, liveness_ttl=10)
    await store.put(model.node_key(name), node.dump())
    await store.put(model.alive_key(name), b"{}")


async def place(store: SqliteStore, tid: str, on: str, *, created: float = NOW - 10,
                state: str = "running", health: str = "healthy") -> Task:
    t = Task(id=tid, app_id="/web", version="v", spec_hash="h", node=on, cpus=0.5, mem=64,
             created_at=created)
    await store.put(model.task_key(tid), t.dump())
    s = TaskStatus(task_id=tid, app_id="/web", node=on, state=state,  # type: ignore[arg-type]
                   health=health, updated_at=NOW)  # type: ignore[arg-type]
    await store.put(model.status_key(tid), s.dump())
    return t


async def control(store: SqliteStore, name: str) -> NodeControl:
    entry = await store.get(model.nodectl_key(name))
    assert entry is not None
    return NodeControl.load(entry.value)


def test_permissions() -> None:
    assert needed_permission("GET", "/v1/nodes") == "read"
    assert needed_permission("GET", "/v1/nodes/n1/drain") == "read"
    assert needed_permission("PUT", "/v1/nodes/n1/eligibility") == "admin"
    assert needed_permission("POST", "/v1/nodes/n1/drain") == "admin"
    assert needed_permission("DELETE", "/v1/nodes/n1/drain") == "admin"
    assert needed_permission("POST", "/v1/nodes/drain") == "admin"


async def test_a_node_whose_agent_stopped_keeping_its_lease_is_down(
        api: httpx.AsyncClient, store: SqliteStore) -> None:
    await register(store, "n1", az="1a")
    await store.delete(model.alive_key("n1"))  # what the lease's end does
    node = (await api.get("/v1/nodes/n1")).json()["node"]
    assert (node["status"], node["attributes"]) == ("down", {"az": "1a"})  # shown, not forgotten


async def test_list_and_one_node(api: httpx.AsyncClient, store: SqliteStore) -> None:
    await register(store, "n1", az="1a")
    await place(store, "t1", "n1")
    listed = (await api.get("/v1/nodes")).json()["nodes"]
    assert [(n["name"], n["status"], n["eligible"], n["tasks"], n["attributes"])
            for n in listed] == [("n1", "ready", True, 1, {"az": "1a"})]
    one = (await api.get("/v1/nodes/n1")).json()["node"]
    assert one == listed[0]
    r = await api.get("/v1/nodes/n9")
    assert r.status_code == 404
    assert r.json()["message"] == "node n9 does not exist (`kade nodes` lists them)"


async def test_eligibility_is_written_as_asked(api: httpx.AsyncClient,
                                               store: SqliteStore) -> None:
    await register(store, "n1")
    r = await api.put("/v1/nodes/n1/eligibility", json={"eligible": False})
    assert r.status_code == 200 and r.json()["node"]["eligible"] is False
    assert (await control(store, "n1")).eligible is False
    r = await api.put("/v1/nodes/n1/eligibility", json={"eligible": "no"})
    assert r.status_code == 400 and r.json()["message"] == "eligible: must be true or false"
    r = await api.put("/v1/nodes/n9/eligibility", json={"eligible": True})
    assert r.status_code == 404 and "node n9 does not exist" in r.json()["message"]
    assert await store.get(model.nodectl_key("n9")) is None
    await api.put("/v1/nodes/n1/eligibility", json={"eligible": True})
    assert (await control(store, "n1")).eligible is True


async def test_a_drain_then_its_cancel(api: httpx.AsyncClient, store: SqliteStore) -> None:
    await register(store, "n1")
    await place(store, "t1", "n1")
    await place(store, "t2", "n1")
    r = await api.post("/v1/nodes/n1/drain",
                       json={"deadline": "5m", "maxParallel": 2, "keepSystem": True})
    assert r.status_code == 200, r.text
    shown = r.json()["node"]
    assert (shown["status"], shown["eligible"]) == ("draining", False)
    assert shown["drain"]["tasks"] == {"total": 2, "left": 2, "moving": 0, "done": 0,
                                       "kept": 0}
    assert shown["drain"]["deadline"] == model.iso(NOW + 300)
    stored = await control(store, "n1")
    assert stored.drain is not None
    assert (stored.drain.started_at, stored.drain.deadline, stored.drain.max_parallel,
            stored.drain.keep_system, stored.drain.tasks_at_start) == (NOW, NOW + 300, 2,
                                                                        True, 2)
    progress = (await api.get("/v1/nodes/n1/drain")).json()
    assert (progress["node"], progress["status"], progress["drain"]["complete"]) == (
        "n1", "draining", False)

    r = await api.delete("/v1/nodes/n1/drain")
    assert r.json()["node"]["status"] == "ready" and r.json()["node"]["eligible"] is False
    assert (await control(store, "n1")).drain is None
    r = await api.delete("/v1/nodes/n1/drain", params={"eligible": "true"})
    assert r.json()["node"]["eligible"] is True


async def test_bad_drains_change_nothing(api: httpx.AsyncClient, store: SqliteStore) -> None:
    await register(store, "n1")
    for body, problem in [({"maxParallel": 0}, "maxParallel: must be between 1 and 100"),
                          ({"deadline": "8 days"}, "deadline: '8 days' is not a duration"),
                          ({"deadline": "0s"}, "deadline: must be between 1s and 168h")]:
        r = await api.post("/v1/nodes/n1/drain", json=body)
        assert r.status_code == 400 and problem in r.json()["message"]
    r = await api.post("/v1/nodes/n1/drain", content=b"{", headers={
        "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["message"].startswith("body:")
    assert await store.get(model.nodectl_key("n1")) is None
    r = await api.post("/v1/nodes/n9/drain", json={})
    assert r.status_code == 404


async def test_a_zone_drain(api: httpx.AsyncClient, store: SqliteStore) -> None:
    await register(store, "a1", az="1a")
    await register(store, "a2", az="1a")
    await register(store, "b1", az="1b")
    await place(store, "t1", "a1")
    revision = await store.revision()
    r = await api.post("/v1/nodes/drain", json={"attr": "az=1a", "deadline": "10m"})
    assert r.status_code == 200, r.text
    assert [(n["name"], n["status"], n["eligible"]) for n in r.json()["nodes"]] == [
        ("a1", "draining", False), ("a2", "drained", False)]
    # one transaction made the zone ineligible, the next set its drains
    events = []
    async for batch in store.watch(model.NODECTL, revision):
        events += batch
        if len(events) == 4:
            break
    writes = [(e.revision, e.key, NodeControl.load(e.entry.value).drain is not None)
              for e in events if e.entry]
    first, second = writes[0][0], writes[2][0]
    assert writes == [(first, "nodectl/a1", False), (first, "nodectl/a2", False),
                      (second, "nodectl/a1", True), (second, "nodectl/a2", True)]
    assert await store.get(model.nodectl_key("b1")) is None

    listed = (await api.get("/v1/nodes", params={"attr": "az=1b"})).json()["nodes"]
    assert [n["name"] for n in listed] == ["b1"]
    r = await api.get("/v1/nodes", params={"attr": "az"})
    assert r.status_code == 400 and r.json()["message"] == (
        "attr: 'az' must be key=value, e.g. az=1a")
    zone = (await api.get("/v1/nodes/drain", params={"attr": "az=1a"})).json()
    assert [d["node"] for d in zone["drains"]] == ["a1", "a2"] and zone["complete"] is False
    r = await api.post("/v1/nodes/drain", json={"attr": "az=1c"})
    assert r.status_code == 404
    assert r.json()["message"] == "no node has the attribute az=1c (`kade nodes` shows attributes)"
    r = await api.post("/v1/nodes/drain", json={"deadline": "1m"})
    assert r.status_code == 400 and r.json()["message"].startswith("attr: is required")


async def test_a_down_node_is_listed_and_may_be_drained(api: httpx.AsyncClient,
                                                        store: SqliteStore) -> None:
    await store.put(model.nodectl_key("gone"), NodeControl(name="gone").dump())
    [shown] = (await api.get("/v1/nodes")).json()["nodes"]
    assert (shown["name"], shown["status"]) == ("gone", "down")
    assert (await api.post("/v1/nodes/gone/drain", json={})).status_code == 200


async def test_read_tokens_see_nodes_but_change_nothing(app: FastAPI,
                                                        store: SqliteStore) -> None:
    await register(store, "n1")
    text, _ = await create_token(store, role="read", now=NOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7400",
                                 headers={"Authorization": f"Bearer {text}"}) as read:
        assert (await read.get("/v1/nodes")).status_code == 200
        for r in [await read.put("/v1/nodes/n1/eligibility", json={"eligible": False}),
                  await read.post("/v1/nodes/n1/drain", json={}),
                  await read.post("/v1/nodes/drain", json={"attr": "az=1a"}),
                  await read.delete("/v1/nodes/n1/drain")]:
            assert r.status_code == 403 and "needs a admin token" in r.json()["message"]
    assert await store.get(model.nodectl_key("n1")) is None


def lines(r: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


async def test_the_progress_stream_ends_when_the_drain_is_done(
        api: httpx.AsyncClient, store: SqliteStore) -> None:
    await register(store, "n1")
    await register(store, "n2")
    web = app_spec("/web", instances=1)  # what the planner's progress reads of the app
    await store.put(model.app_key("/web"), web.model_dump_json(by_alias=True).encode())
    old = await place(store, "t1", "n1")
    await api.post("/v1/nodes/n1/drain", json={})
    watching = asyncio.create_task(api.get("/v1/nodes/n1/drain", params={"watch": "true"}))
    await asyncio.sleep(0.1)
    # surge-first, as the scheduler does it: a replacement starts, turns healthy, then the
    # old task is stopped and forgotten
    await place(store, "t2", "n2", created=NOW + 1, state="starting", health="unknown")
    moving = (await api.get("/v1/nodes/n1/drain")).json()["drain"]["tasks"]
    assert (moving["left"], moving["moving"]) == (0, 1)
    await place(store, "t2", "n2", created=NOW + 1)
    await store.put(model.task_key(old.id), old.model_copy(update={"desired": "stop"}).dump())
    await store.delete(model.task_key(old.id))
    r = await asyncio.wait_for(watching, 10)
    assert r.headers["content-type"] == "application/x-ndjson"
    seen = [(p["status"], p["drain"]["tasks"]["left"], p["drain"]["tasks"]["moving"],
             p["drain"]["tasks"]["done"]) for p in lines(r)]
    assert seen[0] == ("draining", 1, 0, 0) and seen[-1] == ("drained", 0, 0, 1)


async def test_the_progress_stream_ends_when_kade_stops(
        app: FastAPI, api: httpx.AsyncClient, store: SqliteStore) -> None:
    await register(store, "n1")
    await place(store, "t1", "n1")
    await api.post("/v1/nodes/n1/drain", json={})
    watching = asyncio.create_task(api.get("/v1/nodes/n1/drain", params={"watch": "true"}))
    await asyncio.sleep(0.1)
    closing_event(app).set()
    r = await asyncio.wait_for(watching, 10)
    assert [p["status"] for p in lines(r)] == ["draining"]
    # without a drain there is nothing to follow: one line, and the stream ends
    await api.delete("/v1/nodes/n1/drain")
    r = await asyncio.wait_for(api.get("/v1/nodes/n1/drain", params={"watch": "true"}), 10)
    assert [p["drain"] for p in lines(r)] == [None]


async def test_what_operators_asked_is_an_event_and_a_bad_record_is_quarantined(
        api: httpx.AsyncClient, store: SqliteStore) -> None:
    await register(store, "n1")
    revision = await store.revision()
    await api.put("/v1/nodes/n1/eligibility", json={"eligible": False})
    async for batch in store.watch(model.NODECTL, revision):
        shown = event_json(batch[0])
        break
    assert shown is not None
    name, body = shown
    assert (name, body["type"], body["key"], body["value"]["eligible"]) == (
        "node_control_updated", "node_control", "n1", False)

    await store.put(model.nodectl_key("n2"), b'{"name": "n2", "eligible": "maybe"}')
    listed = (await api.get("/v1/quarantine")).json()["quarantined"]
    assert [(q["key"], q["reason"].split(":")[0]) for q in listed] == [
        ("nodectl/n2", "eligible")]
    # every other node is shown as usual; the record that cannot be read is skipped
    assert [(n["name"], n["eligible"]) for n in (await api.get("/v1/nodes")).json()["nodes"]
            ] == [("n1", False)]
    # an operator's new word replaces the record nobody can read
    await register(store, "n2")
    assert (await api.put("/v1/nodes/n2/eligibility", json={"eligible": True})
            ).status_code == 200
    assert (await api.get("/v1/quarantine")).json()["quarantined"] == []
