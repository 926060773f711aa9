"""The agent's task lifecycle, against the real SQLite store and the fake driver: what it starts
and stops, and the status records it writes as a task goes through its life."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from kade import model
from kade.drivers.base import (
    LABEL_APP,
    LABEL_HASH,
    LABEL_NODE,
    LABEL_TASK,
    LABEL_VERSION,
    DriverError,
    LaunchSpec,
    Workload,
)
from kade.model import Node
from kade.store import Delete, SqliteStore, Store
from kade.testing.fake_driver import FakeDriver
from tests.unit.test_agent_support import (
    HOST,
    NODE,
    Driver,
    make_app,
    make_task,
    place,
    running_agent,
    settle,
    states_seen,
    status_of,
    store_app,
    until_status,
    until_true,
    yield_to_agent,
)

pytestmark = pytest.mark.timeout(60)




async def forget(store: Store, task_id: str) -> None:
    """As the scheduler forgets a task: its record and its status go together."""
    await store.txn([], [Delete(model.task_key(task_id)), Delete(model.status_key(task_id))])


async def test_a_placed_task_starts_with_its_launch_spec(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(env={"GREETING": "hi"}, labels={"team": "shop"},
                   portDefinitions=[{"port": 0}, {"port": 0}])
    await store_app(store, app)
    task = make_task(app, "shop_web.1", ports=(10101, 10102))
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        status = await until_status(store, task.id, "running")

        spec = driver.specs[task.id]
        assert (spec.task_id, spec.app.id, spec.version, spec.spec_hash, spec.node) == (
            task.id, app.id, "v1", task.spec_hash, NODE)
        assert spec.host_ports == [10101, 10102]
        assert spec.env["PORT0"] == "10101"
        assert spec.env["PORT1"] == "10102"
        assert spec.env["HOST"] == HOST
        assert spec.env["KADE_TASK_ID"] == task.id
        assert spec.env["GREETING"] == "hi"
        labels = spec.labels()
        assert labels["team"] == "shop"
        assert (labels[LABEL_TASK], labels[LABEL_APP], labels[LABEL_VERSION],
                labels[LABEL_HASH], labels[LABEL_NODE]) == (
            task.id, app.id, "v1", task.spec_hash, NODE)

        workload = driver.by_task(task.id)
        assert workload is not None
        assert status.container_id == workload.id
        assert status.node == NODE and status.app_id == app.id
        assert await states_seen(store, task.id) == ["staging", "running"]
        assert driver.started() == [task.id]


async def test_a_task_for_another_node_is_ignored(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    elsewhere = make_task(app, "shop_web.other", node="n2")
    here = make_task(app, "shop_web.here")
    async with running_agent(store, driver, tmp_path):
        await place(store, elsewhere)
        await place(store, here)  # seen after the other one: once it runs, both were seen
        await until_status(store, here.id, "running")
        assert driver.started() == [here.id]
        assert await status_of(store, elsewhere.id) is None


async def test_a_stopped_task_is_killed_with_its_grace_period_then_removed(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(taskKillGracePeriodSeconds=7)
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")
        await place(store, task.model_copy(update={"desired": "stop",
                                                   "stop_reason": "scaled down"}))
        killed = await until_status(store, task.id, "killed")
        assert driver.called("stop") == [(running.container_id, 7.0)]
        assert killed.message == "scaled down"
        assert killed.exit_code == driver.stop_exit_code
        assert killed.container_id == running.container_id

        await until_true(store, lambda: not driver.workloads)
        assert driver.removed() == [running.container_id]
        assert driver.status_at_remove[running.container_id] == "killed"
        assert await states_seen(store, task.id) == ["staging", "running", "killing", "killed"]
        assert driver.started() == [task.id]


@pytest.mark.parametrize(("code", "final"), [(3, "failed"), (0, "finished")])
async def test_a_workload_that_exits_is_reported_with_its_code(
    store: Store, driver: Driver, tmp_path: Path, code: int, final: str
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")
        driver.crash(task.id, code)
        status = await until_status(store, task.id, final)
        assert status.exit_code == code
        assert status.message == f"exited with code {code}"
        assert status.container_id == running.container_id

        assert driver.started() == [task.id]  # the scheduler replaces it, not the agent

        # Its container stays (its logs can be read) until the scheduler forgets the task.
        assert driver.removed() == []
        await forget(store, task.id)
        await until_true(store, lambda: not driver.workloads)
        assert driver.removed() == [running.container_id]
        assert driver.called("stop") == []


async def test_a_forgotten_task_is_stopped_and_removed(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")
        await forget(store, task.id)
        await until_true(store, lambda: not driver.workloads)
        assert driver.stopped() == [running.container_id]
        assert driver.removed() == [running.container_id]
        assert await status_of(store, task.id) is None  # not written back


async def test_a_start_that_fails_is_reported_with_the_drivers_message(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    driver.fail_start(task.id, "pull kade/nope:1: manifest unknown")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        status = await until_status(store, task.id, "failed")
        assert status.message == "pull kade/nope:1: manifest unknown"
        assert status.container_id == ""
        assert not driver.workloads
        assert await states_seen(store, task.id) == ["staging", "failed"]


async def test_a_task_whose_app_version_is_not_stored_fails(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(version="v9")  # never stored
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        status = await until_status(store, task.id, "failed")
        assert status.message == "app /shop/web version v9 is not stored"
        assert driver.called("start") == []


async def test_a_task_moved_to_a_new_version_of_the_same_spec_keeps_running(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    scaled = app.model_copy(update={"version": "v2", "instances": 3})  # same spec hash
    await store_app(store, app)
    await store_app(store, scaled)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        await until_status(store, task.id, "running")
        before = await store.get(model.status_key(task.id))
        await place(store, task.model_copy(update={"version": "v2"}))
        await settle(store, driver, app)
        assert driver.started() == [task.id, "marker.settle"]
        assert driver.called("stop") == []
        assert await store.get(model.status_key(task.id)) == before


class FlakyDriver(Driver):
    """Its first start raises an unexpected error and its first stop a DriverError."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.start_fails = self.stop_fails = 1

    async def start(self, spec: LaunchSpec, progress: Callable[[str], None]) -> Workload:
        if self.start_fails:
            self.start_fails -= 1
            raise RuntimeError("a bug in the runtime's client")
        return await super().start(spec, progress)

    async def stop(self, workload_id: str, grace: float) -> int | None:
        if self.stop_fails:
            self.stop_fails -= 1
            raise DriverError("the runtime did not answer")
        return await super().stop(workload_id, grace)


