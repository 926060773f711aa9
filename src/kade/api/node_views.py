"""What the node API shows of a node: its status, what it runs and uses, how far its drain got.

Pure functions of records (the node, what operators asked of it, the tasks and their
statuses, the apps): the API reads a snapshot and answers with these, the stream answers
with them again whenever a record they read changes, and the tests call them with plain
values.

Status, in this order:
- `down`: its agent is not alive — `alive/<name>`, which the agent keeps under a lease, is
  gone (the agent died or lost the servers for longer than the lease's time to live) — or
  something refers to the node (a drain, an eligibility, a task) but it has no record;
- `drained`: a drain was asked and nothing is left to move;
- `draining`: a drain was asked and tasks are still on the node;
- `ready`: otherwise. Eligibility is shown beside it, not in it: a node can be ready and
  ineligible (nothing new is placed there; what runs stays).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kade.model import TERMINAL, Node, NodeControl, Task, TaskStatus, iso

NodeStatus = Literal["ready", "down", "draining", "drained"]


class AppFacts:
    """What progress needs of an app: whether it is a system app (one task per node, moved
    last, kept by `keepSystem`) and whether its tasks have health checks to wait for."""

    def __init__(self, system: bool = False, health_checked: bool = False) -> None:
        self.system = system
        self.health_checked = health_checked

    @classmethod
    def of(cls, app: Any) -> AppFacts:
        """From an AppSpec; `type` is read only if the spec has it (system apps)."""
        return cls(system=getattr(app, "type", "service") == "system",
                   health_checked=bool(getattr(app, "health_checks", None)))


@dataclass(frozen=True)
class DrainProgress:
    node: str
    started_at: float
    deadline: float
    total: int  # tasks on the node when the drain began
    left: int  # still to move: no replacement started yet
    moving: int  # a replacement is starting, or the task is being stopped
    kept: int  # system tasks `keepSystem` leaves running
    keep_system: bool
    max_parallel: int

    @property
    def done(self) -> int:
        return max(0, self.total - self.left - self.moving - self.kept)

    @property
    def complete(self) -> bool:
        return self.left == 0 and self.moving == 0

    def json(self, now: float) -> dict[str, Any]:
        return {
            "node": self.node,
            "startedAt": iso(self.started_at),
            "deadline": iso(self.deadline),
            "deadlinePassed": now >= self.deadline,
            "keepSystem": self.keep_system,
            "maxParallel": self.max_parallel,
            "tasks": {"total": self.total, "left": self.left, "moving": self.moving,
                      "done": self.done, "kept": self.kept},
            "complete": self.complete,
        }


def is_active(task: Task, status: TaskStatus | None) -> bool:
    """Placed to run and not ended: it holds the node's resources and ports."""
    return task.desired == "run" and (status is None or status.state not in TERMINAL)


def _stopping(task: Task, status: TaskStatus | None) -> bool:
    return task.desired == "stop" and (status is None or status.state not in TERMINAL)


def _serving(status: TaskStatus | None, facts: AppFacts) -> bool:
    """A replacement that has taken over: running, and healthy if the app checks health."""
    if status is None or status.state != "running":
        return False
    return status.health == "healthy" if facts.health_checked else status.health != "unhealthy"


@dataclass(frozen=True)
class TaskIndex:
    """The tasks of a snapshot grouped once, so that showing every node costs one pass over
    the tasks rather than one per node."""

    statuses: Mapping[str, TaskStatus]
    apps: Mapping[str, AppFacts]
    on: Mapping[str, list[Task]]  # node → the tasks placed on it
    starting: Mapping[str, list[Task]]  # app → its active tasks not yet serving

    def facts(self, app_id: str) -> AppFacts:
        return self.apps.get(app_id, AppFacts())


def index_tasks(tasks: Iterable[Task], statuses: Mapping[str, TaskStatus],
                apps: Mapping[str, AppFacts]) -> TaskIndex:
    on: dict[str, list[Task]] = {}
    starting: dict[str, list[Task]] = {}
    for task in tasks:
        on.setdefault(task.node, []).append(task)
        status = statuses.get(task.id)
        if is_active(task, status) and not _serving(status, apps.get(task.app_id, AppFacts())):
            starting.setdefault(task.app_id, []).append(task)
    return TaskIndex(statuses, apps, on, starting)


def drain_progress(name: str, control: NodeControl, index: TaskIndex) -> DrainProgress | None:
    """How far the drain of node `name` got; None when no drain is asked of it.

    A task on the node is *moving* while a replacement of its app, placed elsewhere since the
    drain began, is not yet serving (one replacement per task, surge-first), or while it is
    being stopped; it is *left* otherwise. With `keepSystem`, system-app tasks are *kept*,
    neither left nor moving. The drain is complete when nothing is left or moving."""
    drain = control.drain
    if drain is None:
        return None
    per_app: dict[str, int] = {}
    stopping = kept = 0
    for task in index.on.get(name, []):
        status = index.statuses.get(task.id)
        if _stopping(task, status):
            stopping += 1
        elif is_active(task, status):
            if drain.keep_system and index.facts(task.app_id).system:
                kept += 1
            else:
                per_app[task.app_id] = per_app.get(task.app_id, 0) + 1
    replacing = 0
    for app_id, count in per_app.items():
        pending = sum(1 for t in index.starting.get(app_id, [])
                      if t.node != name and t.created_at >= drain.started_at)
        replacing += min(count, pending)
    active = sum(per_app.values())
    return DrainProgress(
        node=name, started_at=drain.started_at, deadline=drain.deadline,
        total=max(drain.tasks_at_start, active + stopping + kept),
        left=active - replacing, moving=replacing + stopping, kept=kept,
        keep_system=drain.keep_system, max_parallel=drain.max_parallel)


def node_status(node: Node | None, progress: DrainProgress | None, alive: bool = True
                ) -> NodeStatus:
    if node is None or not alive:
        return "down"
    if progress is not None:
        return "drained" if progress.complete else "draining"
    return "draining" if node.draining else "ready"


def node_json(name: str, node: Node | None, control: NodeControl | None, index: TaskIndex,
              now: float, alive: bool = True) -> dict[str, Any]:
    """One node as `GET /v1/nodes` shows it. `node` None: the agent's record is gone;
    `alive` False: its agent's liveness key is."""
    progress = drain_progress(name, control, index) if control else None
    here = [t for t in index.on.get(name, []) if is_active(t, index.statuses.get(t.id))]
    task_ports = {p for t in here for p in t.host_ports}
    held = node.ports_in_use if node is not None else []
    return {
        "name": name,
        "address": node.address if node else "",
        "hostname": node.hostname if node else "",
        "attributes": dict(node.attributes) if node else {},
        "drivers": list(node.drivers) if node else [],
        "status": node_status(node, progress, alive),
        "eligible": control.eligible if control else True,
        "tasks": len(here),
        "cpus": {"used": round(sum(t.cpus for t in here), 6),
                 "total": node.cpus if node else 0.0},
        "mem": {"used": round(sum(t.mem for t in here), 6), "total": node.mem if node else 0.0},
        "portsInUse": sorted(task_ports | set(held)),
        "portsHeld": list(held),  # by processes other than kade's tasks
        "lastSeen": iso(node.updated_at) if node and node.updated_at else None,
        "drain": progress.json(now) if progress else None,
    }


def known_names(nodes: Iterable[str], controls: Iterable[str],
                tasks: Iterable[Task]) -> list[str]:
    """Every node something refers to: registered, asked something of, or running a task."""
    return sorted({*nodes, *controls, *(t.node for t in tasks if t.desired == "run")})
