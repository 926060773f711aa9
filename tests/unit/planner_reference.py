"""The planner as it was before it planned only what changed and indexed its nodes: kept as
the reference that the randomized tests compare today's plans with (test_planner_equivalence).

A verbatim copy of the planning code (`plan`, `Cluster`, the constraint checks) of that time;
only its imports changed. Do not improve it: its value is in staying what it was.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter

from kade.model import DRIVER_APPS, TERMINAL, Node, QueueEntry, Task, TaskStatus, driver_for
from kade.scheduler.backoff import count_failures, reset_at
from kade.scheduler.plan import Launch, Plan, Retag, Snapshot, Stop
from kade.scheduler.rollout import capacity, is_healthy, kill_order
from kade.spec import AppSpec, spec_hash

HOSTNAME_FIELDS = frozenset({"hostname", "@hostname"})


@dataclass(frozen=True, slots=True)
class Constraint:
    field: str
    op: str
    value: str | None

    @classmethod
    def parse(cls, raw: Sequence[str]) -> Constraint:
        return cls(raw[0], raw[1], raw[2] if len(raw) > 2 else None)

    def __str__(self) -> str:
        return " ".join(p for p in (self.field, self.op, self.value) if p is not None)


def field_value(node: Node, field: str) -> str | None:
    if field in HOSTNAME_FIELDS:
        return node.name
    return node.attributes.get(field)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def check(c: Constraint, node: Node, counts: Mapping[str, int]) -> str | None:
    """None when `node` meets `c`, else why not. `counts`: the app's tasks per field value."""
    value = field_value(node, c.field)
    if value is None:
        if c.op == "UNLIKE":
            return None
        return f"has no attribute {c.field!r} ({c})"
    arg = c.value or ""
    here = counts.get(value, 0)
    if c.op == "UNIQUE":
        return None if here == 0 else f"{c.field}={value} already runs a task of the app ({c})"
    if c.op in ("CLUSTER", "IS"):
        return None if value == arg else f"{c.field}={value}, not {arg} ({c})"
    if c.op == "LIKE":
        return None if _regex(arg).fullmatch(value) else f"{c.field}={value} ({c})"
    if c.op == "UNLIKE":
        return None if not _regex(arg).fullmatch(value) else f"{c.field}={value} ({c})"
    if c.op == "MAX_PER":
        limit = int(arg or 0)
        return None if here < limit else f"{c.field}={value} has {here} tasks already ({c})"
    if c.op == "GROUP_BY":
        if here == 0:
            return None
        groups = [n for n in counts.values() if n > 0]
        minimum = int(arg or 0)
        if len(groups) >= minimum and here == min(groups):
            return None
        return f"{c.field}={value} has {here} tasks, more than another group ({c})"
    return f"unknown operator {c.op!r}"


def value_counts(
    field: str, per_node: Mapping[str, int], nodes: Mapping[str, Node]
) -> dict[str, int]:
    """The app's task count per value of `field`, from its count per node."""
    out: dict[str, int] = {}
    for name, n in per_node.items():
        node = nodes.get(name)
        if node is None or n <= 0:
            continue
        value = field_value(node, field)
        if value is not None:
            out[value] = out.get(value, 0) + n
    return out


EPSILON = 1e-9  # resource sums are floats: 0.1 * 3 must fit in 0.3
MAX_REASONS = 10  # nodes listed in a "no node fits" message


@dataclass(frozen=True, slots=True)
class Request:
    """What one task of an app needs from a node."""

    cpus: float
    mem: float
    ports: tuple[int, ...]  # requested host ports in order; 0 = assign one
    constraints: tuple[Constraint, ...] = ()
    driver: str = ""  # the kind of driver its tasks need (model.driver_for); "" = any


class _NodeState:
    __slots__ = ("cpu_key", "free_cpus", "free_mem", "next_port", "node", "ports")

    def __init__(self, node: Node, first_port: int) -> None:
        self.node = node
        self.free_cpus = node.cpus
        self.free_mem = node.mem
        self.ports: set[int] = set(node.ports_in_use)
        self.next_port = first_port  # every port below it in the range is taken
        self.cpu_key = 0.0

    def settle(self) -> None:
        """After a change: advance the port cursor, recompute the ordering key."""
        while self.next_port in self.ports:
            self.next_port += 1
        # Rounded so that float noise from summing in another order cannot change the choice.
        self.cpu_key = -round(self.free_cpus, 6)


