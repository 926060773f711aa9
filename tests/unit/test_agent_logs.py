"""The agent's log capture into a real LogStore, with the fake driver: a task's lines labelled
and stored before its workload is removed, and how it ended."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kade.logs.record import LogQuery
from kade.logs.store import LogStore
from kade.store import Store
from tests.unit.test_agent import forget
from tests.unit.test_agent_support import (
    NODE,
    Driver,
    make_app,
    make_task,
    place,
    running_agent,
    store_app,
    until,
    until_status,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def logs(tmp_path: Path) -> AsyncIterator[LogStore]:
    store = await LogStore(tmp_path / "node").open()
    try:
        yield store
    finally:
        await store.close()


async def test_a_crashed_task_keeps_its_last_lines_and_its_exit(
        store: Store, driver: Driver, logs: LogStore, tmp_path: Path) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    driver.output_lines[task.id] = [("stdout", b"starting"), ("stderr", b"panic: \xff oops"),
                                    ("stdout", b"last words")]
    async with running_agent(store, driver, tmp_path, logs=logs):
        await place(store, task)
        await until_status(store, task.id, "running")
        driver.crash(task.id, 3)
        await until_status(store, task.id, "failed")
        await forget(store, task.id)  # the scheduler replaces it: its workload goes

        async def removed() -> bool:
            return not driver.workloads
        await until(store, removed)
    lines = await logs.query(LogQuery(task=task.id))
    assert [(x.app, x.task, x.version, x.node) for x in lines] == [
        (app.id, task.id, app.version, NODE)] * 3
    assert [(x.stream, x.line) for x in lines] == [
        ("stdout", "starting"), ("stderr", "panic: \ufffd oops"), ("stdout", "last words")]
    [ended] = await logs.tasks(app=app.id, previous=True)
    assert (ended.task, ended.exit_code, ended.reason) == (task.id, 3, "exited with code 3")
    # every line was read before the workload was removed
    calls = [c.method for c in driver.calls if c.method in ("output", "remove")]
    assert calls[-1] == "remove" and "output" in calls


async def test_a_restarted_agent_goes_on_where_the_store_ends(
        store: Store, driver: Driver, logs: LogStore, tmp_path: Path) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    driver.output_lines[task.id] = [("stdout", b"one"), ("stdout", b"two")]
    async with running_agent(store, driver, tmp_path, logs=logs):
        await place(store, task)
        await until_status(store, task.id, "running")
        driver.crash(task.id, 0)
        await until_status(store, task.id, "finished")

        async def stored() -> bool:
            return len(await logs.query(LogQuery(task=task.id))) == 2
        await until(store, stored)
    # a line the runtime still has; a new agent finds the task ended and reads the rest
    driver.output_lines[task.id].append(("stdout", b"three"))
    async with running_agent(store, driver, tmp_path, logs=logs):
        await forget(store, task.id)

        async def removed() -> bool:
            return not driver.workloads
        await until(store, removed)
    lines = await logs.query(LogQuery(task=task.id))
    assert [x.line for x in lines] == ["one", "two", "three"]
    resume = [args[1] for args in driver.called("output")][-1]
    assert (resume["stdout"].time, resume["stdout"].count) == (2, 1)  # where the store ended
    [ended] = await logs.tasks(task=task.id)
    assert (ended.exit_code, ended.reason) == (0, "exited with code 0")


async def test_a_running_task_the_scheduler_forgot_is_read_to_the_end_once_stopped(
        store: Store, driver: Driver, logs: LogStore, tmp_path: Path) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    driver.output_lines[task.id] = [("stdout", b"working"), ("stdout", b"got SIGTERM")]
    async with running_agent(store, driver, tmp_path, logs=logs):
        await place(store, task)
        await until_status(store, task.id, "running")
        await forget(store, task.id)

        async def removed() -> bool:
            return not driver.workloads
        await until(store, removed)
    assert [x.line for x in await logs.query(LogQuery(task=task.id))] == [
        "working", "got SIGTERM"]
    [ended] = await logs.tasks(task=task.id)
    assert (ended.exit_code, ended.reason) == (143, "stopped: no task placed for it")
