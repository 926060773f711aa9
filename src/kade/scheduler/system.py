"""System apps (`"type": "system"`): one task on every eligible node that matches the app.

A node matches when it runs the app's kind of task and the app's constraints on its own
attributes hold (CLUSTER, IS, LIKE, UNLIKE; the counting operators are checked when a task is
placed, as for any app). Each plan, node by node:

- an open node (registered, eligible, no drain) that matches and has no task of the app gets
  one, once the app's task stopped there (if any) has ended;
- an open node that no longer matches loses its task; a node that is gone loses it too;
- an ineligible node keeps its task and gets none;
- a draining node keeps its task until no task of another app is left there, then it is
  stopped, unless the drain keeps system tasks; after the drain's deadline it is stopped too
  (unless kept). A drain never moves a system task: there is one on every node already;
- more than one task on a node: the extra ones stop;
- a new version replaces the tasks one node at a time: the old task on the first node (by
  name) is stopped once no task of the app is being stopped and every task of the new
  version is healthy; its replacement starts there when it has ended (a fixed host port
  cannot be held twice on one node).

`instances` 0 suspends the app: every task stops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from kade.model import DrainSpec, Node, Task, TaskStatus
from kade.scheduler.constraints import check
from kade.scheduler.placement import COUNTING, Request
from kade.scheduler.rollout import is_healthy, kill_order
from kade.spec import AppSpec


@dataclass
class SystemPlan:
    stops: list[tuple[Task, str]] = field(default_factory=list)
    launch_on: list[str] = field(default_factory=list)  # node names, sorted
    keep: list[Task] = field(default_factory=list)  # active tasks that stay
    wakes: list[float] = field(default_factory=list)


def mismatch(req: Request, node: Node) -> str | None:
    """Why a system app does not belong on `node` at all, or None."""
    if req.driver and not node.runs(req.driver):
        return f"node {node.name} runs no such tasks (drivers: {', '.join(node.drivers)})"
    for c in req.constraints:
        if c.op in COUNTING:
            continue
        why = check(c, node, {})
        if why is not None:
            return f"node {node.name} does not match: {why}"
    return None


def plan_system(
    app: AppSpec,
    current_hash: str,
    active: list[Task],
    stopping: list[Task],
    statuses: Mapping[str, TaskStatus],
    nodes: Mapping[str, Node],
    closed: Mapping[str, str],
    drains: Mapping[str, DrainSpec],
    others_on: Callable[[str], Iterable[str]],
    req: Request,
    now: float,
) -> SystemPlan:
    """What to stop and where to launch; see the module docstring. `active`: tasks that
    should run and have not ended; `stopping`: tasks asked to stop that have not ended;
    `others_on(node)`: the apps other than this one with a task (any) on the node."""
    out = SystemPlan()
    version = app.version or ""
    by_node: dict[str, list[Task]] = {}
    for task in active:
        by_node.setdefault(task.node, []).append(task)
    stopping_on = {t.node for t in stopping if t.node in nodes}
    if app.instances <= 0:
        out.stops.extend((t, "scaled down") for t in active)
        return out
    old_on: list[str] = []
    for name in sorted(set(by_node) | set(nodes)):
        tasks = kill_order(app, by_node.get(name, []), statuses)
        node = nodes.get(name)
        if node is None:
            out.stops.extend((t, f"node {name} left the cluster") for t in tasks)
            continue
        drain = drains.get(name)
        if drain is not None:
            if drain.keep_system:
                out.keep.extend(tasks)
            elif now >= drain.deadline:
                out.stops.extend((t, f"node {name}: the drain's deadline passed") for t in tasks)
            elif not any(True for _ in others_on(name)):
                out.stops.extend((t, f"node {name} is drained") for t in tasks)
            else:
                out.keep.extend(tasks)
                if tasks:
                    out.wakes.append(drain.deadline)
            continue
        if name in closed:
            out.keep.extend(tasks)
            continue
        why = mismatch(req, node)
        if why is not None:
            out.stops.extend((t, why) for t in tasks)
            continue
        if tasks:
            # keep the best one: of the current spec if any, the healthiest, the oldest
            best = max(tasks, key=lambda t: (t.spec_hash == current_hash, tasks.index(t)))
            out.stops.extend((t, "one task per node") for t in tasks if t is not best)
            out.keep.append(best)
            if best.spec_hash != current_hash:
                old_on.append(name)
        elif name not in stopping_on:
            out.launch_on.append(name)
    busy = bool(stopping_on) or any(
        t.spec_hash == current_hash and not is_healthy(app, statuses.get(t.id))
        for t in out.keep
    )
    if old_on and not busy:
        name = old_on[0]
        (task,) = [t for t in out.keep if t.node == name]
        out.keep.remove(task)
        reason = f"replaced by version {version}" if version else "replaced by a new spec"
        out.stops.append((task, reason))
    return out
