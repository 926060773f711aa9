"""An in-memory world for the planner: plans are applied the way the loop applies them.

Used by tests and benchmarks to run the pure planner through many steps without a store:
launches become tasks with predictable ids, stops set `desired`, forgets delete, and an
`agent` side is played by `report()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kade.model import TERMINAL, Node, QueueEntry, Task, TaskState, TaskStatus, task_id_prefix
from kade.scheduler.plan import Plan, Snapshot, plan
from kade.spec import AppSpec, parse_app, spec_hash


def app_spec(app_id: str, version: str = "v1", **fields: Any) -> AppSpec:
    """A validated app: `fields` in Marathon's camelCase or kade's snake_case."""
    data: dict[str, Any] = {"id": app_id, "cmd": "sleep 1000", **fields}
    if "container" in data:
        data.pop("cmd")
    return parse_app(data).app.model_copy(update={"version": version})


def node(name: str, cpus: float = 4.0, mem: float = 4096.0, **fields: Any) -> Node:
    return Node(name=name, address=fields.pop("address", "127.0.0.1"), cpus=cpus, mem=mem,
                **fields)


@dataclass
class Simulation:
    apps: dict[str, AppSpec] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    statuses: dict[str, TaskStatus] = field(default_factory=dict)
    queue: dict[str, QueueEntry] = field(default_factory=dict)
    port_range: tuple[int, int] = (31000, 32000)
    serial: int = 0

    def add_app(self, app: AppSpec) -> AppSpec:
        self.apps[app.id] = app
        return app

    def add_node(self, n: Node) -> Node:
        self.nodes[n.name] = n
        return n

    def snapshot(self) -> Snapshot:
        return Snapshot(
            apps=dict(self.apps), tasks=dict(self.tasks), statuses=dict(self.statuses),
            nodes=dict(self.nodes), queue=dict(self.queue),
            hashes={app_id: spec_hash(app) for app_id, app in self.apps.items()},
        )

    def plan(self, now: float) -> Plan:
        return plan(self.snapshot(), now, self.port_range)

    def apply(self, p: Plan, now: float) -> list[Task]:
        """Write `p` into the world; returns the tasks it created."""
        created = []
        for launch in p.launches:
            self.serial += 1
            task = Task(
                id=f"{task_id_prefix(launch.app_id)}.{self.serial:012x}",
                app_id=launch.app_id, version=launch.version, spec_hash=launch.spec_hash,
                node=launch.node, host=launch.host, host_ports=list(launch.host_ports),
                cpus=launch.cpus, mem=launch.mem, created_at=now,
            )
            self.tasks[task.id] = task
            created.append(task)
        for stop in p.stops:
            task = self.tasks[stop.task_id]
            self.tasks[stop.task_id] = task.model_copy(
                update={"desired": "stop", "stop_reason": stop.reason}
            )
        for retag in p.retags:
            task = self.tasks[retag.task_id]
            self.tasks[retag.task_id] = task.model_copy(update={"version": retag.version})
        for task_id in p.forgets:
            self.tasks.pop(task_id, None)
            self.statuses.pop(task_id, None)
        for app_id, entry in p.queue.items():
            if entry is None:
                self.queue.pop(app_id, None)
            else:
                self.queue[app_id] = entry
        return created

    def step(self, now: float) -> Plan:
        p = self.plan(now)
        self.apply(p, now)
        return p

    def report(self, task_id: str, state: TaskState, now: float, **fields: Any) -> TaskStatus:
        """Play the agent: write the status of a task."""
        task = self.tasks[task_id]
        old = self.statuses.get(task_id)
        started = fields.pop("started_at", old.started_at if old else None)
        if state == "running" and started is None:
            started = now
        status = TaskStatus(task_id=task_id, app_id=task.app_id, node=task.node, state=state,
                            started_at=started, updated_at=now, **fields)
        self.statuses[task_id] = status
        return status

    def active(self, app_id: str) -> list[Task]:
        return sorted(
            (t for t in self.tasks.values()
             if t.app_id == app_id and t.desired == "run" and not self._ended(t.id)),
            key=lambda t: t.id,
        )

    def _ended(self, task_id: str) -> bool:
        status = self.statuses.get(task_id)
        return status is not None and status.state in TERMINAL
