"""The agent runs a task's health checks (COMMAND checks go through the driver's exec),
publishes the task's health, and kills a task whose checks keep failing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kade.drivers.base import ExecResult
from kade.store import Store
from tests.unit.test_agent_support import (
    Driver,
    make_app,
    make_task,
    place,
    running_agent,
    states_seen,
    status_of,
    store_app,
    until,
    until_status,
)

pytestmark = pytest.mark.timeout(60)




def command_check(command: str, **fields: Any) -> dict[str, Any]:
    return {"protocol": "COMMAND", "command": {"value": command}, "gracePeriodSeconds": 0,
            "intervalSeconds": 0.05, "timeoutSeconds": 3, **fields}


async def test_a_passing_check_makes_the_task_healthy(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(healthChecks=[command_check("redis-cli ping")])
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    driver.exec_result = ExecResult(0, "PONG")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")

        async def healthy() -> bool:
            status = await status_of(store, task.id)
            return status is not None and status.health == "healthy"

        await until(store, healthy)
        status = await status_of(store, task.id)
        assert status is not None and status.state == "running"
        [result] = status.health_results
        assert result.alive and result.consecutive_failures == 0
        assert driver.called("exec")[0] == (running.container_id, "redis-cli ping", 3.0)


async def test_a_task_whose_check_keeps_failing_is_killed_as_failed(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(taskKillGracePeriodSeconds=2,
                   healthChecks=[command_check("redis-cli ping", maxConsecutiveFailures=2)])
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    driver.exec_result = ExecResult(1, "Could not connect")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")
        failed = await until_status(store, task.id, "failed")
        assert failed.health == "unhealthy"
        assert failed.message.startswith("health check 0 (COMMAND redis-cli ping) failed 2 times")
        assert driver.called("stop") == [(running.container_id, 2.0)]
        assert await states_seen(store, task.id) == ["staging", "running", "killing", "failed"]
        assert driver.started() == [task.id]  # the scheduler replaces it