async def test_a_step_that_failed_is_tried_again(store: Store, tmp_path: Path) -> None:
    driver = FlakyDriver(store)
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")
        assert driver.start_fails == 0
        await place(store, task.model_copy(update={"desired": "stop"}))
        await until_status(store, task.id, "killed")
        assert driver.stop_fails == 0
        assert await states_seen(store, task.id) == ["staging", "running", "killing", "killed"]
        await until_true(store, lambda: not driver.workloads)
        assert driver.removed() == [running.container_id]


class GatedDriver(Driver):
    """Its starts wait until the test opens the gate, like a slow image pull."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.gate = asyncio.Event()
        self.waiting = False

    async def start(self, spec: LaunchSpec, progress: Callable[[str], None]) -> Workload:
        self.waiting = True
        await self.gate.wait()
        return await super().start(spec, progress)


async def test_a_task_stopped_while_it_starts_is_never_reported_running(
    store: Store, tmp_path: Path
) -> None:
    driver = GatedDriver(store)
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        await until_true(store, lambda: driver.waiting)
        await place(store, task.model_copy(update={"desired": "stop",
                                                   "stop_reason": "scaled down"}))
        await yield_to_agent()  # it learns of the stop while the start is in flight
        driver.gate.set()
        killed = await until_status(store, task.id, "killed")
        assert killed.message == "scaled down"
        await until_true(store, lambda: not driver.workloads)
        assert await states_seen(store, task.id) == ["staging", "killing", "killed"]
        assert len(driver.called("stop")) == 1


async def test_the_node_is_registered_and_keeps_its_drain_flag(
    store: Store, tmp_path: Path
) -> None:
    old = Node(name=NODE, address="10.0.0.9", cpus=1, mem=1, draining=True)
    await store.put(model.node_key(NODE), old.dump())
    driver = FakeDriver(cpus=3.0, mem=2048.0)
    async with running_agent(store, driver, tmp_path):
        entry = await store.get(model.node_key(NODE))
        assert entry is not None
        node = Node.load(entry.value)
        assert (node.address, node.cpus, node.mem, node.drivers, node.draining) == (
            HOST, 3.0, 2048.0, ["fake"], True)


async def test_an_agent_that_fell_behind_the_history_reloads_its_placements(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = SqliteStore(tmp_path / "small", history=5, ring=1)
    try:
        driver = Driver(store)
        app = make_app()
        await store_app(store, app)
        old, new = make_task(app, "shop_web.1"), make_task(app, "shop_web.2")
        async with running_agent(store, driver, tmp_path / "node"):
            await place(store, old)
            running = await until_status(store, old.id, "running")
            # A burst with no pause for the agent: its history is compacted away, and with it
            # the forgetting of one task and the placing of another.
            await forget(store, old.id)
            await place(store, new)
            for i in range(50):
                await store.put(model.KV + "busy", str(i).encode())
            await until_status(store, new.id, "running")
            await until_true(store, lambda: running.container_id not in driver.workloads)
            assert driver.stopped() == [running.container_id]
        assert "fell behind" in caplog.text
    finally:
        await store.close()
