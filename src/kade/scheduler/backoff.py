"""Launch backoff after failed tasks (Marathon's backoffSeconds / backoffFactor).

After the k-th consecutive failure of an app, its next launch waits
`min(backoffSeconds * backoffFactor ** (k - 1), maxLaunchDelaySeconds)` seconds.

The count resets when the relaunch worked: a task of the current spec, created at or after
the last counted failure, has been running (and healthy, if the app has health checks) for
RESET_AFTER seconds. Tasks older than the failure do not reset it, or one crash-looping
instance next to healthy siblings would never be slowed down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from kade.model import QueueEntry, Task, TaskStatus
from kade.scheduler.rollout import is_healthy
from kade.spec import AppSpec

RESET_AFTER = 10.0  # seconds a relaunched task must stay up to clear the failure count


def launch_delay(app: AppSpec, failures: int) -> float:
    if failures <= 0 or app.backoff_seconds <= 0:
        return 0.0
    try:
        delay = app.backoff_seconds * app.backoff_factor ** (failures - 1)
    except OverflowError:
        delay = math.inf
    return min(delay, app.max_launch_delay_seconds)


def describe_failure(task: Task, status: TaskStatus) -> str:
    """What the UI shows as the last failure of the app."""
    if status.message:
        return status.message
    if status.exit_code is not None:
        return f"exited with code {status.exit_code}"
    return f"task {status.state}"


def count_failures(
    app: AppSpec, entry: QueueEntry, failed: list[tuple[Task, TaskStatus]], now: float
) -> QueueEntry:
    """`entry` after the tasks in `failed` ended on their own."""
    failures = entry.failures + len(failed)
    task, status = max(failed, key=lambda f: (f[1].updated_at, f[0].id))
    return entry.model_copy(update={
        "failures": failures,
        "delay_until": now + launch_delay(app, failures),
        "last_failure": describe_failure(task, status),
        "last_failure_at": now,
    })


def reset_at(
    app: AppSpec, entry: QueueEntry, current: Iterable[tuple[Task, TaskStatus | None]]
) -> float | None:
    """When the failure count of `entry` may be cleared, given the app's current tasks."""
    if entry.failures <= 0:
        return None
    since_failure = entry.last_failure_at or 0.0
    best: float | None = None
    for task, status in current:
        if status is None or task.created_at < since_failure or not is_healthy(app, status):
            continue
        up_since = status.started_at if status.started_at is not None else status.updated_at
        at = up_since + RESET_AFTER
        if best is None or at < best:
            best = at
    return best
