"""The scheduler's runner: keeps a snapshot from one store watch and applies plans to it.

It reads apps, tasks, statuses, nodes and queue entries once, then follows every change
through a single watch of the whole store (filtered here), so its view is always a prefix of
the store's history. After each batch of changes, and at the plan's `wake_at`, it plans; a
non-empty plan is written as one transaction guarded on every key it touches: new tasks must
not exist, stopped and forgotten tasks and queue entries must still be at the revision the
plan saw. A guard that fails drops the whole plan; the loop waits until its view includes the
write that beat it and plans again from there, so nothing is merged blindly. One transaction
also keeps a failed task's removal and the failure count it adds together.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from types import MappingProxyType

from pydantic import BaseModel

from kade import model
from kade.model import Node, NodeControl, QueueEntry, Task, TaskStatus
from kade.scheduler.index import TaskIndex
from kade.scheduler.plan import Plan, Snapshot, plan
from kade.spec import AppSpec, spec_hash
from kade.store.base import Compacted, Compare, Delete, Entry, Event, Op, Put, Store, StoreError

log = logging.getLogger("kade.scheduler")

PREFIXES = (model.APPS, model.TASKS, model.STATUS, model.NODES, model.NODECTL, model.QUEUE)
_GUARDED = (model.TASKS, model.QUEUE)  # the keys this loop writes: their revisions are kept
_MAX_RETRY_PAUSE = 1.0
_RECORDS: dict[str, type[BaseModel]] = {
    model.APPS: AppSpec, model.TASKS: Task, model.STATUS: TaskStatus, model.NODES: Node,
    model.QUEUE: QueueEntry, model.NODECTL: NodeControl,
}


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
        self._apps: dict[str, AppSpec] = {}
        self._hashes: dict[str, str] = {}
        self._unreadable: set[str] = set()
        self._tasks: dict[str, Task] = {}
        self._statuses: dict[str, TaskStatus] = {}
        self._nodes: dict[str, Node] = {}
        self._controls: dict[str, NodeControl] = {}
        self._queue: dict[str, QueueEntry] = {}
        # Tasks and statuses indexed, and what changed since the last plan: plans between
        # two reloads look at only that (plan(..., changed=...)).
        self._index = TaskIndex()
        self._mod: dict[str, int] = {}  # mod_revision of each key under _GUARDED
        self._read_at: dict[str, int] = {}  # revision each prefix was read at
        self._revision = 0  # the store revision the view includes
        self._changed = asyncio.Event()  # something changed since the last plan
        self._progress = asyncio.Event()  # the view moved forward
        self._ready = asyncio.Event()
        self.last_plan: Plan | None = None  # the last non-empty plan written (for debugging)

    # -- for the API ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A copy of the current view: queue reasons, tasks, statuses."""
        return Snapshot(
            apps=dict(self._apps), tasks=dict(self._tasks), statuses=dict(self._statuses),
            nodes=dict(self._nodes), queue=dict(self._queue), hashes=dict(self._hashes),
            unreadable=frozenset(self._unreadable), controls=dict(self._controls),
        )

    async def wait_ready(self) -> None:
        """Until the state is loaded and a first plan has been written (or was empty)."""
        await self._ready.wait()

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Schedule until cancelled. Reloads everything if the watch falls behind history."""
        while True:
            target = await self._load()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._follow(min(self._read_at.values())))
                    tg.create_task(self._schedule(target))
            except* Compacted as group:
                log.warning("scheduler fell behind the store's history (%s); reloading",
                            group.exceptions[0])

    async def _load(self) -> int:
        for table in (self._apps, self._hashes, self._tasks, self._statuses, self._nodes,
                      self._controls, self._queue, self._mod, self._read_at):
            table.clear()
        self._index = TaskIndex()  # its first plan is a full one
        self._unreadable.clear()
        for prefix in PREFIXES:
            entries, revision = await self.store.range(prefix)
            self._read_at[prefix] = revision
            for entry in entries:
                self._put(entry)
        self._revision = min(self._read_at.values())
        return max(self._read_at.values())

    async def _follow(self, after: int) -> None:
        async for batch in self.store.watch("", after):
            for event in batch:
                self._apply_event(event)
            self._revision = max(self._revision, batch[-1].revision)
            self._changed.set()
            self._progress.set()
        raise StoreError("the store's watch ended")

    async def _schedule(self, target: int) -> None:
        await self._until(target)
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
            await self._until(revision)
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

    async def _until(self, revision: int) -> None:
        while self._revision < revision:
            self._progress.clear()
            await self._progress.wait()

    async def _sleep(self, wake_at: float | None) -> None:
        timeout = None if wake_at is None else max(0.0, wake_at - self.clock()) + 0.001
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass

    # -- writing a plan ------------------------------------------------------------------------

    async def _write(self, p: Plan, now: float) -> tuple[bool, int]:
        """Write `p` as one guarded transaction; (succeeded, revision to catch up to)."""
        # Built before the first await: the guards are the revisions the plan was made from.
        compares: list[Compare] = []
        ops: list[Op] = []
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
            compares.append(Compare(key, 0))
            ops.append(Put(key, task.dump()))
        for stop in p.stops:
            key = model.task_key(stop.task_id)
            stopped = self._tasks[stop.task_id].model_copy(
                update={"desired": "stop", "stop_reason": stop.reason}
            )
            compares.append(Compare(key, self._mod.get(key, 0)))
            ops.append(Put(key, stopped.dump()))
        for retag in p.retags:
            key = model.task_key(retag.task_id)
            moved = self._tasks[retag.task_id].model_copy(update={"version": retag.version})
            compares.append(Compare(key, self._mod.get(key, 0)))
            ops.append(Put(key, moved.dump()))
        for task_id in p.forgets:
            key = model.task_key(task_id)
            compares.append(Compare(key, self._mod.get(key, 0)))
            ops += [Delete(key), Delete(model.status_key(task_id))]
        for app_id, entry in p.queue.items():
            key = model.queue_key(app_id)
            compares.append(Compare(key, self._mod.get(key, 0)))
            ops.append(Delete(key) if entry is None else Put(key, entry.dump()))
        result = await self.store.txn(compares, ops)
        if not result.succeeded:
            log.info("plan lost a race with another writer; planning again")
            return False, result.revision
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
        return True, result.revision

    # -- the view -------------------------------------------------------------------------------

    def _view(self) -> Snapshot:
        """The live state, uncopied: only for planning, which does not await."""
        return Snapshot(
            apps=MappingProxyType(self._apps), tasks=MappingProxyType(self._tasks),
            statuses=MappingProxyType(self._statuses), nodes=MappingProxyType(self._nodes),
            queue=MappingProxyType(self._queue), hashes=MappingProxyType(self._hashes),
            unreadable=frozenset(self._unreadable),
            controls=MappingProxyType(self._controls), index=self._index,
        )

    def _apply_event(self, event: Event) -> None:
        prefix = _prefix_of(event.key)
        if prefix is None or event.revision <= self._read_at.get(prefix, 0):
            return  # not ours, or already in what was read
        if event.kind == "delete" or event.entry is None:
            self._delete(prefix, event.key)
        else:
            self._put(event.entry)

    def _put(self, entry: Entry) -> None:
        key = entry.key
        prefix = _prefix_of(key)
        if prefix is None:
            return
        if prefix in _GUARDED:
            self._mod[key] = entry.mod_revision
        name = key[len(prefix):]
        record = model.decode(entry, _RECORDS[prefix])
        if isinstance(record, model.Unreadable):
            # Quarantined (logged once by decode). Its revision stays known: a plan may still
            # overwrite or delete the bad record (a task nobody can read is forgotten with its
            # status; a queue entry rewritten). An unreadable app's tasks are left alone.
            self._drop(prefix, key)
            if prefix == model.APPS:
                self._unreadable.add(model.app_id_of_key(key))
            return
        if isinstance(record, AppSpec):
            app_id = model.app_id_of_key(key)
            self._apps[app_id] = record
            self._hashes[app_id] = spec_hash(record)
            self._unreadable.discard(app_id)
            self._index.app_changed(app_id)
        elif isinstance(record, Task):
            self._tasks[name] = record
            self._index.put_task(record)
        elif isinstance(record, TaskStatus):
            self._statuses[name] = record
            self._index.put_status(record)
        elif isinstance(record, Node):
            self._nodes[name] = record
            self._index.node_changed(name)
        elif isinstance(record, NodeControl):
            self._controls[name] = record
            self._index.node_changed(name)
        elif isinstance(record, QueueEntry):
            app_id = model.app_id_of_key(key, model.QUEUE)
            self._queue[app_id] = record
            self._index.app_changed(app_id)

    def _delete(self, prefix: str, key: str) -> None:
        self._mod.pop(key, None)
        self._drop(prefix, key)

    def _drop(self, prefix: str, key: str) -> None:
        name = key[len(prefix):]
        if prefix == model.APPS:
            app_id = model.app_id_of_key(key)
            self._apps.pop(app_id, None)
            self._hashes.pop(app_id, None)
            self._unreadable.discard(app_id)
            self._index.app_changed(app_id)
        elif prefix == model.TASKS:
            self._tasks.pop(name, None)
            self._index.delete_task(name)
        elif prefix == model.STATUS:
            self._statuses.pop(name, None)
            self._index.delete_status(name)
        elif prefix == model.NODES:
            self._nodes.pop(name, None)
            self._index.node_changed(name)
        elif prefix == model.NODECTL:
            self._controls.pop(name, None)
            self._index.node_changed(name)
        else:
            app_id = model.app_id_of_key(key, model.QUEUE)
            self._queue.pop(app_id, None)
            self._index.app_changed(app_id)


def _prefix_of(key: str) -> str | None:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return prefix
    return None
