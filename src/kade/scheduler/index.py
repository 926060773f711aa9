"""Derived views of the placed tasks, kept up to date one change at a time.

Every plan needs the tasks of each app, what each node has left, and the statuses whose task
is gone. Computed from all tasks, they cost time in proportion to the cluster on every plan
(100,000 tasks: tens of milliseconds), however small the change. A `TaskIndex` kept by its
owner beside the snapshot (the scheduler loop, the simulator) costs time in proportion to the
change instead. It also remembers which apps and nodes changed since the last plan, so that
the owner can ask for a plan of only those: `plan(snap, now, changed=index.take_changes())`.

Resources are summed in integer billionths: added and removed in any order, over any number of
changes, the sums come back exactly, where float sums would drift.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter

from kade.model import TERMINAL, Task, TaskStatus

SCALE = 1_000_000_000  # resource units per cpu or MiB


def units(amount: float) -> int:
    return round(amount * SCALE)


@dataclass(frozen=True)
class Changed:
    """What changed since the last plan that was applied: apps whose spec, tasks, statuses or
    queue entry changed, and nodes whose record or operator control changed."""

    apps: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()


class Usage:
    """What the tasks that hold resources on one node take from it."""

    __slots__ = ("cpus", "mem", "ports")

    def __init__(self) -> None:
        self.cpus = 0  # units
        self.mem = 0
        self.ports: dict[int, int] = {}  # host port -> tasks holding it


class TaskIndex:
    """Tasks by app and by node, resources held per node, statuses without a task.

    A task holds resources on its node until its status is terminal (a stopping container
    keeps its ports and memory until it is gone); a task without a status holds them too."""

    def __init__(self) -> None:
        self._by_app: dict[str, dict[str, Task]] = {}
        self._on_node: dict[str, dict[str, int]] = {}  # node -> app id -> its tasks there
        self._tasks: dict[str, Task] = {}
        self._states: dict[str, str] = {}  # task id -> reported state
        self._holding: set[str] = set()
        self._holding_on: dict[str, dict[str, int]] = {}  # node -> app id -> tasks holding
        self._usage: dict[str, Usage] = {}
        self._unsettled = ""  # what build() left for later: "all", "apps" or nothing
        self.orphans: set[str] = set()  # status ids whose task is gone
        self._changed_apps: set[str] = set()
        self._changed_nodes: set[str] = set()
        self._full = True  # nothing planned from this index yet: the next plan is a full one

    @classmethod
    def build(cls, tasks: Iterable[Task], statuses: Iterable[TaskStatus]) -> TaskIndex:
        """The index of these tasks and statuses (the same as putting them one by one).

        Only the tasks by app and the orphans are made at once: a full plan needs them. The
        rest (resources per node, apps per node) is made when first asked for: a plan with
        nothing to place never needs it."""
        index = cls()
        states = index._states
        for status in statuses:
            states[status.task_id] = status.state
        by_app, known = index._by_app, index._tasks
        for task in tasks:
            known[task.id] = task
            by_app.setdefault(task.app_id, {})[task.id] = task
        index.orphans = {task_id for task_id in states if task_id not in known}
        index._unsettled = "all"
        return index

    def _settle(self, usage_only: bool = False) -> None:
        """Make what `build` left for later: resources per node, then apps per node (a full
        plan that places tasks needs the first only)."""
        if self._unsettled == "":
            return
        if usage_only and self._unsettled == "apps":
            return
        states = self._states
        if self._unsettled == "all":
            usage = self._usage
            amounts: dict[float, int] = {}  # few distinct amounts: each converted once
            for task in self._tasks.values():
                if states.get(task.id) in TERMINAL:
                    continue
                # what _hold(task, 1) does to usage, inlined: it runs for every task
                used = usage.get(task.node)
                if used is None:
                    used = usage[task.node] = Usage()
                cpus, mem = task.cpus, task.mem
                used.cpus += amounts[cpus] if cpus in amounts else amounts.setdefault(cpus,
                                                                                     units(cpus))
                used.mem += amounts[mem] if mem in amounts else amounts.setdefault(mem, units(mem))
                for port in task.host_ports:
                    used.ports[port] = used.ports.get(port, 0) + 1
            self._unsettled = "apps"
        if usage_only:
            return
        on_node, holding, holding_on = self._on_node, self._holding, self._holding_on
        for task in self._tasks.values():
            task_id, app_id, node = task.id, task.app_id, task.node
            apps = on_node.setdefault(node, {})
            apps[app_id] = apps.get(app_id, 0) + 1
            if states.get(task_id) not in TERMINAL:
                apps = holding_on.setdefault(node, {})
                apps[app_id] = apps.get(app_id, 0) + 1
                holding.add(task_id)
        self._unsettled = ""

    # -- reading -----------------------------------------------------------------------------

    def app_ids(self) -> Iterable[str]:
        return self._by_app.keys()

    def tasks_of(self, app_id: str) -> list[Task]:
        """The app's tasks, by id."""
        tasks = self._by_app.get(app_id)
        return sorted(tasks.values(), key=attrgetter("id")) if tasks else []

    @property
    def usage(self) -> dict[str, Usage]:
        """What the tasks that hold resources take, by node."""
        self._settle(usage_only=True)
        return self._usage

    def apps_on(self, node: str) -> Iterable[str]:
        """Apps with a task placed on the node, ended or not."""
        self._settle()
        return self._on_node.get(node, {}).keys()

    def apps_holding(self, node: str) -> Iterable[str]:
        """Apps with a task on the node that has not ended."""
        self._settle()
        return self._holding_on.get(node, {}).keys()

    # -- changes -------------------------------------------------------------------------------

    def put_task(self, task: Task) -> None:
        self._settle()
        old = self._tasks.get(task.id)
        if old is not None:
            self._remove(old)
        self._tasks[task.id] = task
        self._by_app.setdefault(task.app_id, {})[task.id] = task
        apps = self._on_node.setdefault(task.node, {})
        apps[task.app_id] = apps.get(task.app_id, 0) + 1
        self.orphans.discard(task.id)
        if self._states.get(task.id) not in TERMINAL:
            self._hold(task, 1)
        self._changed_apps.add(task.app_id)

    def delete_task(self, task_id: str) -> None:
        self._settle()
        old = self._tasks.pop(task_id, None)
        if old is None:
            return
        self._remove(old)
        if task_id in self._states:
            self.orphans.add(task_id)
        self._changed_apps.add(old.app_id)

    def put_status(self, status: TaskStatus) -> None:
        self._settle()
        self._states[status.task_id] = status.state
        task = self._tasks.get(status.task_id)
        if task is None:
            self.orphans.add(status.task_id)
            self._changed_apps.add(status.app_id)
            return
        held = task.id in self._holding
        if status.state in TERMINAL and held:
            self._hold(task, -1)
        elif status.state not in TERMINAL and not held:
            self._hold(task, 1)
        self._changed_apps.add(task.app_id)

    def delete_status(self, task_id: str) -> None:
        self._settle()
        if self._states.pop(task_id, None) is None:
            return
        self.orphans.discard(task_id)
        task = self._tasks.get(task_id)
        if task is not None:
            if task_id not in self._holding:
                self._hold(task, 1)
            self._changed_apps.add(task.app_id)

    def app_changed(self, app_id: str) -> None:
        """The app's spec or queue entry changed."""
        self._changed_apps.add(app_id)

    def node_changed(self, name: str) -> None:
        """The node's record or its operator control changed."""
        self._changed_nodes.add(name)

    def everything_changed(self) -> None:
        """After a reload: the next plan must look at everything."""
        self._full = True

    def take_changes(self) -> Changed | None:
        """What changed since the last call; None when a full plan is needed."""
        changed = None if self._full else Changed(frozenset(self._changed_apps),
                                                  frozenset(self._changed_nodes))
        self._full = False
        self._changed_apps.clear()
        self._changed_nodes.clear()
        return changed

    # -- inside ----------------------------------------------------------------------------------

    def _remove(self, task: Task) -> None:
        if task.id in self._holding:
            self._hold(task, -1)
        tasks = self._by_app.get(task.app_id)
        if tasks is not None:
            tasks.pop(task.id, None)
            if not tasks:
                del self._by_app[task.app_id]
        apps = self._on_node.get(task.node)
        if apps is not None:
            left = apps.get(task.app_id, 0) - 1
            if left > 0:
                apps[task.app_id] = left
            else:
                apps.pop(task.app_id, None)
                if not apps:
                    del self._on_node[task.node]

    def _hold(self, task: Task, sign: int) -> None:
        usage = self._usage.get(task.node)
        if usage is None:
            usage = self._usage[task.node] = Usage()
        usage.cpus += sign * units(task.cpus)
        usage.mem += sign * units(task.mem)
        ports = usage.ports
        for port in task.host_ports:
            n = ports.get(port, 0) + sign
            if n > 0:
                ports[port] = n
            else:
                ports.pop(port, None)
        apps = self._holding_on.setdefault(task.node, {})
        held = apps.get(task.app_id, 0) + sign
        if held > 0:
            apps[task.app_id] = held
        else:
            apps.pop(task.app_id, None)
            if not apps:
                del self._holding_on[task.node]
        if sign > 0:
            self._holding.add(task.id)
        else:
            self._holding.discard(task.id)
            if not usage.cpus and not usage.mem and not ports:
                del self._usage[task.node]