def _num(x: float) -> str:
    return str(round(x, 3))


def _mem(x: float) -> str:
    return f"{round(x, 1):g}"


class Cluster:
    """Free capacity of the registered nodes, charged as the plan places tasks."""

    def __init__(
        self, nodes: Mapping[str, Node], holding: Iterable[Task], port_range: tuple[int, int]
    ) -> None:
        self.nodes = nodes
        self.port_range = port_range
        self._states = {name: _NodeState(nodes[name], port_range[0]) for name in sorted(nodes)}
        for task in holding:
            state = self._states.get(task.node)
            if state is not None:
                state.free_cpus -= task.cpus
                state.free_mem -= task.mem
                state.ports.update(task.host_ports)
        for state in self._states.values():
            state.settle()

    def usable(self, name: str) -> bool:
        """New tasks may go to `name`: registered and not draining."""
        node = self.nodes.get(name)
        return node is not None and not node.draining

    def place(
        self, req: Request, per_node: dict[str, int], count: int
    ) -> list[tuple[Node, tuple[int, ...]]]:
        """Place up to `count` tasks; charges the nodes and counts them into `per_node`.

        `per_node` holds the app's active tasks per node (spread and constraints use it).
        Returns (node, host ports) per placed task; fewer than `count` means no node fits.
        """
        if count <= 0:
            return []
        if req.constraints:
            return self._place_constrained(req, per_node, count)
        # Without constraints a placement changes only the chosen node, so a heap of the
        # candidates stays valid: pop the best, check it, push it back with its new key.
        heap = [
            (per_node.get(name, 0), s.cpu_key, name)
            for name, s in self._states.items()
            if not s.node.draining
        ]
        heapq.heapify(heap)
        out: list[tuple[Node, tuple[int, ...]]] = []
        while heap and len(out) < count:
            _, _, name = heapq.heappop(heap)
            state = self._states[name]
            ports = self._fit(state, req, {})
            if isinstance(ports, str):
                continue  # resources only shrink during a plan: it will not fit later either
            self._charge(state, req, ports)
            per_node[name] = per_node.get(name, 0) + 1
            out.append((state.node, ports))
            heapq.heappush(heap, (per_node[name], state.cpu_key, name))
        return out

    def _place_constrained(
        self, req: Request, per_node: dict[str, int], count: int
    ) -> list[tuple[Node, tuple[int, ...]]]:
        out: list[tuple[Node, tuple[int, ...]]] = []
        while len(out) < count:
            counts = self._counts(req, per_node)
            best: tuple[tuple[int, float, str], _NodeState, tuple[int, ...]] | None = None
            for name, state in self._states.items():
                if state.node.draining:
                    continue
                ports = self._fit(state, req, counts)
                if isinstance(ports, str):
                    continue
                key = (per_node.get(name, 0), state.cpu_key, name)
                if best is None or key < best[0]:
                    best = (key, state, ports)
            if best is None:
                break
            _, state, ports = best
            self._charge(state, req, ports)
            per_node[state.node.name] = per_node.get(state.node.name, 0) + 1
            out.append((state.node, ports))
        return out

    def explain(self, req: Request, per_node: Mapping[str, int]) -> str:
        """Why no node takes another task of the app, node by node, in plain words."""
        if not self._states:
            return "no nodes registered"
        none_runs = unrunnable(req.driver, self.nodes.values())
        if none_runs is not None:
            return none_runs
        counts = self._counts(req, per_node)
        reasons: list[str] = []
        for name, state in self._states.items():
            if state.node.draining:
                reasons.append(f"{name}: draining")
                continue
            why = self._fit(state, req, counts)
            if isinstance(why, str):
                reasons.append(f"{name}: {why}")
        if len(reasons) > MAX_REASONS:
            more = len(reasons) - MAX_REASONS
            reasons = [*reasons[:MAX_REASONS], f"and {more} more"]
        return "no node fits: " + "; ".join(reasons) if reasons else "no node fits"

    # -- one node --------------------------------------------------------------------------

    def _counts(self, req: Request, per_node: Mapping[str, int]) -> dict[str, dict[str, int]]:
        return {c.field: value_counts(c.field, per_node, self.nodes) for c in req.constraints}

    def _fit(
        self, state: _NodeState, req: Request, counts: Mapping[str, Mapping[str, int]]
    ) -> tuple[int, ...] | str:
        """The host ports a task would get on this node, or why it does not fit."""
        if req.driver and not state.node.runs(req.driver):
            return f"runs no {_apps(req.driver)} (drivers: {', '.join(state.node.drivers)})"
        if state.free_cpus + EPSILON < req.cpus:
            return f"needs {_num(req.cpus)} cpus, {_num(max(state.free_cpus, 0.0))} free"
        if state.free_mem + EPSILON < req.mem:
            return f"needs {_mem(req.mem)} MiB mem, {_mem(max(state.free_mem, 0.0))} free"
        for c in req.constraints:
            why = check(c, state.node, counts.get(c.field, {}))
            if why is not None:
                return why
        return self._ports(state, req.ports)

    def _ports(self, state: _NodeState, wanted: tuple[int, ...]) -> tuple[int, ...] | str:
        fixed = {p for p in wanted if p}
        for port in sorted(fixed):
            if port in state.node.ports_in_use:
                return f"host port {port} is held by another process"
            if port in state.ports:
                return f"host port {port} in use"
        lo, hi = self.port_range
        out: list[int] = []
        candidate = state.next_port
        for port in wanted:
            if port:
                out.append(port)
                continue
            while candidate <= hi and (candidate in state.ports or candidate in fixed):
                candidate += 1
            if candidate > hi:
                return f"no free host port in {lo}-{hi}"
            out.append(candidate)
            candidate += 1
        return tuple(out)

    def _charge(self, state: _NodeState, req: Request, ports: tuple[int, ...]) -> None:
        state.free_cpus -= req.cpus
        state.free_mem -= req.mem
        state.ports.update(ports)
        state.settle()


