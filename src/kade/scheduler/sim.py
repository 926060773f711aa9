"""An in-memory world for the planner: plans are applied the way the loop applies them.

Used by tests and benchmarks to run the pure planner through many steps without a store:
launches become tasks with predictable ids, stops set `desired`, forgets delete, and an
`agent` side is played by `report()`.

Changes made through its methods are also kept in a `TaskIndex`, the way the scheduler loop
keeps one: `snapshot(indexed=True)` hands it to the planner and `take_changes()` says what
changed, for plans of only what changed. Tests that edit the dicts directly plan with a
snapshot that is indexed afresh (the default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kade.model import (
    TERMINAL,
    Node,
    NodeControl,
    QueueEntry,
    Task,
    TaskState,
    TaskStatus,
    task_id_prefix,
)
from kade.scheduler.index import Changed, TaskIndex
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
    controls: dict[str, NodeControl] = field(default_factory=dict)
    down: dict[str, float] = field(default_factory=dict)  # node → down since
    port_range: tuple[int, int] = (31000, 32000)
    serial: int = 0
    index: TaskIndex = field(default_factory=TaskIndex)
    hashes: dict[str, str] = field(default_factory=dict)

    def add_app(self, app: AppSpec) -> AppSpec:
        self.apps[app.id] = app
        self.hashes[app.id] = spec_hash(app)
        self.index.app_changed(app.id)
        return app

    def remove_app(self, app_id: str) -> None:
        self.apps.pop(app_id, None)
        self.hashes.pop(app_id, None)
        self.index.app_changed(app_id)

    def add_node(self, n: Node) -> Node:
        self.nodes[n.name] = n
        self.index.node_changed(n.name)
        return n

    def remove_node(self, name: str) -> None:
        self.nodes.pop(name, None)
        self.index.node_changed(name)

    def control(self, c: NodeControl | None, name: str = "") -> None:
        """Set (or with None, clear) what operators ask of a node."""
        if c is None:
            self.controls.pop(name, None)
        else:
            self.controls[c.name] = c
        self.index.node_changed(c.name if c is not None else name)

    def node_down(self, name: str, since: float | None) -> None:
        """The node's agent stopped keeping its lease at `since` (None: it is back)."""
        if since is None:
            self.down.pop(name, None)
        else:
            self.down[name] = since
        self.index.node_changed(name)

    def put_task(self, task: Task) -> None:
        """Write a task as another writer would (the API's `kade kill`)."""
        self.tasks[task.id] = task
        self.index.put_task(task)

    def snapshot(self, indexed: bool = False) -> Snapshot:
        hashes = self.hashes if indexed else {a: spec_hash(app) for a, app in self.apps.items()}
        return Snapshot(
            apps=dict(self.apps), tasks=dict(self.tasks), statuses=dict(self.statuses),
            nodes=dict(self.nodes), queue=dict(self.queue), hashes=dict(hashes),
            controls=dict(self.controls), index=self.index if indexed else None,
            down=dict(self.down),
        )

    def plan(self, now: float, changed: Changed | None = None) -> Plan:
        """A full plan; with `changed`, one of only what changed (from the kept index)."""
        if changed is None:
            return plan(self.snapshot(), now, self.port_range)
        return plan(self.snapshot(indexed=True), now, self.port_range, changed)

    def take_changes(self) -> Changed | None:
        return self.index.take_changes()

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
            self.put_task(task)
            created.append(task)
        for stop in p.stops:
            task = self.tasks[stop.task_id]
            self.put_task(task.model_copy(update={"desired": "stop", "stop_reason": stop.reason}))
        for retag in p.retags:
            task = self.tasks[retag.task_id]
            self.put_task(task.model_copy(update={"version": retag.version}))
        for task_id in p.forgets:
            self.tasks.pop(task_id, None)
            self.statuses.pop(task_id, None)
            self.index.delete_task(task_id)
            self.index.delete_status(task_id)
        for app_id, entry in p.queue.items():
            if entry is None:
                self.queue.pop(app_id, None)
            else:
                self.queue[app_id] = entry
            self.index.app_changed(app_id)
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
        self.index.put_status(status)
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
