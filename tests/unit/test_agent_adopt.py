"""An agent that starts finds what an earlier one left: workloads still running, workloads of
tasks nobody wants, statuses of containers that are gone. It adopts, it does not restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from kade import model
from kade.drivers.base import WorkloadEvent
from kade.store import Store
from tests.unit.test_agent_support import (
    Driver,
    make_app,
    make_task,
    place,
    report,
    running_agent,
    settle,
    states_seen,
    status_of,
    store_app,
    until_status,
    until_true,
    workload_of,
)

pytestmark = pytest.mark.timeout(60)




async def test_a_running_workload_of_a_placed_task_is_kept_as_it_is(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await place(store, task)
    await report(store, task, "running", container_id="old-1", health="healthy",
                 started_at=5.0)
    before = await store.get(model.status_key(task.id))
    driver.add(workload_of(app, task, "old-1"))
    async with running_agent(store, driver, tmp_path) as agent:
        await settle(store, driver, app)
        assert driver.started() == ["marker.settle"]
        assert driver.called("stop") == []
        assert driver.called("remove") == []
        assert await store.get(model.status_key(task.id)) == before  # not even rewritten
        assert agent.workload_id(task.id) == "old-1"


async def test_workloads_of_no_placed_task_are_stopped_and_removed(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    ghost = make_task(app, "shop_web.ghost")  # never placed
    dead = make_task(app, "shop_web.dead")  # never placed, its container already exited
    theirs = make_task(app, "shop_web.theirs", node="n2")  # another node's, same runtime
    driver.add(workload_of(app, ghost, "ghost-1"))
    driver.add(workload_of(app, dead, "dead-1", state="exited", exit_code=0))
    driver.add(workload_of(app, theirs, "theirs-1"))
    async with running_agent(store, driver, tmp_path):
        await until_true(store, lambda: set(driver.workloads) == {"theirs-1"})
        assert driver.stopped() == ["ghost-1"]  # an exited one needs no stop
        assert sorted(driver.removed()) == ["dead-1", "ghost-1"]
        await settle(store, driver, app)
        assert "theirs-1" in driver.workloads
        assert "theirs-1" not in driver.stopped() + driver.removed()
        assert driver.started() == ["marker.settle"]
        for task in (ghost, dead, theirs):
            assert await status_of(store, task.id) is None


async def test_a_task_whose_container_is_gone_is_lost(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await place(store, task)
    await report(store, task, "running", container_id="gone-1", started_at=5.0)
    async with running_agent(store, driver, tmp_path):
        lost = await until_status(store, task.id, "lost")
        assert lost.message == "its container disappeared"
        assert lost.container_id == "gone-1"
        await settle(store, driver, app)
        assert driver.started() == ["marker.settle"]  # the scheduler replaces it
        assert await states_seen(store, task.id) == ["running", "lost"]


async def test_a_task_not_yet_started_is_started(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await place(store, task)
    await report(store, task, "staging")  # the earlier agent stopped before its start
    async with running_agent(store, driver, tmp_path):
        await until_status(store, task.id, "running")
        assert driver.started() == [task.id]


async def test_an_ended_task_stays_ended(store: Store, driver: Driver, tmp_path: Path) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await place(store, task)
    await report(store, task, "failed", container_id="gone-1", exit_code=1)
    before = await store.get(model.status_key(task.id))
    async with running_agent(store, driver, tmp_path):
        await settle(store, driver, app)
        assert driver.started() == ["marker.settle"]
        assert await store.get(model.status_key(task.id)) == before  # not turned lost


async def test_a_workload_that_exited_while_no_agent_ran_is_reported(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await place(store, task)
    await report(store, task, "running", container_id="old-1", started_at=5.0)
    driver.add(workload_of(app, task, "old-1", state="exited", exit_code=2))
    async with running_agent(store, driver, tmp_path):
        failed = await until_status(store, task.id, "failed")
        assert (failed.exit_code, failed.container_id) == (2, "old-1")
        assert failed.message == "exited with code 2"
        assert driver.called("start") == []
        assert driver.called("stop") == []


async def test_a_workload_running_another_spec_is_stopped_as_failed(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(taskKillGracePeriodSeconds=4)
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await place(store, task)
    await report(store, task, "running", container_id="old-1", started_at=5.0)
    driver.add(workload_of(app, task, "old-1", spec_hash="0123456789abcdef"))
    async with running_agent(store, driver, tmp_path):
        failed = await until_status(store, task.id, "failed")
        assert failed.message == "its container runs another spec: replaced"
        assert failed.exit_code == driver.stop_exit_code
        assert driver.called("stop") == [("old-1", 4.0)]
        assert await states_seen(store, task.id) == ["running", "killing", "failed"]
        await settle(store, driver, app)
        assert driver.started() == ["marker.settle"]  # replacing it is the scheduler's job


async def test_a_stopped_task_whose_container_still_runs_is_stopped_again(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    """The earlier agent wrote `killed` but ended before its container did."""
    app = make_app(taskKillGracePeriodSeconds=3)
    await store_app(store, app)
    task = make_task(app, "shop_web.1", desired="stop", stop_reason="scaled down")
    await place(store, task)
    await report(store, task, "killed", container_id="old-1", message="scaled down")
    driver.add(workload_of(app, task, "old-1"))
    async with running_agent(store, driver, tmp_path):
        await until_true(store, lambda: not driver.workloads)
        assert driver.called("stop") == [("old-1", 3.0)]
        assert driver.removed() == ["old-1"]
        status = await status_of(store, task.id)
        assert status is not None and status.state == "killed"


async def test_removal_of_another_workload_of_the_task_does_not_lose_it(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")
        driver.emit(WorkloadEvent("leftover-1", task.id, "removed"))
        await settle(store, driver, app)
        status = await status_of(store, task.id)
        assert status is not None
        assert (status.state, status.container_id) == ("running", running.container_id)


async def test_an_orphan_that_appears_while_the_agent_runs_is_stopped(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    ghost = make_task(app, "shop_web.ghost")  # never placed
    async with running_agent(store, driver, tmp_path):
        w = workload_of(app, ghost, "ghost-1")
        driver.add(w)
        driver.emit(WorkloadEvent(w.id, ghost.id, "started"))
        await until_true(store, lambda: not driver.workloads)
        assert driver.stopped() == ["ghost-1"]


async def test_a_task_whose_app_version_was_pruned_can_still_be_stopped(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")
    await store.delete(model.version_key(app.id, "v1"))  # pruned, then the agent restarts
    async with running_agent(store, driver, tmp_path):
        await place(store, task.model_copy(update={"desired": "stop"}))
        await until_status(store, task.id, "killed")
        assert driver.stopped() == [running.container_id]