def _apps(driver: str) -> str:
    return DRIVER_APPS.get(driver, f"{driver} tasks")


def unrunnable(driver: str, nodes: Iterable[Node]) -> str | None:
    """Why no registered node can run tasks that need `driver`, or None.

    None too when no node is registered: a cluster that is starting has not told yet what it
    runs. Draining nodes count: draining is a pause, not what a node is."""
    nodes = list(nodes)
    if not driver or not nodes or any(n.runs(driver) for n in nodes):
        return None
    shown = [f"{n.name} runs {', '.join(n.drivers)}" for n in sorted(nodes, key=lambda n: n.name)]
    if len(shown) > MAX_REASONS:
        shown = [*shown[:MAX_REASONS], f"and {len(shown) - MAX_REASONS} more"]
    return f"no node runs {_apps(driver)} ({'; '.join(shown)})"


def plan(snap: Snapshot, now: float, port_range: tuple[int, int] = (31000, 32000)) -> Plan:
    """The changes that bring the placed tasks in line with the declared apps at `now`."""
    return _Planner(snap, now, port_range).run()


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
        self.by_app: dict[str, list[Task]] = {}
        self.draining = {name for name, n in snap.nodes.items() if n.draining}
        self.holding: list[Task] = []  # tasks that hold resources on their node
        statuses = snap.statuses
        for task in snap.tasks.values():
            self.by_app.setdefault(task.app_id, []).append(task)
            status = statuses.get(task.id)
            if status is None or status.state not in TERMINAL:
                self.holding.append(task)
        for tasks in self.by_app.values():
            tasks.sort(key=attrgetter("id"))
        self._cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        """Built on first use: a plan with nothing to place need not add up the nodes."""
        if self._cluster is None:
            self._cluster = Cluster(self.snap.nodes, self.holding, self.port_range)
        return self._cluster

    def run(self) -> Plan:
        snap = self.snap
        for app_id in sorted(set(snap.apps) | set(self.by_app) | set(snap.queue)):
            if app_id in snap.unreadable:
                continue
            app = snap.apps.get(app_id)
            if app is None:
                self._removed(app_id)
            else:
                self._app(app_id, app)
        self.forgets.extend(tid for tid in snap.statuses if tid not in snap.tasks)
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

    # -- one app -------------------------------------------------------------------------

    def _removed(self, app_id: str) -> None:
        for task in self.by_app.get(app_id, []):
            if self._ended(task) or (task.desired == "stop" and task.node not in self.snap.nodes):
                self.forgets.append(task.id)
            elif task.desired == "run":
                self.stops.append(Stop(task.id, "app deleted"))

    def _app(self, app_id: str, app: AppSpec) -> None:
        snap, now = self.snap, self.now
        current_hash = snap.hashes.get(app_id) or spec_hash(app)
        failed: list[tuple[Task, TaskStatus]] = []
        new: list[Task] = []
        old: list[Task] = []
        for task in self.by_app.get(app_id, []):
            status = snap.statuses.get(task.id)
            if status is not None and status.state in TERMINAL:
                self.forgets.append(task.id)
                if task.desired == "run":
                    failed.append((task, status))
            elif task.desired == "stop":
                if task.node not in snap.nodes:
                    self.forgets.append(task.id)
            elif task.spec_hash == current_hash and task.node not in self.draining:
                new.append(task)
            else:
                old.append(task)

        entry = snap.queue.get(app_id)
        if entry is not None and entry.failures > 0 and entry.spec_hash not in ("", current_hash):
            # A new version gets a fresh start, as in Marathon (its failures keep showing).
            entry = entry.model_copy(update={"failures": 0, "delay_until": 0.0})
        if failed:
            entry = count_failures(app, entry or QueueEntry(app_id=app_id), failed, now)
            entry = entry.model_copy(update={"spec_hash": current_hash})
        elif entry is not None and entry.failures > 0:
            at = reset_at(app, entry, [(t, snap.statuses.get(t.id)) for t in new])
            if at is not None and at <= now:
                entry = entry.model_copy(update={"failures": 0, "delay_until": 0.0})
            elif at is not None:
                self.wakes.append(at)
        self.entries[app_id] = entry

        keep, count = self._reconcile(app, new, old)
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
            per_node[task.node] = per_node.get(task.node, 0) + 1
        req = Request(
            cpus=app.cpus,
            mem=app.mem,
            ports=tuple(p.requested_host_port for p in app.ports()),
            constraints=tuple(Constraint.parse(c) for c in app.constraints),
            driver=driver_for(app),
        )
        placed = self.cluster.place(req, per_node, count)
        for node, ports in placed:
            self.launches.append(Launch(
                app_id=app_id, version=app.version or "", spec_hash=current_hash,
                node=node.name, host=node.address, host_ports=ports,
                cpus=app.cpus, mem=app.mem,
            ))
        if len(placed) < count:
            self.unplaced.append((app_id, req, per_node))

    def _reconcile(self, app: AppSpec, new: list[Task], old: list[Task]) -> tuple[list[Task], int]:
        """Stop what must go; return the tasks that stay active and how many to launch."""
        statuses = self.snap.statuses
        n = app.instances
        if len(new) > n:
            order = kill_order(app, new, statuses)
            for task in order[: len(new) - n]:
                self.stops.append(Stop(task.id, "scaled down"))
            new = order[len(new) - n:]
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
            1 for t in self.by_app.get(app_id, [])
            if t.desired == "run" and t.spec_hash == current
            and is_healthy(app, self.snap.statuses.get(t.id))
        )
        return healthy >= app.instances

    def _ended(self, task: Task) -> bool:
        status = self.snap.statuses.get(task.id)
        return status is not None and status.state in TERMINAL

    def _replace_reason(self, app: AppSpec, task: Task) -> str:
        if task.node in self.draining:
            return f"node {task.node} is draining"
        return f"replaced by version {app.version}" if app.version else "replaced by a new spec"


def _blank(entry: QueueEntry) -> bool:
    """Nothing to say about the app: no failures, delay, remembered failure or reason."""
    return not (entry.failures or entry.delay_until or entry.last_failure
                or entry.last_failure_at is not None or entry.waiting)
