"""`/v1/events`: every state change as server-sent events.

Event ids are store revisions: they only increase, and a client that reconnects with
`Last-Event-ID` resumes right after the last event it saw (while the history is kept).
A write of a record that cannot be read is followed by a `quarantine` event with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from kade import model
from kade.api.closing import closing_event, watch_until_closing
from kade.api.quarantine import quarantine_event
from kade.api.security import principal_of
from kade.auth import Principal, redact_env
from kade.store.base import Compacted, Event, Store

# Store prefix → event type, for the facts users care about.
_TYPES = {
    model.APPS: "app",
    model.TASKS: "task",
    model.STATUS: "task_status",
    model.NODES: "node",
    model.ALIVE: "alive",  # a node's agent came or went (kade.agent.liveness)
    model.NODECTL: "node_control",
    model.QUEUE: "queue",
    model.DEPLOYMENTS: "deployment",
    model.ROUTERS: "router",
    model.KV: "kv",
    model.ALERTS: "alert",
    model.ALERT_RULES: "alert_rule",
}
# Every type the stream sends (`<type>_updated`, `<type>_deleted`; `quarantine` alone).
EVENT_TYPES: tuple[str, ...] = (*_TYPES.values(), "quarantine")
KEEPALIVE_SECONDS = 15.0


def event_json(event: Event, principal: Principal | None = None
               ) -> tuple[str, dict[str, Any]] | None:
    prefix = next((p for p in _TYPES if event.key.startswith(p)), None)
    if prefix is None:
        return None
    kind = _TYPES[prefix]
    name = event.key[len(prefix):]
    body: dict[str, Any] = {"type": kind, "op": event.kind, "key": name, "revision": event.revision}
    if event.entry is not None and kind != "kv":
        with contextlib.suppress(ValueError):
            body["value"] = json.loads(event.entry.value)
        if kind == "app" and isinstance(body.get("value"), dict):
            body["value"] = redact_env(body["value"], principal)
    return f"{kind}_{'deleted' if event.kind == 'delete' else 'updated'}", body


def events_router(store: Store) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/events")
    async def events(request: Request, since: int | None = None) -> StreamingResponse:
        last = request.headers.get("last-event-id")
        if since is None:
            since = int(last) if last and last.isdigit() else await store.revision()
        return StreamingResponse(_stream(store, since, principal_of(request),
                                         closing_event(request.app)),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return r


async def _stream(store: Store, since: int, principal: Principal | None,
                  closing: asyncio.Event) -> AsyncIterator[bytes]:
    yield b": kade event stream\n\n"
    try:
        async for batch in watch_until_closing(store, since, closing, KEEPALIVE_SECONDS):
            if batch is None:
                yield b": keepalive\n\n"
                continue
            for event in batch:
                for out in (event_json(event, principal), quarantine_event(event)):
                    if out is None:
                        continue
                    name, fields = out
                    data = json.dumps(fields, separators=(",", ":"))
                    yield f"id: {event.revision}\nevent: {name}\ndata: {data}\n\n".encode()
    except Compacted as e:
        reset = json.dumps({"type": "reset", "message": str(e)})
        yield f"event: reset\ndata: {reset}\n\n".encode()
