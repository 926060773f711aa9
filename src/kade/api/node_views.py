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
from kade.scheduler.drain import drain_progress
from kade.spec import AppSpec

NodeStatus = Literal["ready", "down", "draining", "drained"]


@dataclass(frozen=True)
class DrainView:
    """A drain's progress as the API shows it, from what the planner decides
    (`kade.scheduler.drain.drain_progress`): the planner's `left` holds the tasks whose
    replacement is starting (`moving` there), the API shows them apart from the others."""

    node: str
    started_at: float
    deadline: float
    total: int  # tasks on the node when the drain began
    left: int  # still to move: no replacement started yet
    moving: int  # a replacement is starting, or the task is being stopped
    kept: int  # system tasks `keepSystem` leaves running
    complete: bool  # nothing left to move or being stopped: the planner's `done`
    keep_system: bool
    max_parallel: int

    @property
    def done(self) -> int:
        return max(0, self.total - self.left - self.moving - self.kept)

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


@dataclass(frozen=True)
class TaskIndex:
    """The tasks of a snapshot grouped once, so that showing every node costs one pass over
    the tasks rather than one per node."""

    statuses: Mapping[str, TaskStatus]
    apps: Mapping[str, AppSpec]
    on: Mapping[str, list[Task]]  # node → the tasks placed on it
    of_app: Mapping[str, list[Task]]  # app → its tasks, wherever they are


def index_tasks(tasks: Iterable[Task], statuses: Mapping[str, TaskStatus],
                apps: Mapping[str, AppSpec]) -> TaskIndex:
    on: dict[str, list[Task]] = {}
    of_app: dict[str, list[Task]] = {}
    for task in tasks:
        on.setdefault(task.node, []).append(task)
        of_app.setdefault(task.app_id, []).append(task)
    return TaskIndex(statuses, apps, on, of_app)


def drain_view(name: str, control: NodeControl, index: TaskIndex) -> DrainView | None:
    """How far the drain of node `name` got; None when no drain is asked of it.

    The planner's own measure, given only the tasks of the apps present on the node (the
    rest cannot change it): a task is *moving* while its replacement elsewhere is not yet
    healthy, or while it is being stopped; *left* otherwise; with `keepSystem`, system-app
    tasks are *kept*. The drain is complete when nothing is left or moving."""
    drain = control.drain
    if drain is None:
        return None
    here = {t.app_id for t in index.on.get(name, [])}
    tasks = [t for app_id in here for t in index.of_app.get(app_id, [])]
    p = drain_progress(name, control, index.apps, tasks, index.statuses)
    assert p is not None
    return DrainView(
        node=name, started_at=drain.started_at, deadline=drain.deadline,
        total=max(drain.tasks_at_start, p.left + p.stopping + p.kept),
        left=p.left - p.moving, moving=p.moving + p.stopping, kept=p.kept, complete=p.done,
        keep_system=drain.keep_system, max_parallel=drain.max_parallel)


def node_status(node: Node | None, progress: DrainView | None, alive: bool = True
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
    progress = drain_view(name, control, index) if control else None
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
        # its node listener, which servers ask for its tasks' logs (`kade agent --listen`)
        **({"apiUrl": node.api_url} if node is not None and node.api_url else {}),
    }


def known_names(nodes: Iterable[str], controls: Iterable[str],
                tasks: Iterable[Task]) -> list[str]:
    """Every node something refers to: registered, asked something of, or running a task."""
    return sorted({*nodes, *controls, *(t.node for t in tasks if t.desired == "run")})
