"""CatalogView: the catalog kept current from the store, and blocking waits on it.

It follows `apps/`, `tasks/`, `status/` and `nodes/` with a store watch (no polling),
rebuilds the catalog after each batch of events, and remembers for every service the store
revision at which *its* content last changed: Consul's per-service index. A blocking query
on a service therefore wakes only when that service changed, not when anything else did.

Waiters park on one shared future per service (and one for the whole catalog), resolved from
memory after a rebuild: thousands of blocked clients cost one future each, no store reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from kade import model
from kade.catalog.index import CatalogIndex, Delta
from kade.catalog.model import Catalog
from kade.spec.model import AppSpec
from kade.store.base import Compacted, Entry, Event, Store

log = logging.getLogger(__name__)

PREFIXES = (model.APPS, model.TASKS, model.STATUS, model.NODES)

ChangeCallback = Callable[[Catalog, frozenset[str]], None]

_RECORDS: dict[str, type[BaseModel]] = {
    model.APPS: AppSpec, model.TASKS: model.Task, model.STATUS: model.TaskStatus,
    model.NODES: model.Node,
}

_ALL = "\x00all"


def _prefix_of(key: str) -> str | None:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return prefix
    return None  # the waiter key of the whole catalog (no service is named like this)


class CatalogView:
    def __init__(self, store: Store, *, datacenter: str = "dc1") -> None:
        self.store = store
        self.datacenter = datacenter
        self._records = CatalogIndex(datacenter)
        self._bad: dict[str, model.Unreadable] = {}  # quarantined records, by key
        self._catalog = Catalog(datacenter=datacenter)
        self._index = 0
        self._service_index: dict[str, int] = {}
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._callbacks: list[ChangeCallback] = []
        self._ready = asyncio.Event()
        self._seen = 0  # the last store revision applied, whether it changed the catalog or not
        self._seen_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- reading ----------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """The current snapshot (replaced whole, never changed in place)."""
        return self._catalog

    @property
    def index(self) -> int:
        """The revision at which anything in the catalog last changed (>= 1 once loaded)."""
        return max(self._index, 1)

    def apps(self) -> dict[str, AppSpec]:
        """The apps as last read from the store, by id (the router table builds on them)."""
        return dict(self._records.apps)

    def service_index(self, service: str | None) -> int:
        """The revision at which `service` last changed; for a service never seen, the
        catalog's index (so that a blocking query on it waits for it to appear)."""
        if service is None:
            return self.index
        return max(self._service_index.get(service, self._index), 1)

    async def wait(self, service: str | None, index: int, timeout: float) -> int:
        """Return once `service` (the whole catalog for None) changed past `index`, or at
        `timeout`; returns its index then."""
        current = self.service_index(service)
        if current > index or timeout <= 0:
            return current
        key = _ALL if service is None else service
        fut = self._waiters.get(key)
        if fut is None or fut.done():
            fut = self._waiters[key] = asyncio.get_running_loop().create_future()
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(fut)  # shielded: one waiter leaving must not cancel it
        return self.service_index(service)

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call `callback(catalog, changed_services)` after every change of the catalog, and
        after any app definition changed (then `changed_services` may be empty; `apps()` has
        the new one). Returns an unsubscribe function. Callbacks run in the view's task: keep
        them short."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    async def ready(self) -> None:
        """Wait until the first snapshot is loaded."""
        await self._ready.wait()

    @property
    def seen(self) -> int:
        """The last store revision the view has applied."""
        return self._seen

    async def sync(self, revision: int | None = None, timeout: float = 10.0) -> bool:
        """Wait until the view has applied `revision` (the store's current one by default):
        read-your-writes for a caller that just wrote. False if it did not within `timeout`."""
        if revision is None:
            revision = await self.store.revision()
        if self._seen >= revision:
            return True
        fut = asyncio.get_running_loop().create_future()
        entry = (revision, fut)
        self._seen_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            with suppress(ValueError):
                self._seen_waiters.remove(entry)

    # -- following the store ----------------------------------------------------------

    async def run(self) -> None:
        """Load a snapshot, then follow the store forever (run it under a TaskGroup)."""
        while True:
            after = await self._load()
            try:
                await self._follow(after)
                return  # the store was closed
            except Compacted as e:
                log.warning("catalog watch fell behind (%s); reloading", e)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[CatalogView]:
        """Follow the store for the duration of the block, loaded on entry."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(self.run(), name="catalog-view")
        ready = loop.create_task(self.ready(), name="catalog-view-ready")
        try:
            await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # raises what stopped it
            yield self
        finally:
            for t in (ready, task):
                t.cancel()
                with suppress(asyncio.CancelledError):
                    await t

    async def _load(self) -> dict[str, int]:
        after: dict[str, int] = {}
        records = CatalogIndex(self.datacenter)
        revision = 0
        self._bad.clear()
        for prefix in PREFIXES:
            entries, rev = await self.store.range(prefix)
            after[prefix] = rev
            revision = max(revision, rev)
            for e in entries:
                records.set(e.key, self._parse(prefix, e))
        self._records = records
        delta = records.commit()
        old = self._catalog.services
        changed = frozenset(  # against what was served before a reload
            name for name in old.keys() | delta.services.keys()
            if old.get(name) != delta.services.get(name)
        )
        self._publish(revision, replace(delta, changed=changed), force=True)
        self._ready.set()
        self._mark_seen(revision)
        return after

    async def _follow(self, after: dict[str, int]) -> None:
        """One ordered watch of the whole keyspace, kept to our prefixes: a transaction that
        writes a task and its status arrives as one batch, and `seen` is exact. (Four
        prefix watches would deliver one revision range in any order.)"""
        async for batch in self.store.watch("", min(after.values())):
            revision, relevant, apps_changed = 0, False, False
            for event in batch:
                revision = max(revision, event.revision)
                prefix = _prefix_of(event.key)
                if prefix is None or event.revision <= after[prefix]:
                    continue  # not ours, or already in the snapshot
                self._apply(prefix, event)
                relevant = True
                apps_changed |= prefix == model.APPS
            if relevant:
                # An app edit that no instance shows (routes, templates) still moves the
                # catalog's index and reaches callbacks: the router reads apps() too.
                self._publish(revision, self._records.commit(), force=apps_changed)
            self._mark_seen(revision)

    def _apply(self, prefix: str, event: Event) -> None:
        self._bad.pop(event.key, None)
        value = None
        if event.kind == "put" and event.entry is not None:
            value = self._parse(prefix, event.entry)
            if value is None and prefix == model.APPS and (
                model.app_id_of_key(event.key) in self._records.apps
            ):
                # Rewritten with a record that cannot be read: served as it was, since its
                # tasks run on untouched (the scheduler leaves them alone), until the app is
                # replaced or deleted. The problem is shown meanwhile.
                return
        self._records.set(event.key, value)

    def _parse(self, prefix: str, entry: Entry) -> Any:
        """The record, or None (as if absent) for one that cannot be read: it is kept in
        `_bad` and shown among the catalog's problems (`decode` logs it once)."""
        record = model.decode(entry, _RECORDS[prefix])
        if isinstance(record, model.Unreadable):
            self._bad[entry.key] = record
            return None
        return record

    def _publish(self, revision: int, delta: Delta, *, force: bool = False) -> None:
        old = self._catalog
        changed = delta.changed
        if not changed and old.nodes == delta.nodes and not force:
            return  # nothing a reader sees changed: indexes stay, nobody is woken
        self._index = max(revision, self._index)
        for name in changed:
            self._service_index[name] = self._index
        bad = tuple(str(why) for _, why in sorted(self._bad.items()))
        self._catalog = Catalog(
            datacenter=self.datacenter,
            services=delta.services,
            nodes=delta.nodes,
            index=self.index,
            problems=delta.problems + bad,
        )
        self._wake(changed)
        for callback in list(self._callbacks):
            try:
                callback(self._catalog, changed)
            except Exception:
                log.exception("catalog change callback %r failed", callback)

    def _mark_seen(self, revision: int) -> None:
        self._seen = max(self._seen, revision)
        for wanted, fut in self._seen_waiters:
            if wanted <= self._seen and not fut.done():
                fut.set_result(None)

    def _wake(self, changed: frozenset[str]) -> None:
        for key in (*changed, _ALL):
            fut = self._waiters.pop(key, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
