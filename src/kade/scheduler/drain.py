"""Node eligibility and surge-first drains: what operators ask of a node (`nodectl/<name>`).

An ineligible node gets no new task and keeps the ones it runs. A node with a drain is
ineligible too, and its tasks move elsewhere *surge-first*: the replacement starts on another
node first, and the old task is stopped only once a replacement is healthy. Nomad stops the
old allocation first, which takes a one-instance service to zero for as long as its
replacement needs to start; here the app's healthy count only grows during a move.

Per app, each plan, with n = instances, `new` = its current tasks elsewhere and `movers` = its
current tasks on draining nodes:

- ready = healthy tasks in `new` beyond the n - movers the app runs anyway: replacements that
  are up. One mover is stopped per ready replacement (unhealthy movers first, as in a scale
  down), and a healthy one only while the app keeps minimumHealthCapacity healthy tasks;
- in flight = tasks in `new` beyond n - movers left: replacements started, not yet used;
- replacements are launched while fewer than the drain's max_parallel are in flight (the
  app's own missing tasks, if any, are launched as well: they are not part of the move).

Replacements are spread (and counted by GROUP_BY, UNIQUE, MAX_PER) as if the movers were gone
already: draining a zone must not hold its replacements to the zone's share.

So at most max_parallel tasks of an app move at a time, whatever its upgradeStrategy says
(a drain needs room for one more task, and waits for it to be healthy). While an app is being
upgraded its tasks on a draining node are replaced by the upgrade, under its upgradeStrategy.

After the drain's deadline every task still on the node is stopped where it is, and the app
gets its missing tasks elsewhere as after any stop. System-app tasks stay until no other task
is left on the node, then stop, unless the drain keeps them (`keep_system`). A drain is done
when nothing is left on the node but the system tasks it keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kade.model import TERMINAL, DrainSpec, Node, NodeControl, Task, TaskStatus
from kade.scheduler.rollout import capacity, is_healthy, kill_order
from kade.spec import AppSpec


def closed_nodes(nodes: Mapping[str, Node], controls: Mapping[str, NodeControl]) -> dict[str, str]:
    """Registered nodes that take no new task, and why (words for a "no node fits" reason)."""
    out: dict[str, str] = {}
    for name, c in controls.items():
        if name not in nodes:
            continue
        if c.drain is not None:
            out[name] = "draining"
        elif not c.eligible:
            out[name] = "not eligible"
    return out


def drains(
    nodes: Mapping[str, Node], controls: Mapping[str, NodeControl]
) -> dict[str, DrainSpec]:
    """The drains of registered nodes, by node name."""
    return {name: c.drain for name, c in controls.items()
            if c.drain is not None and name in nodes}


@dataclass(frozen=True, slots=True)
class Move:
    """One plan's part of moving an app's tasks off draining nodes."""

    stop: tuple[Task, ...]  # movers whose replacement is healthy
    stay: tuple[Task, ...]  # movers that keep running for now
    launch: int  # tasks to start elsewhere: replacements and the app's missing ones
    in_flight: int  # replacements started and not yet healthy


def move(
    app: AppSpec,
    new: list[Task],
    movers: list[Task],
    statuses: Mapping[str, TaskStatus],
    max_parallel: int,
) -> Move:
    """See the module docstring. `new` holds at most `instances` tasks (scaled down before)."""
    n = app.instances
    min_healthy, _ = capacity(n, app.upgrade_strategy)
    up = sum(1 for t in new if is_healthy(app, statuses.get(t.id)))
    ready = up - max(0, n - len(movers))
    healthy = up + sum(1 for t in movers if is_healthy(app, statuses.get(t.id)))
    stop: list[Task] = []
    stay: list[Task] = []
    for task in kill_order(app, movers, statuses):
        if ready > 0 and (not is_healthy(app, statuses.get(task.id))
                          or healthy - 1 >= min_healthy):
            if is_healthy(app, statuses.get(task.id)):
                healthy -= 1
            stop.append(task)
            ready -= 1
        else:
            stay.append(task)
    base = max(0, n - len(stay))  # what the app runs apart from the movers left
    in_flight = max(0, len(new) - base)
    launch = max(0, base - len(new)) + max(0, min(len(stay), max(1, max_parallel)) - in_flight)
    return Move(tuple(stop), tuple(stay), launch, in_flight)


@dataclass(frozen=True, slots=True)
class DrainProgress:
    """How far a node's drain got, for the API to show."""

    node: str
    deadline: float
    left: int  # tasks still running there that must go
    moving: int  # of those, tasks whose replacement runs elsewhere and is not healthy yet
    stopping: int  # tasks being stopped there (their requests finishing), not yet ended
    kept: int  # system tasks the drain leaves running
    done: bool


def drain_progress(
    name: str,
    control: NodeControl,
    apps: Mapping[str, AppSpec],
    tasks: Iterable[Task],
    statuses: Mapping[str, TaskStatus],
) -> DrainProgress | None:
    """The progress of `name`'s drain (None: it has none). `tasks`: at least every task of
    the apps that run on the node, wherever they run (the snapshot's tasks will do)."""
    drain = control.drain
    if drain is None:
        return None
    by_app: dict[str, list[Task]] = {}
    for task in tasks:
        by_app.setdefault(task.app_id, []).append(task)
    left = moving = stopping = kept = 0
    for app_id, app_tasks in by_app.items():
        here = [t for t in app_tasks if t.node == name and not _ended(t, statuses)]
        if not here:
            continue
        app = apps.get(app_id)
        system = app is not None and app.type == "system"
        for task in here:
            if task.desired == "stop":
                stopping += 1
            elif system and drain.keep_system:
                kept += 1
            else:
                left += 1
        if app is None or system:
            continue
        active_here = [t for t in here if t.desired == "run"]
        elsewhere = [t for t in app_tasks if t.node != name and t.desired == "run"
                     and not _ended(t, statuses)]
        waiting = [t for t in elsewhere if not is_healthy(app, statuses.get(t.id))]
        surplus = max(0, len(elsewhere) - max(0, app.instances - len(active_here)))
        moving += min(len(active_here), surplus, len(waiting))
    return DrainProgress(node=name, deadline=drain.deadline, left=left, moving=moving,
                         stopping=stopping, kept=kept, done=left == 0 and stopping == 0)


def _ended(task: Task, statuses: Mapping[str, TaskStatus]) -> bool:
    status = statuses.get(task.id)
    return status is not None and status.state in TERMINAL
