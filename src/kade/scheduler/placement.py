"""Placement: which node a new task goes to, and which host ports it gets.

`Cluster` is the free capacity of every registered node during one plan. It starts from what
the tasks that hold resources take (every task without a terminal status, including those
being stopped: a stopping container keeps its ports and memory until it is gone; summed by
`TaskIndex`) and is charged for each launch the plan makes, so later launches in the same plan
see earlier ones. Within a plan resources only shrink, which lets an app stop trying once a
node has refused it.

A node fits when it runs the app's kind of task (its driver: Docker for an image, exec for a
command app), its free cpus and mem cover the app's, the app's fixed host ports are free
there (neither held by a task nor by another process, as its agent reports), and the app's
constraints hold. Among fitting nodes the one with the fewest tasks of the app wins, then the
one with the most free cpus, then the first by name. Assigned ports (requested host port 0)
are the lowest free ones of the port range on that node, skipping those other processes hold.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kade.model import DRIVER_APPS, Node
from kade.scheduler.constraints import Constraint, check, value_counts
from kade.scheduler.index import SCALE, Usage

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


class _Temporary(str):
    """A refusal that may lift later in the same plan: a counting constraint (GROUP_BY) that
    other placements of the app can satisfy. Every other refusal lasts the whole plan."""


COUNTING = frozenset({"UNIQUE", "GROUP_BY", "MAX_PER"})


def _free(total: float, used: int) -> float:
    return total - used / SCALE if used else total


def _cpu_key(free_cpus: float) -> float:
    # Rounded so that float noise from summing in another order cannot change the choice.
    return -round(free_cpus, 6)


class _NodeState:
    __slots__ = ("cpu_key", "free_cpus", "free_mem", "key", "next_port", "node", "ports", "rank",
                 "ranks")

    def __init__(
        self, node: Node, usage: Usage | None, first_port: int, rank: int, ranks: int
    ) -> None:
        self.node = node
        self.rank = rank  # of its name among the `ranks` nodes
        self.ranks = ranks
        self.key = 0  # its place in the cluster's order
        self.free_cpus = _free(node.cpus, usage.cpus if usage else 0)
        self.free_mem = _free(node.mem, usage.mem if usage else 0)
        self.ports: set[int] = set(node.ports_in_use)
        if usage is not None:
            self.ports.update(usage.ports)
        self.next_port = first_port  # every port below it in the range is taken
        self.cpu_key = 0.0
        self.settle()

    def settle(self) -> None:
        """After a change: advance the port cursor, recompute the ordering keys."""
        ports, port = self.ports, self.next_port
        while port in ports:
            port += 1
        self.next_port = port
        self.cpu_key = cpu_key = _cpu_key(self.free_cpus)
        self.key = _order_key(cpu_key, self.rank, self.ranks)


def _order_key(cpu_key: float, rank: int, ranks: int) -> int:
    return round(cpu_key * 1_000_000) * ranks + rank


def _num(x: float) -> str:
    return str(round(x, 3))


def _mem(x: float) -> str:
    return f"{round(x, 1):g}"


_Choice = tuple[_NodeState, tuple[int, ...]]
_NO_COUNTS: Mapping[str, Mapping[str, int]] = {}
_NO_COUNT: Mapping[str, int] = {}


class Cluster:
    """Free capacity of the registered nodes, charged as the plan places tasks.

    Open nodes (registered, taking new tasks) are kept in one sorted list of integers, most
    free cpus first, then by name (the cpus rounded to millionths, times the number of nodes,
    plus the rank of the name), which every placement of the plan updates. A node's state
    (free resources, ports) is made on first use: a plan that places one task looks at a few
    nodes, not all of them.
    """

    def __init__(
        self,
        nodes: Mapping[str, Node],
        usage: Mapping[str, Usage],
        port_range: tuple[int, int],
        closed: Mapping[str, str] | None = None,
    ) -> None:
        self.nodes = nodes
        self.port_range = port_range
        self._usage = usage
        # node -> why it takes no new task ("draining", "not eligible")
        self.closed: dict[str, str] = {n: "draining" for n, node in nodes.items() if node.draining}
        for name, why in (closed or {}).items():
            if name in nodes:
                self.closed[name] = why
        self._states: dict[str, _NodeState] = {}
        self._matches: dict[tuple[tuple[Constraint, ...], str], frozenset[str]] = {}
        self._names = sorted(nodes)
        self._ranks = {name: i for i, name in enumerate(self._names)}
        self._order = sorted(
            _order_key(_cpu_key(_free(node.cpus, u.cpus if (u := usage.get(name)) else 0)),
                       self._ranks[name], len(self._names))
            for name, node in nodes.items() if name not in self.closed
        )

    def usable(self, name: str) -> bool:
        """New tasks may go to `name`: registered and open."""
        return name in self.nodes and name not in self.closed

    def place(
        self, req: Request, per_node: dict[str, int], count: int
    ) -> list[tuple[Node, tuple[int, ...]]]:
        """Place up to `count` tasks; charges the nodes and counts them into `per_node`.

        `per_node` holds the app's active tasks per node (spread and constraints use it).
        Returns (node, host ports) per placed task; fewer than `count` means no node fits.

        Each task goes to the fitting node with the fewest tasks of the app, then the most free
        cpus, then the first name. Nodes without a task of the app come first: the first of
        them in the order that fits wins. Without constraints a node that does not fit never
        will in this plan (resources only shrink), so one walk of the order serves all the
        app's tasks; once it is done the app's own nodes are taken from a heap keyed by its
        task count (as many tasks as nodes: the next round goes to the same nodes).
        """
        if count <= 0:
            return []
        if req.constraints:
            return self._place_constrained(req, per_node, count)
        out: list[tuple[Node, tuple[int, ...]]] = []
        order, names, n = self._order, self._names, len(self._names)
        i = 0
        while len(out) < count and i < len(order):
            name = names[order[i] % n]
            if per_node.get(name):
                i += 1
                continue
            state = self._states.get(name) or self._state(name)
            ports = self._fit(state, req, _NO_COUNTS)
            if isinstance(ports, str):
                i += 1
                continue
            self._charge(state, req, ports)  # moves it down: position i holds the next node
            per_node[name] = 1
            out.append((state.node, ports))
        if len(out) < count:
            heap = [(k, self._state(name).cpu_key, name) for name, k in per_node.items()
                    if k > 0 and self.usable(name)]
            heapq.heapify(heap)
            while heap and len(out) < count:
                _, _, name = heapq.heappop(heap)
                state = self._states[name]
                ports = self._fit(state, req, _NO_COUNTS)
                if isinstance(ports, str):
                    continue  # resources only shrink during a plan: it will not fit later either
                self._charge(state, req, ports)
                per_node[name] += 1
                out.append((state.node, ports))
                heapq.heappush(heap, (per_node[name], state.cpu_key, name))
        return out

    def _place_constrained(
        self, req: Request, per_node: dict[str, int], count: int
    ) -> list[tuple[Node, tuple[int, ...]]]:
        """As `place`, but a refusal by a counting constraint (GROUP_BY) may lift once other
        tasks of the app are placed: every task walks the order from its start again. The
        walk is of the nodes that match the app's other constraints and driver only (the same
        for every app that has them, found once per plan), kept in order beside the cluster's."""
        out: list[tuple[Node, tuple[int, ...]]] = []
        rejected: set[str] = set()  # refused for good: resources, ports, fixed constraints
        matching = self._matching(req)
        names, n = self._names, len(self._names)
        order = self._order  # all open nodes match: the cluster's own order (kept by _charge)
        if len(matching) < len(order):
            order = [key for key in order if names[key % n] in matching]
        while len(out) < count:
            counts = self._counts(req, per_node)
            choice = self._first_empty(req, per_node, counts, rejected, order)
            if choice is None:
                choice = self._best_used(req, per_node, counts, rejected)
                if choice is None:
                    break
            state, ports = choice
            before = state.key
            self._charge(state, req, ports)
            if order is not self._order and state.key != before:
                del order[bisect.bisect_left(order, before)]
                bisect.insort(order, state.key)
            name = state.node.name
            per_node[name] = per_node.get(name, 0) + 1
            out.append((state.node, ports))
        return out

    def _first_empty(
        self, req: Request, per_node: Mapping[str, int],
        counts: Mapping[str, Mapping[str, int]], rejected: set[str], order: list[int],
    ) -> _Choice | None:
        """The first node in `order` without a task of the app that fits."""
        names, n = self._names, len(self._names)
        for key in order:
            name = names[key % n]
            if per_node.get(name) or name in rejected:
                continue
            state = self._state(name)
            ports = self._fit(state, req, counts)
            if isinstance(ports, str):
                if not isinstance(ports, _Temporary):
                    rejected.add(name)
                continue
            return state, ports
        return None

    def _matching(self, req: Request) -> frozenset[str]:
        """Open nodes that run the app's kind of task and meet its constraints that do not
        count tasks (CLUSTER, IS, LIKE, UNLIKE): what no placement can change."""
        fixed = tuple(c for c in req.constraints if c.op not in COUNTING)
        key = (fixed, req.driver)
        found = self._matches.get(key)
        if found is None:
            found = frozenset(
                name for name in self._names if name not in self.closed
                and (not req.driver or self.nodes[name].runs(req.driver))
                and all(check(c, self.nodes[name], _NO_COUNT) is None for c in fixed)
            )
            self._matches[key] = found
        return found

    def _best_used(
        self, req: Request, per_node: Mapping[str, int],
        counts: Mapping[str, Mapping[str, int]], rejected: set[str],
    ) -> _Choice | None:
        best: tuple[tuple[int, float, str], _NodeState, tuple[int, ...]] | None = None
        for name, n in per_node.items():
            if n <= 0 or name in rejected or not self.usable(name):
                continue
            state = self._state(name)
            ports = self._fit(state, req, counts)
            if isinstance(ports, str):
                if not isinstance(ports, _Temporary):
                    rejected.add(name)
                continue
            key = (n, state.cpu_key, name)
            if best is None or key < best[0]:
                best = (key, state, ports)
        return None if best is None else (best[1], best[2])

    def place_each(
        self, req: Request, per_node: dict[str, int], names: Iterable[str]
    ) -> tuple[list[tuple[Node, tuple[int, ...]]], str]:
        """One task on each of `names` (a system app's), where it fits; and why not on the
        others, in plain words ("" if it fit everywhere)."""
        out: list[tuple[Node, tuple[int, ...]]] = []
        reasons: list[str] = []
        for name in names:
            if not self.usable(name):
                reasons.append(f"{name}: {self.closed.get(name, 'not registered')}")
                continue
            state = self._state(name)
            ports = self._fit(state, req, self._counts(req, per_node))
            if isinstance(ports, str):
                reasons.append(f"{name}: {ports}")
                continue
            self._charge(state, req, ports)
            per_node[name] = per_node.get(name, 0) + 1
            out.append((state.node, ports))
        if len(reasons) > MAX_REASONS:
            reasons = [*reasons[:MAX_REASONS], f"and {len(reasons) - MAX_REASONS} more"]
        return out, "; ".join(reasons)

    def explain(self, req: Request, per_node: Mapping[str, int]) -> str:
        """Why no node takes another task of the app, node by node, in plain words."""
        if not self.nodes:
            return "no nodes registered"
        none_runs = unrunnable(req.driver, self.nodes.values())
        if none_runs is not None:
            return none_runs
        counts = self._counts(req, per_node)
        reasons: list[str] = []
        for name in self._names:
            if name in self.closed:
                reasons.append(f"{name}: {self.closed[name]}")
                continue
            why = self._fit(self._state(name), req, counts)
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
                return _Temporary(why) if c.op in COUNTING else why
        return self._ports(state, req.ports)

    def range_of(self, node: Node) -> tuple[int, int]:
        """The host ports tasks on `node` get: its own range (`kade agent --ports`), else the
        scheduler's."""
        own = node.port_range
        return (own[0], own[1]) if len(own) == 2 else self.port_range

    def _ports(self, state: _NodeState, wanted: tuple[int, ...]) -> tuple[int, ...] | str:
        lo, hi = self.range_of(state.node)
        if len(wanted) == 1 and not wanted[0]:  # the common case: one assigned port
            port = state.next_port
            if port > hi:
                return f"no free host port in {lo}-{hi}"
            return (port,)
        fixed = {p for p in wanted if p}
        for port in sorted(fixed):
            if port in state.node.ports_in_use:
                return f"host port {port} is held by another process"
            if port in state.ports:
                return f"host port {port} in use"
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

    def _state(self, name: str) -> _NodeState:
        state = self._states.get(name)
        if state is None:
            node = self.nodes[name]
            state = _NodeState(node, self._usage.get(name), self.range_of(node)[0],
                               self._ranks[name], len(self._names))
            self._states[name] = state
        return state

    def _charge(self, state: _NodeState, req: Request, ports: tuple[int, ...]) -> None:
        before = state.key
        state.free_cpus -= req.cpus
        state.free_mem -= req.mem
        state.ports.update(ports)
        state.settle()
        after = state.key
        if after != before:
            order = self._order
            del order[bisect.bisect_left(order, before)]
            bisect.insort(order, after)


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
