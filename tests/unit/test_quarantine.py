"""A stored record that cannot be read is quarantined: skipped, logged once, reported; the
user can replace or delete it. The decoding policy with plain values, then the writers of
intent, the API and the agent against the real SQLite store."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, field_validator

from kade import model
from kade.agent.drain import wait_drained
from kade.api.app import create_app
from kade.api.quarantine import quarantine_event
from kade.api.views import AppTasks, quarantined_app_json
from kade.auth import create_token
from kade.deployments import intent
from kade.model import (
    Deployment,
    Node,
    TaskStatus,
    Unreadable,
    decode,
    decode_all,
    describe,
)
from kade.spec import AppSpec, parse_app
from kade.store import Entry, Event, SqliteStore, Store
from tests.unit.test_agent_support import (
    Driver,
    make_app,
    make_task,
    place,
    router_record,
    running_agent,
    store_app,
    until_status,
)

pytestmark = pytest.mark.timeout(60)

BAD_APP = b'{"id": "/shop/web", "cmd": "serve", "mem": null, "env": {"TOKEN": "s3cret"}}'
MEM_REASON = "mem: Input should be a valid number"


def entry(key: str, value: bytes, revision: int = 7) -> Entry:
    return Entry(key=key, value=value, create_revision=revision, mod_revision=revision,
                 version=1)


# -- the policy, with plain values ----------------------------------------------------------


def test_a_record_that_loads_is_returned() -> None:
    node = Node(name="n1", address="10.0.0.1", cpus=2, mem=1024)
    assert decode(entry("nodes/n1", node.dump()), Node) == node


def test_a_record_that_cannot_load_says_which_field_and_why() -> None:
    bad = decode(entry("apps/shop/web", BAD_APP, 12), AppSpec)
    assert bad == Unreadable("apps/shop/web", 12, MEM_REASON)
    assert str(bad) == f"apps/shop/web: {MEM_REASON}"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "Invalid JSON: key must be a string at line 1 column 2"),
    (b"[1, 2]", "Input should be an object"),
    (b"\xff\xfe", "Invalid JSON: expected value at line 1 column 1"),
    (b"", "Invalid JSON: EOF while parsing a value at line 1 column 0"),
    (b'{"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "SMTP"}]}',
     "healthChecks.0.protocol: Input should be 'HTTP', 'HTTPS', 'TCP', 'COMMAND', "
     "'MESOS_HTTP', 'MESOS_HTTPS' or 'MESOS_TCP'"),
])
def test_reasons_for_broken_and_older_formats(raw: bytes, reason: str) -> None:
    bad = decode(entry("apps/a", raw), AppSpec)
    assert isinstance(bad, Unreadable) and bad.reason == reason


def test_many_problems_are_summed_up_and_values_never_shown() -> None:
    raw = b'{"id": 1, "cmd": 2, "instances": "s3cret", "cpus": "x", "mem": null}'
    bad = decode(entry("apps/a", raw), AppSpec)
    assert isinstance(bad, Unreadable)
    assert bad.reason.endswith("; and 2 more problem(s)")
    assert bad.reason.count(":") == 3 and "s3cret" not in bad.reason


def test_a_huge_reason_is_cut_to_one_line() -> None:
    reason = describe(RuntimeError("line\n" * 2000))
    assert len(reason) == 500 and "\n" not in reason
    assert reason.startswith("RuntimeError: line line") and reason.endswith("…")


class Fussy(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def no_bugs(cls, value: str) -> str:
        if value == "bug":
            raise RuntimeError("a validator's bug")
        return value


def test_any_error_of_a_decoder_costs_only_that_record() -> None:
    good, bad = decode_all([entry("x/1", b'{"name": "ok"}'), entry("x/2", b'{"name": "bug"}'),
                            entry("x/3", b'{"name": "fine"}')], Fussy)
    assert [f.name for f in good] == ["ok", "fine"]
    assert bad == [Unreadable("x/2", 7, "RuntimeError: a validator's bug")]


def test_a_deeply_nested_record_is_quarantined() -> None:
    raw = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bad = decode(entry("x/deep", raw), Fussy)
    assert isinstance(bad, Unreadable) and bad.key == "x/deep"


def test_logged_once_per_key_and_revision(caplog: pytest.LogCaptureFixture) -> None:
    key = f"apps/{uuid.uuid4().hex}"
    with caplog.at_level(logging.ERROR, logger="kade.quarantine"):
        for _ in range(5):  # a reader reloading, the API listing on every request
            decode(entry(key, BAD_APP, 3), AppSpec)
        decode(entry(key, BAD_APP, 4), AppSpec)  # written again: a new case
    lines = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert lines == [f"quarantined {key} (revision 3): {MEM_REASON}; it is skipped until it "
                     "is replaced or deleted",
                     f"quarantined {key} (revision 4): {MEM_REASON}; it is skipped until it "
                     "is replaced or deleted"]
    assert "s3cret" not in caplog.text


def test_a_quarantined_app_is_listed_with_its_tasks_and_why() -> None:
    app = make_app("/shop/web")
    t1, t2 = make_task(app, "t1"), make_task(app, "t2")
    status = TaskStatus(task_id="t1", app_id="/shop/web", node="n1", state="running",
                        health="healthy", updated_at=1)
    bad = Unreadable("apps/shop/web", 12, MEM_REASON)
    out = quarantined_app_json(bad, AppTasks([(t1, status), (t2, None)]), embed_tasks=True)
    assert out["id"] == "/shop/web" and out["status"] == "quarantined"
    assert out["quarantine"] == {"key": "apps/shop/web", "revision": 12, "reason": MEM_REASON,
                                 "message": f"apps/shop/web: {MEM_REASON}"}
    assert (out["tasksRunning"], out["tasksHealthy"], out["tasksStaged"]) == (1, 1, 1)
    assert out["instances"] is None and [t["id"] for t in out["tasks"]] == ["t1", "t2"]


def test_the_event_stream_reports_a_write_of_an_unreadable_record() -> None:
    put = Event(revision=9, kind="put", key="apps/shop/web",
                entry=entry("apps/shop/web", BAD_APP, 9))
    assert quarantine_event(put) == ("quarantine", {
        "type": "quarantine", "key": "apps/shop/web", "revision": 9, "reason": MEM_REASON,
        "message": f"apps/shop/web: {MEM_REASON}"})
    fine = make_app("/a").model_dump_json(by_alias=True).encode()
    assert quarantine_event(Event(10, "put", "apps/a", entry("apps/a", fine, 10))) is None
    assert quarantine_event(Event(11, "put", "kv/x", entry("kv/x", b"{no json", 11))) is None
    assert quarantine_event(Event(12, "delete", "apps/shop/web", None)) is None


# -- writes of intent over an unreadable record -----------------------------------------------


async def break_app(store: Store, app_id: str = "/shop/web") -> None:
    """As an older kade, a hand edit or a bug may have left it."""
    await store.put(model.app_key(app_id), BAD_APP)


def valid(app_id: str = "/shop/web", **fields: Any) -> AppSpec:
    return parse_app({"id": app_id, "cmd": "serve", **fields}).app


async def deployments(store: Store) -> list[Deployment]:
    entries, _ = await store.range(model.DEPLOYMENTS)
    return sorted(decode_all(entries, Deployment)[0], key=lambda d: d.started_at)


async def test_a_valid_definition_replaces_a_quarantined_app(store: SqliteStore) -> None:
    await break_app(store)
    with pytest.raises(intent.Quarantined, match=MEM_REASON):
        await intent.get_app(store, "/shop/web")
    stored, changed = await intent.put_app(store, valid(mem=64), 100.0)
    assert changed and stored.mem == 64
    assert await intent.get_app(store, "/shop/web") == stored
    [dep] = await deployments(store)
    assert (dep.kind, dep.version, dep.from_version) == ("deploy", stored.version, None)


async def test_only_replace_or_delete_is_allowed_on_a_quarantined_app(
    store: SqliteStore,
) -> None:
    await break_app(store)
    with pytest.raises(intent.Quarantined, match="replace it with a valid definition"):
        await intent.put_app(store, valid(), 100.0, create_only=True)
    with pytest.raises(intent.Conflict, match=f"app /shop/web cannot be read .*{MEM_REASON}"):
        await intent.update_app(store, "/shop/web",
                                lambda a: a.model_copy(update={"instances": 3}), 100.0)
    assert (await store.get(model.app_key("/shop/web"))).value == BAD_APP  # type: ignore[union-attr]
    await intent.delete_app(store, "/shop/web", 100.0)
    assert await store.get(model.app_key("/shop/web")) is None
    [dep] = await deployments(store)
    assert (dep.kind, dep.from_version) == ("destroy", None)


async def test_unreadable_tasks_versions_and_deployments_are_stepped_over(
    store: SqliteStore,
) -> None:
    first, _ = await intent.put_app(store, valid(mem=32), 100.0)
    second, _ = await intent.put_app(store, valid(mem=64), 101.0)
    await store.put(model.version_key("/shop/web", "0000-older"), BAD_APP)  # newest listed
    await store.put(model.deployment_key("zzz"), b'{"id": "zzz"}')
    await store.put(model.task_key("t9"), b"\x00")
    back = await intent.roll_back(store, "/shop/web", None, 102.0)
    assert back.mem == first.mem == 32
    assert [d.status for d in await deployments(store)] == ["superseded", "superseded",
                                                            "running"]
    with pytest.raises(intent.Quarantined, match="task t9 cannot be read"):
        await intent.kill_task(store, "t9", 103.0, scale=False)
    with pytest.raises(intent.Quarantined, match="version 0000-older of app /shop/web"):
        await intent.get_version(store, "/shop/web", "0000-older")


# -- the API ----------------------------------------------------------------------------------


@pytest.fixture
async def api(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store))
    token, _ = await create_token(store, role="admin", now=0.0)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


async def test_the_api_lists_quarantined_records_and_serves_the_rest(
    store: SqliteStore, api: httpx.AsyncClient,
) -> None:
    await intent.put_app(store, valid("/shop/api"), 100.0)
    await break_app(store)
    await store.put(model.node_key("n2"), b'{"name": "n2"}')
    await store.put(model.deployment_key("zzz"), b"[]")
    await store.put(model.status_key("t1"), b"{")
    apps = (await api.get("/v1/apps")).json()["apps"]
    assert [(a["id"], a["status"]) for a in apps] == [("/shop/api", "deploying"),
                                                      ("/shop/web", "quarantined")]
    assert apps[1]["quarantine"]["message"] == f"apps/shop/web: {MEM_REASON}"
    one = await api.get("/v1/apps/shop/web")
    assert one.status_code == 200 and one.json()["app"]["status"] == "quarantined"
    assert (await api.get("/v1/nodes")).json() == {"nodes": []}
    assert [d["appId"] for d in (await api.get("/v1/deployments")).json()["deployments"]] == [
        "/shop/api"]
    got = await api.get("/v1/deployments/zzz")
    assert got.status_code == 409 and "deployments/zzz: Input should be an object" in got.text
    listed = (await api.get("/v1/quarantine")).json()["quarantined"]
    assert [(q["key"], q["reason"].split(":")[0]) for q in listed] == [
        ("apps/shop/web", "mem"), ("deployments/zzz", "Input should be an object"),
        ("nodes/n2", "address"), ("status/t1", "Invalid JSON")]
    assert "s3cret" not in str(listed)


async def test_put_replaces_and_delete_removes_a_quarantined_app(
    store: SqliteStore, api: httpx.AsyncClient,
) -> None:
    await break_app(store)
    scaled = await api.post("/v1/apps/shop/web/scale", json={"instances": 2})
    assert scaled.status_code == 409 and MEM_REASON in scaled.json()["message"]
    created = await api.post("/v1/apps", json={"id": "/shop/web", "cmd": "serve"})
    assert created.status_code == 409
    put = await api.put("/v1/apps/shop/web", json={"id": "/shop/web", "cmd": "serve",
                                                   "mem": 64})
    assert put.status_code == 200 and put.json()["mem"] == 64
    assert put.json()["status"] != "quarantined"
    assert (await api.get("/v1/quarantine")).json() == {"quarantined": []}
    await break_app(store)
    deleted = await api.delete("/v1/apps/shop/web")
    assert deleted.status_code == 200
    assert (await api.get("/v1/apps")).json() == {"apps": []}
    assert (await api.get("/v1/apps/shop/web")).status_code == 404


# -- the agent ---------------------------------------------------------------------------------


async def test_the_agent_runs_its_tasks_past_unreadable_records(
    store: SqliteStore, driver: Driver, tmp_path: Path,
) -> None:
    app = make_app()
    await store_app(store, app)
    await place(store, make_task(app, "shop_web.1"))
    await store.put(model.task_key("broken.1"), b'{"id": "broken.1"}')
    await store.put(model.status_key("broken.1"), b"nonsense")
    await store.put(model.node_key("n1"), b'{"name": "n1", "cpus": "lots"}')
    async with running_agent(store, driver, tmp_path):
        await until_status(store, "shop_web.1", "running")
        await store.put(model.task_key("broken.2"), b"[]")  # followed, not only loaded
        await store.put(model.version_key(app.id, "v2"), BAD_APP)
        await place(store, make_task(app.model_copy(update={"version": "v2"}), "shop_web.2"))
        failed = await until_status(store, "shop_web.2", "failed")
        assert failed.message == f"app /shop/web version v2 cannot be read: {MEM_REASON}"
        await place(store, make_task(app, "shop_web.3"))
        await until_status(store, "shop_web.3", "running")
    node = await store.get(model.node_key("n1"))
    assert node is not None and isinstance(decode(node, Node), Node)


async def test_draining_is_not_held_by_an_unreadable_router_record(
    store: SqliteStore, caplog: pytest.LogCaptureFixture,
) -> None:
    await store.put(model.ROUTERS + "r1", b"[1]")
    await store.put(model.ROUTERS + "r2", b'{"name": "r2", "seen_at": "now", "tasks": ["t7"]}')
    await store.put(model.ROUTERS + "r3", router_record("r3", ["t7"]))
    with caplog.at_level(logging.WARNING, logger="kade.agent"):
        await wait_drained(store, "t7", time.time, timeout=0)
    assert "routers r3 did not drain it" in caplog.text
