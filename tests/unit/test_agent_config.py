"""The agent's configuration of tasks (templates rendered from the KV tree) and the drain that
comes before a stop, against the real SQLite store and the fake driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kade import model
from kade.store import Store
from kade.templates import encode_kv_value
from tests.unit.test_agent_support import (
    Driver,
    make_app,
    make_task,
    place,
    router_record,
    running_agent,
    settle,
    status_of,
    store_app,
    until,
    until_status,
    until_true,
    yield_to_agent,
)

pytestmark = pytest.mark.timeout(60)




async def put_kv(store: Store, key: str, value: bytes) -> None:
    await store.put(model.KV + key, encode_kv_value(value))


def read(path: str) -> str:
    return Path(path).read_text()


def inode(path: str) -> int:
    return Path(path).stat().st_ino


def templated_app(change_mode: str = "restart") -> dict[str, Any]:
    return {"templates": [
        {"destination": "/etc/app.conf", "source": 'greeting={{ key "cfg/greeting" }}',
         "changeMode": change_mode},
        {"destination": "/etc/app.env", "source": 'GREETING={{ key "cfg/greeting" }}',
         "env": True},
    ]}


async def test_a_task_waits_for_a_missing_key_then_starts_with_it(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(**templated_app())
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)

        async def waiting() -> bool:
            status = await status_of(store, task.id)
            return status is not None and "cfg/greeting" in status.message

        await until(store, waiting)
        status = await status_of(store, task.id)
        assert status is not None and status.state == "staging"
        assert status.message.startswith("waiting: ")
        assert driver.called("start") == []

        await put_kv(store, "cfg/greeting", b"hello")
        running = await until_status(store, task.id, "running")
        assert running.message == ""
        spec = driver.specs[task.id]
        assert spec.env["GREETING"] == "hello"
        [mount] = spec.mounts  # the env template is not a file in the container
        assert mount.container_path == "/etc/app.conf" and mount.read_only
        assert read(mount.host_path) == "greeting=hello"
        assert Path(mount.host_path).is_relative_to(tmp_path / "node")


async def test_a_task_stopped_while_it_waits_for_a_key_is_killed_unstarted(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(**templated_app())
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)

        async def waiting() -> bool:
            status = await status_of(store, task.id)
            return status is not None and "cfg/greeting" in status.message

        await until(store, waiting)
        await place(store, task.model_copy(update={"desired": "stop",
                                                   "stop_reason": "scaled down"}))
        killed = await until_status(store, task.id, "killed")
        assert killed.message == "scaled down"
        await put_kv(store, "cfg/greeting", b"hello")  # too late: nothing starts
        await settle(store, driver, app)
        assert driver.started() == ["marker.settle"]
        assert driver.called("stop") == []


async def test_a_signal_template_is_rewritten_and_the_task_signalled(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(templates=[{"destination": "/etc/app.conf",
                               "source": 'greeting={{ key "cfg/greeting" }}',
                               "changeMode": "signal", "changeSignal": "SIGUSR1"}])
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await put_kv(store, "cfg/greeting", b"hello")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)
        await until_status(store, task.id, "running")
        [mount] = driver.specs[task.id].mounts
        path = mount.host_path
        before = inode(path)

        await put_kv(store, "cfg/greeting", b"bonjour")
        await until_true(store, lambda: driver.signals == [(task.id, "SIGUSR1")])
        assert read(path) == "greeting=bonjour"
        assert inode(path) == before  # rewritten in place: the bind mount sees it
        status = await status_of(store, task.id)
        assert status is not None
        assert (status.state, status.config_stale) == ("running", False)
        assert driver.started() == [task.id]


async def test_a_restart_template_that_changes_marks_the_task_stale(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(**templated_app("restart"))
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await put_kv(store, "cfg/greeting", b"hello")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)
        await until_status(store, task.id, "running")
        [mount] = driver.specs[task.id].mounts

        await put_kv(store, "cfg/greeting", b"bonjour")

        async def stale() -> bool:
            status = await status_of(store, task.id)
            return status is not None and status.config_stale

        await until(store, stale)
        # The running task keeps the config it started with; the scheduler replaces it.
        assert read(mount.host_path) == "greeting=hello"
        assert driver.signals == []
        assert driver.started() == [task.id]


async def test_a_stop_waits_until_routers_no_longer_send_the_task_requests(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")
        await store.put(model.ROUTERS + "r1", router_record("r1", [task.id, "other.1"]))
        await store.put(model.ROUTERS + "r2", router_record("r2", []))

        await place(store, task.model_copy(update={"desired": "stop"}))
        await until_status(store, task.id, "killing")
        await store.put(model.ROUTERS + "r2", router_record("r2", ["other.1"]))
        await yield_to_agent()
        assert driver.called("stop") == []  # r1 still routes to it
        status = await status_of(store, task.id)
        assert status is not None and status.state == "killing"

        await store.put(model.ROUTERS + "r1", router_record("r1", ["other.1"]))
        await until_status(store, task.id, "killed")
        assert driver.stopped() == [running.container_id]
