"""`/v1/quarantine`: every stored record that cannot be read, with the reason.

Quarantine is a computed status, not a stored fact: whether a record loads depends on the
record and on the code reading it, so it is decided by decoding (`kade.model.decode`, the
policy every reader follows) whenever it is asked, and is never out of date: a kade that
learns to read an older format shows it gone, a replaced or deleted record leaves at once.
No component has to own (and keep in step) a second copy of the fact.

The event stream reports a record that cannot be read as it is written (`quarantine_event`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from kade import model
from kade.api.routing import RouterState
from kade.api.views import quarantine_json
from kade.model import (
    Deployment,
    Node,
    NodeControl,
    QueueEntry,
    Task,
    TaskStatus,
    Unreadable,
    decode,
)
from kade.spec import AppSpec
from kade.store.base import Entry, Event, Store

# Store prefix → the record kept under it. `kv/` and `stable/` hold plain values.
RECORDS: dict[str, type[BaseModel]] = {
    model.APPS: AppSpec,
    model.VERSIONS: AppSpec,
    model.TASKS: Task,
    model.STATUS: TaskStatus,
    model.NODES: Node,
    model.NODECTL: NodeControl,
    model.QUEUE: QueueEntry,
    model.DEPLOYMENTS: Deployment,
    model.ROUTERS: RouterState,
}


def check(entry: Entry) -> Unreadable | None:
    """Why `entry` cannot be read as the record its prefix holds; None if it can (or it is
    not a typed record)."""
    cls = next((c for p, c in RECORDS.items() if entry.key.startswith(p)), None)
    if cls is None:
        return None
    record = decode(entry, cls)
    return record if isinstance(record, Unreadable) else None


async def quarantined(store: Store) -> list[Unreadable]:
    """Every unreadable record in the store, by key."""
    found: list[Unreadable] = []
    for prefix in RECORDS:
        entries, _ = await store.range(prefix)
        found += (bad for bad in map(check, entries) if bad is not None)
    return sorted(found, key=lambda b: b.key)


def quarantine_event(event: Event) -> tuple[str, dict[str, Any]] | None:
    """The `quarantine` event for a write of a record that cannot be read, else None."""
    if event.kind != "put" or event.entry is None:
        return None
    bad = check(event.entry)
    if bad is None:
        return None
    return "quarantine", {"type": "quarantine", **quarantine_json(bad)}


def quarantine_router(store: Store) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/quarantine")
    async def list_quarantined() -> dict[str, Any]:
        """Records kade skips because they cannot be read. Each stays until it is replaced
        by a valid record (`PUT /v1/apps/<id>` for an app) or deleted (`DELETE`)."""
        return {"quarantined": [quarantine_json(b) for b in await quarantined(store)]}

    return r
