"""A kade with nothing to route still gives routers a table they can wait on: its revision
is never 0 (index 0 asks without waiting, and an idle router would ask and acknowledge
without pause)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from kade.api.routing import Routing
from kade.catalog.model import Catalog
from kade.store.sqlite import SqliteStore


class NoApps:
    def apps(self) -> dict[str, Any]:
        return {}


async def test_an_empty_table_has_a_revision_a_router_waits_on(store: SqliteStore) -> None:
    routing = Routing(store, cast(Any, NoApps()))
    routing.rebuild(Catalog(index=0))
    revision = routing.table["revision"]
    assert revision >= 1 and routing.table["routers"] == []
    waiting = asyncio.ensure_future(routing.wait(revision, 30))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # nothing new: the router's blocking query waits
    routing.rebuild(Catalog(index=0))  # the same empty table again: no wake-up
    await asyncio.sleep(0.1)
    assert not waiting.done()
    waiting.cancel()
