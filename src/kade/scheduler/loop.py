"""The scheduler's runner: keeps a view of the store through a mirror and applies plans to it.

Apps, tasks, statuses, nodes and queue entries come from one store mirror (a snapshot at one
revision, then one ordered watch), so its view is always the store at some revision. After
each batch of changes, and at the plan's `wake_at`, it plans; a non-empty plan is written as
one transaction guarded on every key it touches: new tasks must not exist, stopped and
forgotten tasks and queue entries must still be at the revision the plan saw. A guard that
fails drops the whole plan; the loop waits until its view includes the write that beat it and
plans again from there, so nothing is merged blindly. One transaction also keeps a failed
task's removal and the failure count it adds together.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from types import MappingProxyType

from kade import model
from kade.model import Alive, Node, NodeControl, QueueEntry, Task, TaskStatus
from kade.scheduler.index import TaskIndex
from kade.scheduler.plan import Plan, Snapshot, plan
from kade.spec import AppSpec, spec_hash
from kade.store.base import Compare, Delete, Op, Put, Store
from kade.store.mirror import Batch, Mirror, records

log = logging.getLogger("kade.scheduler")

_MAX_RETRY_PAUSE = 1.0
TXN_UNITS = 60  # guards per transaction: with their operations, within etcd's default 128
APPS = records(model.APPS, AppSpec, name=model.app_id_of_key)
TASKS = records(model.TASKS, Task)
STATUSES = records(model.STATUS, TaskStatus)
NODES = records(model.NODES, Node)
QUEUE = records(model.QUEUE, QueueEntry, name=lambda key: model.app_id_of_key(key, model.QUEUE))
CONTROLS = records(model.NODECTL, NodeControl)
ALIVE = records(model.ALIVE, Alive)


class Scheduler:
    def __init__(
        self,
        store: Store,
        *,
        port_range: tuple[int, int] = (31000, 32000),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.port_range = port_range
        self.clock = clock
        self.mirror = Mirror(store, [APPS, TASKS, STATUSES, NODES, QUEUE, CONTROLS, ALIVE],
                             name="scheduler")
        self._apps = self.mirror.table(APPS)
        self._tasks = self.mirror.table(TASKS)
        self._statuses = self.mirror.table(STATUSES)
        self._nodes = self.mirror.table(NODES)
        self._queue = self.mirror.table(QUEUE)
        self._controls = self.mirror.table(CONTROLS)
        self._alive = self.mirror.table(ALIVE)
        # Registered nodes whose agent is not alive, and since when this scheduler knows it
        # (a new leader counts from when it loaded: a node's grace starts afresh then).
        self._down: dict[str, float] = {}
        self._hashes: dict[str, str] = {}
        # Tasks and statuses indexed, and what changed since the last plan: plans between
        # two reloads look at only that (plan(..., changed=...)).
        self._index = TaskIndex()
        self._changed = asyncio.Event()  # something changed since the last plan
        self._ready = asyncio.Event()
        self.mirror.on_batch(self._on_batch)
        self.last_plan: Plan | None = None  # the last non-empty plan written (for debugging)

    # -- for the API ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A copy of the current view: queue reasons, tasks, statuses."""
        return Snapshot(
            apps=dict(self._apps.items), tasks=dict(self._tasks.items),
            statuses=dict(self._statuses.items), nodes=dict(self._nodes.items),
            queue=dict(self._queue.items), hashes=dict(self._hashes),
            unreadable=frozenset(self._apps.bad), controls=dict(self._controls.items),
            down=dict(self._down),
        )

    async def wait_ready(self) -> None:
        """Until the state is loaded and a first plan has been written (or was empty)."""
        await self._ready.wait()

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Schedule until cancelled or the store closes."""
        async with asyncio.TaskGroup() as tg:
            scheduling = tg.create_task(self._schedule())
            await self.mirror.run()
            scheduling.cancel()

    def _on_batch(self, batch: Batch) -> None:
        for change in batch.of(APPS):  # an unreadable app's tasks are left alone
            if change.new is None:
                self._hashes.pop(change.name, None)
            else:
                self._hashes[change.name] = spec_hash(change.new)
        self._follow_liveness(batch)
        if batch.reload:  # a new snapshot: index it afresh; its first plan is a full one
            self._index = TaskIndex()
            for task in self._tasks.items.values():
                self._index.put_task(task)
            for status in self._statuses.items.values():
                self._index.put_status(status)
        else:
            self._index_changes(batch)
        self._changed.set()

    def _follow_liveness(self, batch: Batch) -> None:
        now = self.clock()
        for name, node in self._nodes.items.items():
            if node.alive(self._alive.items):
                if self._down.pop(name, None) is not None:
                    log.info("node %s is back", name)
                    self._index.node_changed(name)
            elif name not in self._down:
                self._down[name] = now
                log.warning("node %s is down: its agent's lease ended", name)
                self._index.node_changed(name)
        for name in [n for n in self._down if n not in self._nodes.items]:
            del self._down[name]  # no longer registered

    def _index_changes(self, batch: Batch) -> None:
        index = self._index
        for change in batch.changes:
            if change.prefix == TASKS.prefix:
                if change.new is None:
                    index.delete_task(change.name)
                else:
                    index.put_task(change.new)
            elif change.prefix == STATUSES.prefix:
                if change.new is None:
                    index.delete_status(change.name)
                else:
                    index.put_status(change.new)
            elif change.prefix in (APPS.prefix, QUEUE.prefix):
                index.app_changed(change.name)
            else:  # nodes, and what operators asked of them
                index.node_changed(change.name)

    async def _schedule(self) -> None:
        if not await self.mirror.ready():
            return
        conflicts = 0
        while True:
            self._changed.clear()
            now = self.clock()
            p = plan(self._view(), now, self.port_range, self._index.take_changes())
            if p.empty:
                self._ready.set()
                await self._sleep(p.wake_at)
                continue
            ok, revision = await self._write(p, now)
            await self.mirror.wait_for(revision)
            if ok:
                conflicts = 0
                self._ready.set()
            else:
                # Lost a race: plan again, in full, from a view that includes the winner's
                # write. The pause only matters if something keeps winning.
                self._index.everything_changed()
                conflicts += 1
                if conflicts > 1:
                    await asyncio.sleep(min(0.05 * 2 ** (conflicts - 2), _MAX_RETRY_PAUSE))

    async def _sleep(self, wake_at: float | None) -> None:
        timeout = None if wake_at is None else max(0.0, wake_at - self.clock()) + 0.001
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass

    # -- writing a plan ------------------------------------------------------------------------

    async def _write(self, p: Plan, now: float) -> tuple[bool, int]:
        """Write `p` as guarded transactions; (succeeded, revision to catch up to).

        What must change together is one unit: a launch, a stop, a retag, or an app's
        forgotten tasks with its queue entry (a failure is counted with its task's removal).
        Units go out in transactions of at most TXN_UNITS guards, so a plan of thousands of
        tasks fits a store's bound on operations per transaction (etcd's --max-txn-ops); a
        transaction that loses a race ends the write, and the loop plans again from a view
        with whatever was written."""
        # Built before the first await: the guards are the revisions the plan was made from.
        units: list[tuple[list[Compare], list[Op]]] = []
        created: list[Task] = []
        for launch in p.launches:
            task = Task(
                id=f"{model.task_id_prefix(launch.app_id)}.{uuid.uuid4().hex[:12]}",
                app_id=launch.app_id, version=launch.version, spec_hash=launch.spec_hash,
                node=launch.node, host=launch.host, host_ports=list(launch.host_ports),
                cpus=launch.cpus, mem=launch.mem, created_at=now,
            )
            created.append(task)
            key = model.task_key(task.id)
            units.append(([Compare(key, 0)], [Put(key, task.dump())]))
        for stop in p.stops:
            key = model.task_key(stop.task_id)
            stopped = self._tasks.items[stop.task_id].model_copy(
                update={"desired": "stop", "stop_reason": stop.reason}
            )
            units.append(([Compare(key, self._tasks.mod(stop.task_id))],
                          [Put(key, stopped.dump())]))
        for retag in p.retags:
            key = model.task_key(retag.task_id)
            moved = self._tasks.items[retag.task_id].model_copy(
                update={"version": retag.version})
            units.append(([Compare(key, self._tasks.mod(retag.task_id))],
                          [Put(key, moved.dump())]))
        per_app: dict[str, tuple[list[Compare], list[Op]]] = {}
        for task_id in p.forgets:
            known = self._tasks.items.get(task_id)
            compares, ops = per_app.setdefault(known.app_id if known else task_id, ([], []))
            key = model.task_key(task_id)
            compares.append(Compare(key, self._tasks.mod(task_id)))
            ops += [Delete(key), Delete(model.status_key(task_id))]
        for app_id, entry in p.queue.items():
            compares, ops = per_app.setdefault(app_id, ([], []))
            key = model.queue_key(app_id)
            compares.append(Compare(key, self._queue.mod(app_id)))
            ops.append(Delete(key) if entry is None else Put(key, entry.dump()))
        units += per_app.values()
        revision = 0
        for compares, ops in _batches(units):
            result = await self.store.txn(compares, ops)
            revision = result.revision
            if not result.succeeded:
                log.info("plan lost a race with another writer; planning again")
                return False, revision
        self.last_plan = p
        for task in created:
            log.info("launch %s (%s %s) on %s", task.id, task.app_id, task.version, task.node)
        for stop in p.stops:
            log.info("stop %s: %s", stop.task_id, stop.reason)
        for task_id in p.forgets:
            log.debug("forget %s", task_id)
        for app_id, entry in p.queue.items():
            if entry is not None and entry.waiting:
                log.info("%s waits: %s", app_id, entry.waiting)
        return True, revision

    # -- the view -------------------------------------------------------------------------------

    def _view(self) -> Snapshot:
        """The live state, uncopied: only for planning, which does not await."""
        return Snapshot(
            apps=MappingProxyType(self._apps.items), tasks=MappingProxyType(self._tasks.items),
            statuses=MappingProxyType(self._statuses.items),
            nodes=MappingProxyType(self._nodes.items), queue=MappingProxyType(self._queue.items),
            hashes=MappingProxyType(self._hashes), unreadable=frozenset(self._apps.bad),
            controls=MappingProxyType(self._controls.items), index=self._index,
            down=MappingProxyType(self._down),
        )


def _batches(units: list[tuple[list[Compare], list[Op]]]
             ) -> list[tuple[list[Compare], list[Op]]]:
    """Units packed in order into transactions of at most TXN_UNITS guards (a larger unit
    goes alone)."""
    out: list[tuple[list[Compare], list[Op]]] = []
    compares: list[Compare] = []
    ops: list[Op] = []
    for unit_compares, unit_ops in units:
        if compares and len(compares) + len(unit_compares) > TXN_UNITS:
            out.append((compares, ops))
            compares, ops = [], []
        compares.extend(unit_compares)
        ops.extend(unit_ops)
    if compares or ops:
        out.append((compares, ops))
    return out
