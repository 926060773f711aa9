"""How many tasks an app may have during a rolling replacement, and which to stop first.

Marathon's upgradeStrategy arithmetic, for n = instances:

    minHealthy  = ceil(n * minimumHealthCapacity)
    maxCapacity = floor(n * (1 + maximumOverCapacity))
    if minHealthy == maxCapacity: maxCapacity += 1

The last line is Marathon's escape hatch: with minimumHealthCapacity 1 and
maximumOverCapacity 0 (or any pair that rounds to the same number) no old task could ever be
stopped and no new one started; one task over capacity lets the replacement proceed.

Each plan then, with old = active tasks to replace and new = active tasks of the current spec:
1. new tasks beyond n are stopped (scale down, in kill order);
2. old tasks are visited in kill order: one that is not healthy is stopped (it serves nothing,
   so stopping it cannot lower the healthy count); a healthy one is stopped only while
   healthy(old + new) - 1 >= minHealthy, and the count drops by one for each;
3. new tasks are launched up to min(n - new, maxCapacity - (old + new)), counting after the
   stops of step 2.
So the healthy count never drops below minHealthy by our doing, the active count never
exceeds maxCapacity, and when every new task is healthy the remaining old ones go.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from kade.model import Task, TaskStatus
from kade.spec import AppSpec, UpgradeStrategy


def capacity(n: int, strategy: UpgradeStrategy) -> tuple[int, int]:
    """(minHealthy, maxCapacity) for `n` instances; see the module docstring."""
    # round() first: 10 * 0.3 is 3.0000000000000004 in floats, and must not ceil to 4.
    min_healthy = math.ceil(round(n * strategy.minimum_health_capacity, 9))
    max_capacity = math.floor(round(n * (1 + strategy.maximum_over_capacity), 9))
    if min_healthy == max_capacity:
        max_capacity += 1
    return min_healthy, max_capacity


def is_healthy(app: AppSpec, status: TaskStatus | None) -> bool:
    """Running, and passing its health checks if the app has any."""
    if status is None or status.state != "running":
        return False
    if status.health == "healthy":
        return True
    return not app.health_checks and status.health != "unhealthy"


def kill_rank(app: AppSpec, status: TaskStatus | None) -> int:
    """Lower is stopped first: unhealthy, then not yet running, then not yet healthy, then
    healthy."""
    if status is not None and status.health == "unhealthy":
        return 0
    if status is None or status.state != "running":
        return 1
    return 3 if is_healthy(app, status) else 2


def kill_order(
    app: AppSpec, tasks: Iterable[Task], statuses: Mapping[str, TaskStatus] | None = None
) -> list[Task]:
    """`tasks` in the order they should be stopped; ties go by the app's killSelection."""
    found = statuses or {}
    youngest = app.kill_selection == "YOUNGEST_FIRST"

    def key(t: Task) -> tuple[int, float, str]:
        age = -t.created_at if youngest else t.created_at
        return kill_rank(app, found.get(t.id)), age, t.id

    return sorted(tasks, key=key)
