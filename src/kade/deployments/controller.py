"""The deployer: follows running deployments, records their outcome, rolls back failures.

It keeps apps, tasks, statuses and deployments in memory through a store mirror (one
snapshot at one revision, then one watch), judges each running deployment with `assess` after
every batch (and at the nearest deadline), and writes only what changed, guarded by the
deployment's mod_revision. A deployment that misses its progress deadline fails, and the app
goes back to its last version that was all healthy (`stable/<app>`), as a new version with a
deployment of kind "rollback". After writing, it judges again only once its view includes
what it wrote, so that nothing is written twice.

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

from kade import model
from kade.deployments import intent
from kade.deployments.assess import assess
from kade.model import Deployment, Task, TaskStatus, Unreadable
from kade.spec import AppSpec
from kade.store.base import Store, StoreError
from kade.store.mirror import Mirror, records

log = logging.getLogger("kade.deployments")

KEEP_FINISHED = 20  # finished deployments kept per app
APPS = records(model.APPS, AppSpec, name=model.app_id_of_key)
TASKS = records(model.TASKS, Task)
STATUSES = records(model.STATUS, TaskStatus)
DEPLOYMENTS = records(model.DEPLOYMENTS, Deployment)


class Deployer:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.mirror = Mirror(store, [APPS, TASKS, STATUSES, DEPLOYMENTS], name="deployer")
        self.apps = self.mirror.table(APPS).items
        self.tasks = self.mirror.table(TASKS).items
        self.statuses = self.mirror.table(STATUSES).items
        self._deployments = self.mirror.table(DEPLOYMENTS)
        self._changed = asyncio.Event()
        self.mirror.on_batch(lambda _batch: self._changed.set())

    @property
    def quarantined(self) -> dict[str, Unreadable]:
        """Records that cannot be read, by key."""
        return self.mirror.quarantined()

    async def run(self) -> None:
        """Judge deployments until cancelled (or the store closes)."""
        async with asyncio.TaskGroup() as tg:
            judging = tg.create_task(self._follow())
            await self.mirror.run()
            judging.cancel()

    def _unreadable_apps(self) -> set[str]:
        return set(self.mirror.table(APPS).bad)

    async def _follow(self) -> None:
        if not await self.mirror.ready():
            return
        while True:
            self._changed.clear()
            wrote = await self._judge()
            wrote = await self._restart_stale() or wrote
            if wrote:  # judge again from a view that includes what was written
                await self.mirror.wait_for(await self.store.revision())
                continue
            wake = self._next_deadline()
            timeout = None if wake is None else max(wake - self.clock(), 0) + 0.05
            with suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()

    async def _restart_stale(self) -> bool:
        """Tasks whose `restart` templates rendered differently are replaced by a rolling
        restart of their app (zero downtime, under its upgradeStrategy), once per change.
        Whether it wrote anything."""
        busy = {d.app_id for d in self._deployments.items.values() if d.status == "running"}
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
        return bool(stale)

    def _next_deadline(self) -> float | None:
        held = self._unreadable_apps()
        deadlines = [d.deadline for d in self._deployments.items.values()
                     if d.status == "running" and d.app_id not in held]
        return min(deadlines) if deadlines else None

    async def _judge(self) -> bool:
        """Judge every running deployment; whether anything was written."""
        now = self.clock()
        held = self._unreadable_apps()
        wrote = False
        for dep in list(self._deployments.items.values()):
            if dep.status != "running" or dep.app_id in held:
                continue
            mod_revision = self._deployments.mod(dep.id)
            judged = assess(dep, self.apps.get(dep.app_id), self.tasks.values(),
                            self.statuses, now)
            if judged == dep:
                continue
            try:
                await self.store.put(model.deployment_key(dep.id), judged.dump(),
                                     expect=mod_revision)
            except StoreError:
                continue  # changed meanwhile (superseded): the watch brings the new state
            wrote = True
            if judged.status != "running":
                log.info("deployment %s of %s %s %s", dep.id, dep.app_id, judged.status,
                         judged.message)
            if judged.status == "succeeded" and judged.version is not None:
                await self.store.put(model.stable_key(dep.app_id), judged.version.encode())
            elif judged.status == "failed":
                await self._roll_back(judged, now)
            if judged.status != "running":
                await self._prune(judged)
        return wrote

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

    async def _prune(self, ended: Deployment) -> None:
        """Keep the app's last KEEP_FINISHED finished deployments, `ended` (just written)
        among them."""
        known = {**self._deployments.items, ended.id: ended}
        finished = sorted(
            (d for d in known.values() if d.app_id == ended.app_id and d.status != "running"),
            key=lambda d: d.started_at,
        )
        for dep in finished[:-KEEP_FINISHED]:
            await self.store.delete(model.deployment_key(dep.id))
