"""The order in which the agent calls its task hooks through a task's life, and what a hook
that holds a start back does to the task; against the real SQLite store and the fake driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from kade.agent.hooks import Launch, Refused, TaskHook, TaskState
from kade.drivers.base import Workload
from kade.model import Task
from kade.spec import AppSpec
from kade.store import Store
from tests.unit.test_agent import forget
from tests.unit.test_agent_support import (
    Driver,
    make_app,
    make_task,
    place,
    running_agent,
    status_of,
    store_app,
    until,
    until_status,
)

pytestmark = pytest.mark.timeout(60)


class Recorder(TaskHook):
    """Writes down each step with what the task's status and workload were at that moment."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.steps: list[str] = []
        self.refuse: Refused | None = None

    def _note(self, step: str, state: TaskState, task_id: str) -> None:
        status = state.status.state if state.status else "-"
        there = "present" if any(w.task_id == task_id for w in self.driver.workloads.values()) \
            else "absent"
        entry = f"{step} {status} {there}"
        if not self.steps or self.steps[-1] != entry:  # level-triggered steps repeat
            self.steps.append(entry)

    async def prestart(self, state: TaskState, task: Task, app: AppSpec,
                       launch: Launch) -> None:
        self._note("prestart", state, task.id)
        launch.env["FROM_HOOK"] = "yes"
        if self.refuse is not None:
            raise self.refuse

    async def poststart(self, state: TaskState, task: Task, app: AppSpec,
                        wl: Workload) -> None:
        self._note("poststart", state, task.id)

    async def prekill(self, state: TaskState, task: Task, wl: Workload) -> None:
        self._note("prekill", state, task.id)

    async def stop(self, state: TaskState, task_id: str) -> None:
        self._note("stop", state, task_id)

    async def cleanup(self, state: TaskState, task_id: str) -> None:
        self._note("cleanup", state, task_id)

    def forget(self, task_id: str) -> None:
        self.steps.append("forget")


async def test_hooks_around_a_task_that_crashes_and_is_forgotten(
        store: Store, driver: Driver, tmp_path: Path) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    hook = Recorder(driver)
    async with running_agent(store, driver, tmp_path, hooks=[hook]):
        await place(store, task)
        await until_status(store, task.id, "running")
        assert driver.specs[task.id].env["FROM_HOOK"] == "yes"  # a prestart adds to the launch
        driver.crash(task.id, 3)
        await until_status(store, task.id, "failed")
        await forget(store, task.id)
        await until(store, lambda: _async("forget" in hook.steps))
    assert hook.steps == [
        "prestart staging absent",
        "poststart running present",
        "stop running present",  # it exited: health checks end before its status is written
        "stop failed present",  # the scheduler forgot it: it goes
        "cleanup failed present",  # its output is read before the workload is removed
        "forget",
    ]


async def test_hooks_around_a_kill(store: Store, driver: Driver, tmp_path: Path) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    hook = Recorder(driver)
    async with running_agent(store, driver, tmp_path, hooks=[hook]):
        await place(store, task)
        await until_status(store, task.id, "running")
        await place(store, task.model_copy(update={"desired": "stop", "stop_reason": "scaled"}))
        await until_status(store, task.id, "killed")
        await until(store, lambda: _async(not driver.workloads))
    assert hook.steps == [
        "prestart staging absent",
        "poststart running present",
        "stop running present",
        "prekill killing present",  # routers drain it once its status says it goes
        "cleanup killed present",  # its output is read before the workload is removed
        "cleanup killed absent",  # (looked at again when the removal is seen: harmless)
    ]


async def test_a_prestart_hook_holds_a_start_or_fails_it(
        store: Store, driver: Driver, tmp_path: Path) -> None:
    app = make_app()
    await store_app(store, app)
    hook = Recorder(driver)
    hook.refuse = Refused("waiting: for the moon", wait=True)
    async with running_agent(store, driver, tmp_path, hooks=[hook]):
        await place(store, make_task(app, "shop_web.1"))
        await until(store, lambda: _message(store, "shop_web.1", "waiting: for the moon"))
        status = await status_of(store, "shop_web.1")
        assert status is not None and status.state == "staging"
        hook.refuse = Refused("no room at the inn")
        await place(store, make_task(app, "shop_web.2"))
        failed = await until_status(store, "shop_web.2", "failed")
        assert failed.message == "no room at the inn"
    assert not driver.started()


async def _async(value: bool) -> bool:
    return value


async def _message(store: Store, task_id: str, message: str) -> bool:
    status = await status_of(store, task_id)
    return status is not None and status.message == message
