"""CatalogView: the catalog kept current from the store, and blocking waits on it.

It follows `apps/`, `tasks/`, `status/` and `nodes/` through a store mirror (a snapshot at one
revision, then one ordered watch: no polling), rebuilds the parts of the catalog each batch
touched, and remembers for every service the store revision at which *its* content last
changed: Consul's per-service index. A blocking query on a service therefore wakes only
when that service changed, not when anything else did.

Waiters park on one shared future per service (and one for the whole catalog), resolved from
memory after a rebuild: thousands of blocked clients cost one future each, no store reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from kade import model
from kade.catalog.index import CatalogIndex, Delta
from kade.catalog.model import Catalog
from kade.spec.model import AppSpec
from kade.store.base import Store
from kade.store.mirror import Batch, Change, Mirror, records

log = logging.getLogger(__name__)

# Nodes first: a snapshot then feeds the index each node before any task (a node's change
# looks at the tasks placed on it).
SOURCES = (records(model.NODES, model.Node), records(model.ALIVE, model.Alive),
           records(model.APPS, AppSpec), records(model.TASKS, model.Task),
           records(model.STATUS, model.TaskStatus))

ChangeCallback = Callable[[Catalog, frozenset[str]], None]

_ALL = "\x00all"  # the waiter key of the whole catalog (no service is named like this)


class CatalogView:
    def __init__(self, store: Store, *, datacenter: str = "dc1") -> None:
        self.store = store
        self.datacenter = datacenter
        self.mirror = Mirror(store, SOURCES, name="catalog")
        self.mirror.on_batch(self._on_batch)
        self._records = CatalogIndex(datacenter)
        self._catalog = Catalog(datacenter=datacenter)
        self._index = 0
        self._service_index: dict[str, int] = {}
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._callbacks: list[ChangeCallback] = []

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
        await self.mirror.ready()

    @property
    def seen(self) -> int:
        """The last store revision the view has applied."""
        return self.mirror.revision

    async def sync(self, revision: int | None = None, timeout: float = 10.0) -> bool:
        """Wait until the view has applied `revision` (the store's current one by default):
        read-your-writes for a caller that just wrote. False if it did not within `timeout`."""
        if revision is None:
            revision = await self.store.revision()
        return await self.mirror.wait_for(revision, timeout)

    # -- following the store ----------------------------------------------------------

    async def run(self) -> None:
        """Load a snapshot, then follow the store until the store closes (run it under a
        TaskGroup)."""
        await self.mirror.run()

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

    def _on_batch(self, batch: Batch) -> None:
        apps_changed = False
        for change in batch.changes:
            apps_changed |= change.prefix == model.APPS
            if not self._keeps_serving(change):
                self._records.set(change.key, change.new)
        # An app edit that no instance shows (routes, templates) still moves the catalog's
        # index and reaches callbacks: the router reads apps() too. So does a reload.
        self._publish(batch.revision, self._records.commit(),
                      force=apps_changed or batch.reload)

    def _keeps_serving(self, change: Change) -> bool:
        """An app rewritten with a record that cannot be read is served as it was, since its
        tasks run on untouched (the scheduler leaves them alone), until the app is replaced or
        deleted. The problem is shown meanwhile (`decode` logged it once)."""
        return (change.prefix == model.APPS and change.bad is not None
                and model.app_id_of_key(change.key) in self._records.apps)

    def _publish(self, revision: int, delta: Delta, *, force: bool = False) -> None:
        old = self._catalog
        changed = delta.changed
        if not changed and old.nodes == delta.nodes and not force:
            return  # nothing a reader sees changed: indexes stay, nobody is woken
        self._index = max(revision, self._index)
        for name in changed:
            self._service_index[name] = self._index
        bad = tuple(str(why) for _, why in sorted(self.mirror.quarantined().items()))
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

    def _wake(self, changed: frozenset[str]) -> None:
        for key in (*changed, _ALL):
            fut = self._waiters.pop(key, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
