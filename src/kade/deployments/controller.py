"""The deployer: follows running deployments, records their outcome, rolls back failures.

It keeps apps, tasks, statuses and deployments in memory from one store watch, judges each
running deployment with `assess` after every batch (and at the nearest deadline), and writes
only what changed, guarded by the deployment's mod_revision. A deployment that misses its
progress deadline fails, and the app goes back to its last version that was all healthy
(`stable/<app>`), as a new version with a deployment of kind "rollback".

A record that cannot be read is quarantined (`kade.model.decode`) and left out; a deployment
of an app whose record cannot be read is not judged (it would look destroyed) until the app
is replaced or deleted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress

from pydantic import BaseModel

from kade import model
from kade.deployments import intent
from kade.deployments.assess import assess
from kade.model import Deployment, Task, TaskStatus, Unreadable, decode
from kade.spec import AppSpec
from kade.store.base import Compacted, Entry, Event, Store, StoreError

log = logging.getLogger("kade.deployments")

KEEP_FINISHED = 20  # finished deployments kept per app
_PREFIXES = (model.APPS, model.TASKS, model.STATUS, model.DEPLOYMENTS)
_RECORDS: dict[str, type[BaseModel]] = {
    model.APPS: AppSpec, model.TASKS: Task, model.STATUS: TaskStatus,
    model.DEPLOYMENTS: Deployment,
}


class Deployer:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.apps: dict[str, AppSpec] = {}
        self.tasks: dict[str, Task] = {}
        self.statuses: dict[str, TaskStatus] = {}
        self.deployments: dict[str, tuple[Deployment, int]] = {}  # id -> (record, mod rev)
        self.quarantined: dict[str, Unreadable] = {}  # key -> why it cannot be read

    async def run(self) -> None:
        while True:
            revision = await self._load()
            try:
                await self._follow(revision)
            except Compacted as e:
                log.warning("deployer fell behind (%s); reloading", e)

    async def _load(self) -> int:
        revision = 0
        self.apps.clear()
        self.tasks.clear()
        self.statuses.clear()
        self.deployments.clear()
        self.quarantined.clear()
        for prefix in _PREFIXES:
            entries, rev = await self.store.range(prefix)
            revision = max(revision, rev)
            for entry in entries:
                self._put(entry)
        return revision

    def _put(self, entry: Entry) -> None:
        key = entry.key
        prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
        if prefix is None:
            return
        record = decode(entry, _RECORDS[prefix])
        if isinstance(record, Unreadable):
            self._delete(key)  # what was read before is no longer the truth
            self.quarantined[key] = record
            return
        self.quarantined.pop(key, None)
        if isinstance(record, AppSpec):
            self.apps[model.app_id_of_key(key)] = record
        elif isinstance(record, Task):
            self.tasks[record.id] = record
        elif isinstance(record, TaskStatus):
            self.statuses[record.task_id] = record
        elif isinstance(record, Deployment):
            self.deployments[record.id] = (record, entry.mod_revision)

    def _unreadable_apps(self) -> set[str]:
        return {model.app_id_of_key(k) for k in self.quarantined if k.startswith(model.APPS)}

    def _delete(self, key: str) -> None:
        self.quarantined.pop(key, None)
        if key.startswith(model.APPS):
            self.apps.pop(model.app_id_of_key(key), None)
        elif key.startswith(model.TASKS):
            self.tasks.pop(key[len(model.TASKS):], None)
        elif key.startswith(model.STATUS):
            self.statuses.pop(key[len(model.STATUS):], None)
        elif key.startswith(model.DEPLOYMENTS):
            self.deployments.pop(key[len(model.DEPLOYMENTS):], None)

    def _apply(self, event: Event) -> None:
        if event.kind == "delete":
            self._delete(event.key)
        elif event.entry is not None:
            self._put(event.entry)

    async def _follow(self, revision: int) -> None:
        watch = self.store.watch("", revision).__aiter__()
        # The next batch is awaited across deadline wake-ups: cancelling a watch's __anext__
        # would end the watch.
        pending: asyncio.Task[list[Event]] | None = None
        try:
            while True:
                await self._judge()
                await self._restart_stale()
                wake = self._next_deadline()
                timeout = None if wake is None else max(wake - self.clock(), 0) + 0.05
                if pending is None:
                    pending = asyncio.ensure_future(watch.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=timeout)
                if not done:
                    continue
                batch, pending = pending.result(), None
                for event in batch:
                    if event.key.startswith(_PREFIXES):
                        self._apply(event)
        finally:
            if pending is not None:
                pending.cancel()

    async def _restart_stale(self) -> None:
        """Tasks whose `restart` templates rendered differently are replaced by a rolling
        restart of their app (zero downtime, under its upgradeStrategy), once per change."""
        busy = {d.app_id for d, _ in self.deployments.values() if d.status == "running"}
        stale = {
            t.app_id for t in self.tasks.values()
            if t.desired == "run" and (s := self.statuses.get(t.id)) is not None
            and s.config_stale and t.app_id in self.apps and t.app_id not in busy
        }
        stamp = f"{self.clock():.6f}"
        for app_id in sorted(stale):
            with suppress(intent.NotFound, intent.Conflict):
                await intent.update_app(
                    self.store, app_id,
                    lambda a: a.model_copy(update={"restarted_at": stamp}),
                    self.clock(), kind="restart",
                )
                log.info("configuration of %s changed: rolling restart", app_id)

    def _next_deadline(self) -> float | None:
        held = self._unreadable_apps()
        deadlines = [d.deadline for d, _ in self.deployments.values()
                     if d.status == "running" and d.app_id not in held]
        return min(deadlines) if deadlines else None

    async def _judge(self) -> None:
        now = self.clock()
        held = self._unreadable_apps()
        for dep, mod_revision in list(self.deployments.values()):
            if dep.status != "running" or dep.app_id in held:
                continue
            judged = assess(dep, self.apps.get(dep.app_id), self.tasks.values(),
                            self.statuses, now)
            if judged == dep:
                continue
            try:
                await self.store.put(model.deployment_key(dep.id), judged.dump(),
                                     expect=mod_revision)
            except StoreError:
                continue  # changed meanwhile (superseded): the watch brings the new state
            self.deployments[dep.id] = (judged, mod_revision)  # until the watch updates it
            if judged.status != "running":
                log.info("deployment %s of %s %s %s", dep.id, dep.app_id, judged.status,
                         judged.message)
            if judged.status == "succeeded" and judged.version is not None:
                await self.store.put(model.stable_key(dep.app_id), judged.version.encode())
            elif judged.status == "failed":
                await self._roll_back(judged, now)
            if judged.status != "running":
                await self._prune(dep.app_id)

    async def _roll_back(self, dep: Deployment, now: float) -> None:
        if dep.kind in ("rollback", "destroy"):
            return  # a failed rollback is not rolled back again: it needs a person
        entry = await self.store.get(model.stable_key(dep.app_id))
        if entry is None:
            log.warning("deployment %s failed and %s has no healthy version to go back to",
                        dep.id, dep.app_id)
            return
        version = entry.value.decode(errors="replace")
        if version == dep.version:
            return
        try:
            target = await intent.get_version(self.store, dep.app_id, version)
        except intent.Quarantined as e:
            log.error("deployment %s failed and %s cannot go back: %s", dep.id, dep.app_id, e)
            return
        if target is None:
            return
        with suppress(intent.NotFound, intent.Conflict):
            await intent.update_app(
                self.store, dep.app_id,
                lambda _current: target.model_copy(update={"version": None}),
                now, kind="rollback",
            )
            log.warning("rolled %s back to version %s", dep.app_id, version)

    async def _prune(self, app_id: str) -> None:
        finished = sorted(
            (d for d, _ in self.deployments.values()
             if d.app_id == app_id and d.status != "running"),
            key=lambda d: d.started_at,
        )
        for dep in finished[:-KEEP_FINISHED]:
            await self.store.delete(model.deployment_key(dep.id))
