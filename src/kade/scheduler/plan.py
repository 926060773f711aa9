"""The scheduler's pure core: what should change, given everything kade knows right now.

`plan(snapshot, now)` compares the declared apps with the tasks placed and their reported
statuses, and returns the launches, stops, forgets and queue updates that bring them in line.
It does no I/O and reads no clock; the same input gives the same plan, and planning again
after applying a plan gives an empty one. Marathon's behaviour is the reference:

- A task is *active* while it should run and has not ended (status absent or not terminal).
  One that ended while it should run failed: it is forgotten, the app's failure count grows
  and its next launch is delayed (backoff.py).
- Tasks asked to stop are forgotten once their agent reports them ended; on a node that is no
  longer registered nobody will report, so they are forgotten at once (a returning agent
  stops containers that have no task).
- Apps that are gone have all their tasks stopped and their queue entry deleted.
- Active tasks of an older spec, and active tasks on a node whose record says `draining`,
  are replaced by a rolling replacement under the app's upgradeStrategy (rollout.py).
- Tasks on a node with an operator's drain (`nodectl/<name>`) move surge-first, and those
  left at its deadline are stopped (drain.py); an ineligible node gets no new task.
- System apps run one task on every eligible node that matches them (system.py).
- Otherwise the app scales up to `instances` active tasks, or down in kill order.
- Active tasks whose spec is unchanged but whose app got a new version (a scale, a change of
  backoff or upgrade strategy) are moved to that version without a restart, so that every
  task points at a stored version and shows as current.
- New tasks are placed on registered, eligible, non-draining nodes (placement.py); when some
  cannot be placed the queue entry's `waiting` says why, node by node.
- An app that has no active task yet and whose `dependencies` are not all healthy (every
  instance of the dependency's current spec healthy) is not started: its queue entry waits
  for them. That is what deploys a group in dependency order. An app already running is not
  held back by a dependency that turns unhealthy later: its failed tasks are replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from kade.model import (
    TERMINAL,
    Node,
    NodeControl,
    QueueEntry,
    Task,
    TaskStatus,
    driver_for,
    iso,
)
from kade.scheduler.backoff import count_failures, reset_at
from kade.scheduler.constraints import Constraint
from kade.scheduler.drain import closed_nodes, drains, move
from kade.scheduler.index import Changed, TaskIndex
from kade.scheduler.placement import Cluster, Request
from kade.scheduler.rollout import capacity, is_healthy, kill_order
from kade.scheduler.system import plan_system
from kade.spec import AppSpec, spec_hash


@dataclass(frozen=True)
class Snapshot:
    """Everything the planner looks at. Keys: app ids (`/shop/web`), task ids, node names."""

    apps: Mapping[str, AppSpec]  # the current spec of each app (version set)
    tasks: Mapping[str, Task]
    statuses: Mapping[str, TaskStatus]  # absent: the agent has not reported yet
    nodes: Mapping[str, Node]
    queue: Mapping[str, QueueEntry]
    # spec_hash() of each app, if the caller keeps them (hashing is the costly part of a
    # steady-state plan); missing ones are computed.
    hashes: Mapping[str, str] = field(default_factory=dict)
    # Apps whose record could not be read: their tasks are left exactly as they are, rather
    # than stopped as if the app were deleted.
    unreadable: frozenset[str] = frozenset()
    # What operators asked of nodes (eligibility, drains), by node name.
    controls: Mapping[str, NodeControl] = field(default_factory=dict)
    # Nodes that are down (their agent's liveness key is gone), and since when: they get no
    # new task, and their tasks are replaced elsewhere once down for the app's
    # unreachableStrategy.inactiveAfterSeconds.
    down: Mapping[str, float] = field(default_factory=dict)
    # The tasks and statuses above, indexed, if the caller keeps them so (index.py); built
    # when missing. Needed to plan only what changed.
    index: TaskIndex | None = None


class Launch(NamedTuple):
    """A new task to create; the loop gives it an id and its creation time. (A named tuple:
    a plan from scratch makes one per task, and it is made twice as fast as a dataclass.)"""

    app_id: str
    version: str
    spec_hash: str
    node: str
    host: str
    host_ports: tuple[int, ...]
    cpus: float
    mem: float


@dataclass(frozen=True, slots=True)
class Stop:
    """A task whose `desired` becomes "stop"."""

    task_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Retag:
    """A task that keeps running but now belongs to another version of its app (same spec)."""

    task_id: str
    version: str


@dataclass(frozen=True)
class Plan:
    launches: tuple[Launch, ...] = ()
    stops: tuple[Stop, ...] = ()
    retags: tuple[Retag, ...] = ()
    forgets: tuple[str, ...] = ()  # task ids whose task and status records are deleted
    queue: Mapping[str, QueueEntry | None] = field(default_factory=dict)  # None: delete
    wake_at: float | None = None  # plan again then, even if nothing else changes

    @property
    def empty(self) -> bool:
        """Nothing to write (a pending `wake_at` does not count)."""
        return not (self.launches or self.stops or self.retags or self.forgets or self.queue)


def plan(
    snap: Snapshot,
    now: float,
    port_range: tuple[int, int] = (31000, 32000),
    changed: Changed | None = None,
) -> Plan:
    """The changes that bring the placed tasks in line with the declared apps at `now`.

    With `changed` (what changed since the last plan that was applied, as the snapshot's
    index tells) only the apps that may need something are planned: those changed, those
    with tasks on a changed node, those with a queue entry (waiting, backing off), those on a
    draining or down node and, when a node changed, the system apps. The others were in line after
    the last plan and nothing of theirs moved: their part of a full plan is empty, so the
    plan is the same as a full one, at a cost that follows the change, not the cluster.
    """
    return _Planner(snap, now, port_range).run(changed)


class _Planner:
    def __init__(self, snap: Snapshot, now: float, port_range: tuple[int, int]) -> None:
        self.snap = snap
        self.now = now
        self.launches: list[Launch] = []
        self.stops: list[Stop] = []
        self.retags: list[Retag] = []
        self.forgets: list[str] = []
        self.entries: dict[str, QueueEntry | None] = {}  # each live app's entry, but `waiting`
        self.unplaced: list[tuple[str, Request, dict[str, int]]] = []
        self.held: dict[str, str] = {}  # app id -> why it is not started yet
        self.wakes: list[float] = []
        self.port_range = port_range
        self.index = snap.index or TaskIndex.build(snap.tasks.values(), snap.statuses.values())
        self.draining = {name for name, n in snap.nodes.items() if n.draining}
        self.drains = drains(snap.nodes, snap.controls)
        self._cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        """Built on first use: a plan with nothing to place need not add up the nodes."""
        if self._cluster is None:
            closed = closed_nodes(self.snap.nodes, self.snap.controls)
            closed.update({name: "down" for name in self.snap.down})
            self._cluster = Cluster(self.snap.nodes, self.index.usage, self.port_range, closed)
        return self._cluster

    def run(self, changed: Changed | None) -> Plan:
        snap = self.snap
        for app_id in sorted(self._apps_to_plan(changed)):
            if app_id in snap.unreadable:
                continue
            app = snap.apps.get(app_id)
            if app is None:
                self._removed(app_id)
            else:
                self._app(app_id, app)
        self.forgets.extend(self.index.orphans)
        waiting = {
            app_id: self.cluster.explain(req, per_node)
            for app_id, req, per_node in self.unplaced
        }
        waiting.update(self.held)
        queue: dict[str, QueueEntry | None] = {}
        for app_id, entry in self.entries.items():
            why = waiting.get(app_id, "")
            if entry is None:
                wanted = QueueEntry(app_id=app_id, waiting=why) if why else None
            else:
                if entry.waiting != why:
                    entry = entry.model_copy(update={"waiting": why})
                wanted = None if _blank(entry) else entry
            if wanted != snap.queue.get(app_id):
                queue[app_id] = wanted
        for app_id in sorted(snap.queue):
            if app_id not in snap.apps and app_id not in snap.unreadable:
                queue[app_id] = None
        future = [t for t in self.wakes if t > self.now]
        return Plan(
            launches=tuple(self.launches),
            stops=tuple(self.stops),
            retags=tuple(self.retags),
            forgets=tuple(sorted(set(self.forgets))),
            queue=queue,
            wake_at=min(future) if future else None,
        )

    def _apps_to_plan(self, changed: Changed | None) -> set[str]:
        snap, index = self.snap, self.index
        if changed is None:
            return set(snap.apps) | set(index.app_ids()) | set(snap.queue)
        apps = set(changed.apps) | set(snap.queue)
        for name in changed.nodes | self.draining | self.drains.keys() | self.snap.down.keys():
            apps.update(index.apps_on(name))
        if changed.nodes:
            apps.update(a for a, spec in snap.apps.items() if spec.type == "system")
        return apps

    # -- one app -------------------------------------------------------------------------

    def _removed(self, app_id: str) -> None:
        for task in self.index.tasks_of(app_id):
            if self._ended(task) or (task.desired == "stop" and task.node not in self.snap.nodes):
                self.forgets.append(task.id)
            elif task.desired == "run":
                self.stops.append(Stop(task.id, "app deleted"))

    def _app(self, app_id: str, app: AppSpec) -> None:
        snap, now = self.snap, self.now
        current_hash = snap.hashes.get(app_id) or spec_hash(app)
        system = app.type == "system"
        failed: list[tuple[Task, TaskStatus]] = []
        new: list[Task] = []
        old: list[Task] = []
        movers: list[Task] = []  # current tasks on draining nodes (drain.py)
        stopping: list[Task] = []
        for task in self.index.tasks_of(app_id):
            status = snap.statuses.get(task.id)
            drain = self.drains.get(task.node)
            if status is not None and status.state in TERMINAL:
                self.forgets.append(task.id)
                if task.desired == "run":
                    failed.append((task, status))
            elif task.desired == "stop":
                if task.node not in snap.nodes:
                    self.forgets.append(task.id)
                else:
                    stopping.append(task)
            elif task.node in snap.down and not system and self._lost(app, task):
                since = snap.down[task.node]
                self.stops.append(Stop(task.id, f"node {task.node} down since {iso(since)}: "
                                                "replaced on another node"))
            elif system:
                new.append(task)  # system.py sorts them out node by node
            elif drain is not None and now >= drain.deadline:
                self.stops.append(Stop(task.id, f"node {task.node}: the drain's deadline passed"))
            else:
                if drain is not None:
                    self.wakes.append(drain.deadline)
                if task.spec_hash != current_hash or task.node in self.draining:
                    old.append(task)
                else:
                    (new if drain is None else movers).append(task)

        entry = snap.queue.get(app_id)
        if entry is not None and entry.failures > 0 and entry.spec_hash not in ("", current_hash):
            # A new version gets a fresh start, as in Marathon (its failures keep showing).
            entry = entry.model_copy(update={"failures": 0, "delay_until": 0.0})
        if failed:
            entry = count_failures(app, entry or QueueEntry(app_id=app_id), failed, now)
            entry = entry.model_copy(update={"spec_hash": current_hash})
        elif entry is not None and entry.failures > 0:
            current = [(t, snap.statuses.get(t.id)) for t in new if t.spec_hash == current_hash]
            at = reset_at(app, entry, current)
            if at is not None and at <= now:
                entry = entry.model_copy(update={"failures": 0, "delay_until": 0.0})
            elif at is not None:
                self.wakes.append(at)
        self.entries[app_id] = entry

        req = _request(app) if system else None
        launch_on: list[str] = []
        if system and req is not None:
            sp = plan_system(app, current_hash, new, stopping, snap.statuses, snap.nodes,
                             self.cluster.closed, self.drains, self._services_on(app_id), req,
                             now)
            self.stops.extend(Stop(t.id, why) for t, why in sp.stops)
            self.wakes.extend(sp.wakes)
            keep, launch_on = sp.keep, sp.launch_on
            count = len(launch_on)
        else:
            keep, count = self._reconcile(app, new, old, movers)
        version = app.version or ""
        self.retags.extend(
            Retag(t.id, version) for t in keep
            if t.spec_hash == current_hash and t.version != version and version
        )
        if count <= 0:
            return
        if entry is not None and entry.delay_until > now:
            self.wakes.append(entry.delay_until)
            return
        if not keep and app.dependencies:
            unready = [dep for dep in app.dependencies if not self._ready(dep)]
            if unready:
                self.held[app_id] = f"waiting for dependencies to be healthy: {', '.join(unready)}"
                return
        per_node: dict[str, int] = {}
        for task in keep:
            if task.node not in self.drains:  # leaving: spread over where tasks will be
                per_node[task.node] = per_node.get(task.node, 0) + 1
        if req is not None:
            placed, refused = self.cluster.place_each(req, per_node, launch_on)
            if refused:
                self.held[app_id] = f"not running on every node: {refused}"
        else:
            req = _request(app)
            placed = self.cluster.place(req, per_node, count)
            if len(placed) < count:
                self.unplaced.append((app_id, req, per_node))
        cpus, mem = app.cpus, app.mem
        self.launches.extend(
            Launch(app_id, version, current_hash, node.name, node.address, ports, cpus, mem)
            for node, ports in placed
        )

    def _reconcile(
        self, app: AppSpec, new: list[Task], old: list[Task], movers: list[Task]
    ) -> tuple[list[Task], int]:
        """Stop what must go; return the tasks that stay active and how many to launch."""
        statuses = self.snap.statuses
        n = app.instances
        if len(new) > n:
            order = kill_order(app, new, statuses)
            for task in order[: len(new) - n]:
                self.stops.append(Stop(task.id, "scaled down"))
            new = order[len(new) - n:]
        if movers and not old:
            order = kill_order(app, movers, statuses)
            excess = max(0, len(movers) - n)  # more than the app wants, wherever they run
            self.stops.extend(Stop(t.id, "scaled down") for t in order[:excess])
            parallel = min(self.drains[t.node].max_parallel for t in movers)
            m = move(app, new, order[excess:], statuses, parallel)
            self.stops.extend(Stop(t.id, self._replace_reason(app, t)) for t in m.stop)
            return [*new, *m.stay], m.launch
        old = old + movers  # during an upgrade, the upgrade replaces them
        if not old:
            return new, n - len(new)
        min_healthy, max_capacity = capacity(n, app.upgrade_strategy)
        healthy = sum(1 for t in (*new, *old) if is_healthy(app, statuses.get(t.id)))
        kept: list[Task] = []
        for task in kill_order(app, old, statuses):
            if not is_healthy(app, statuses.get(task.id)):
                self.stops.append(Stop(task.id, self._replace_reason(app, task)))
            elif healthy - 1 >= min_healthy:
                self.stops.append(Stop(task.id, self._replace_reason(app, task)))
                healthy -= 1
            else:
                kept.append(task)
        active = len(new) + len(kept)
        return [*new, *kept], min(n - len(new), max_capacity - active)

    # -- helpers ---------------------------------------------------------------------------

    def _ready(self, app_id: str) -> bool:
        """Every instance of the app's current spec runs and is healthy."""
        app = self.snap.apps.get(app_id)
        if app is None:
            return False
        current = self.snap.hashes.get(app_id) or spec_hash(app)
        healthy = sum(
            1 for t in self.index.tasks_of(app_id)
            if t.desired == "run" and t.spec_hash == current
            and is_healthy(app, self.snap.statuses.get(t.id))
        )
        return healthy >= app.instances

    def _lost(self, app: AppSpec, task: Task) -> bool:
        """A task on a down node, down for long enough that it is replaced elsewhere (until
        then it counts as running, and a wake-up is due when it stops counting)."""
        strategy = app.unreachable_strategy
        if strategy.disabled:
            return False
        at = self.snap.down[task.node] + strategy.inactive_after_seconds
        if self.now >= at:
            return True
        self.wakes.append(at)
        return False

    def _ended(self, task: Task) -> bool:
        status = self.snap.statuses.get(task.id)
        return status is not None and status.state in TERMINAL

    def _services_on(self, app_id: str) -> Callable[[str], list[str]]:
        """For a system app: the apps, system apps aside, with a task on a node that has not
        ended."""
        apps = self.snap.apps

        def others(node: str) -> list[str]:
            return [a for a in self.index.apps_holding(node)
                    if a != app_id and (a not in apps or apps[a].type != "system")]
        return others

    def _replace_reason(self, app: AppSpec, task: Task) -> str:
        if task.node in self.draining or task.node in self.drains:
            return f"node {task.node} is draining"
        return f"replaced by version {app.version}" if app.version else "replaced by a new spec"


def _request(app: AppSpec) -> Request:
    """What one task of `app` needs from a node."""
    return Request(
        cpus=app.cpus,
        mem=app.mem,
        ports=tuple(p.requested_host_port for p in app.ports()),
        constraints=tuple(Constraint.parse(c) for c in app.constraints),
        driver=driver_for(app),
    )


def _blank(entry: QueueEntry) -> bool:
    """Nothing to say about the app: no failures, delay, remembered failure or reason."""
    return not (entry.failures or entry.delay_until or entry.last_failure
                or entry.last_failure_at is not None or entry.waiting)
