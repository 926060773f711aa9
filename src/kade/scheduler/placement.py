"""Placement: which node a new task goes to, and which host ports it gets.

`Cluster` is the free capacity of every registered node during one plan. It starts from the
tasks that hold resources (every task without a terminal status, including those being
stopped: a stopping container keeps its ports and memory until it is gone) and is charged for
each launch the plan makes, so later launches in the same plan see earlier ones. Within a
plan resources only shrink, which lets an app stop trying once a node has refused it.

A node fits when it runs the app's kind of task (its driver: Docker for an image, exec for a
command app), its free cpus and mem cover the app's, the app's fixed host ports are free
there (neither held by a task nor by another process, as its agent reports), and the app's
constraints hold. Among fitting nodes the one with the fewest tasks of the app wins, then the
one with the most free cpus, then the first by name. Assigned ports (requested host port 0)
are the lowest free ones of the port range on that node, skipping those other processes hold.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kade.model import DRIVER_APPS, Node, Task
from kade.scheduler.constraints import Constraint, check, value_counts

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
