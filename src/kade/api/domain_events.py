"""`/v1/domain-events`: search, show (with the events around one), follow, and post.

    GET  /v1/domain-events?q=…&since=1d&until=…&limit=100&interval=1h
    GET  /v1/domain-events/follow?q=…&tail=10      server-sent events, resumable by id
    GET  /v1/domain-events/stats
    GET  /v1/domain-events/{id}?around=5
    POST /v1/domain-events                          one event or a list (kade.admission)

Reading needs a `read` token, posting a `deploy` token; a token scoped to apps may post only
events whose `source` is one of its apps.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import fastapi
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from kade import addresses
from kade.addresses import parse_duration
from kade.admission.domain_events import EventsRejected, admit_events
from kade.api.closing import closing_event
from kade.api.security import principal_of
from kade.auth import can_deploy_app
from kade.domain_events.query import Query, parse_query
from kade.domain_events.record import DomainEvent
from kade.domain_events.store import MAX_LIMIT, EventStore, Window

KEEPALIVE_SECONDS = 15.0
MAX_AROUND = 100


def parse_time(text: str | None, now: float, what: str) -> float | None:
    """`10m`/`1d` (that long ago), seconds since the epoch, or an ISO 8601 time; None: none."""
    if text is None or text == "":
        return None
    return addresses.parse_time(text, now, what)


MAX_ID = 2**63 - 1  # event ids are SQLite rowids


def _bad(message: str) -> HTTPException:
    return HTTPException(400, message)


def _window(q: str, since: str | None, until: str | None, now: float) -> Window:
    try:
        return Window(parse_query(q), parse_time(since, now, "since"),
                      parse_time(until, now, "until"))
    except ValueError as e:
        raise _bad(str(e)) from None


def domain_events_router(events: EventStore, clock: Callable[[], float] = time.time,
                         broker: Callable[[], dict[str, Any]] | None = None) -> APIRouter:
    """`broker`: the consumer's state for /stats (None: kade consumes from no broker)."""
    r = APIRouter()

    @r.get("/v1/domain-events")
    async def search(q: str = "", since: str | None = None, until: str | None = None,
                     limit: int = 100, interval: str | None = None) -> dict[str, Any]:
        """Events matching `q` in the time range, newest first; with `interval`, a count
        of them per interval too."""
        if not 0 <= limit <= MAX_LIMIT:
            raise _bad(f"limit: must be between 0 and {MAX_LIMIT}")
        now = clock()
        window = _window(q, since, until, now)
        found = await events.search(window, limit)
        out: dict[str, Any] = {"events": [e.json() for e in found]}
        if interval is not None:
            try:
                step = parse_duration(interval, "interval")
                bounded = Window(window.query, window.since if window.since is not None
                                 else now - 24 * 3600, window.until or now)
                buckets = await events.histogram(bounded, step)
            except ValueError as e:
                raise _bad(str(e)) from None
            out["histogram"] = [{"start": start, "count": n} for start, n in buckets]
        return out

    @r.get("/v1/domain-events/stats")
    async def stats() -> dict[str, Any]:
        return {**await events.stats(), "broker": broker() if broker else None}

    @r.get("/v1/domain-events/follow")
    async def follow(request: Request, q: str = "", tail: int = 0,
                     after: Annotated[int | None, fastapi.Query(ge=0, le=MAX_ID)] = None
                     ) -> StreamingResponse:
        """New events as they are stored, after the last `tail` ones; a client that
        reconnects with `Last-Event-ID` resumes after the last event it saw."""
        if not 0 <= tail <= 1000:
            raise _bad("tail: must be between 0 and 1000")
        try:
            query = parse_query(q)
        except ValueError as e:
            raise _bad(str(e)) from None
        last = request.headers.get("last-event-id")
        if after is None and last and last.isdigit() and int(last) <= MAX_ID:
            after, tail = int(last), 0
        start = events.last_id if after is None else after
        backlog = list(reversed(await events.search(Window(query), tail))) if tail else []
        return StreamingResponse(
            _follow(events, query, start, backlog, closing_event(request.app)),
            media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @r.get("/v1/domain-events/{event_id}")
    async def show(event_id: Annotated[int, Path(ge=1, le=MAX_ID)],
                   around: int = 0) -> dict[str, Any]:
        if not 0 <= around <= MAX_AROUND:
            raise _bad(f"around: must be between 0 and {MAX_AROUND}")
        event = await events.get(event_id)
        if event is None:
            raise HTTPException(404, f"domain event {event_id}: not found (it may have "
                                     "expired: see /v1/domain-events/stats for retention)")
        out: dict[str, Any] = {"event": event.json()}
        if around:
            before, after = await events.around(event, around)
            out.update(before=[e.json() for e in before], after=[e.json() for e in after])
        return out

    @r.post("/v1/domain-events")
    async def post(request: Request) -> JSONResponse:
        try:
            admitted = admit_events(await request.body(), clock())
        except EventsRejected as e:
            return JSONResponse({"message": f"invalid domain events: {e}",
                                 "details": e.problems}, status_code=400)
        principal = principal_of(request)
        if principal is not None and principal.apps is not None:
            outside = [e.source or "(none)" for e in admitted
                       if not can_deploy_app(principal, e.source or "/")]
            if outside:
                raise HTTPException(403, f"{principal.describe()} may post events only from "
                                         f"its apps: source {outside[0]} is not one of them")
        result = await events.append(admitted)
        return JSONResponse({"stored": result.stored, "duplicates": result.duplicates},
                            status_code=201 if result.stored else 200)

    return r


async def _follow(events: EventStore, query: Query, after: int, backlog: list[DomainEvent],
                  closing: asyncio.Event) -> AsyncIterator[bytes]:
    yield b": kade domain events\n\n"
    for event in backlog:
        yield _sse(event)
    while not closing.is_set():
        mark = events.last_id  # before the read: what it sees is at least up to here
        found = await events.newer(after, query)
        for event in found:
            yield _sse(event)
        if found:
            after = found[-1].id
            continue
        if mark > after:  # stored, but none matching: look on from there
            after = mark
            continue
        wait = asyncio.ensure_future(events.wait_newer(after, KEEPALIVE_SECONDS))
        stop = asyncio.ensure_future(closing.wait())
        done, _ = await asyncio.wait({wait, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        wait.cancel()
        if stop in done:
            return
        if not wait.result():
            yield b": keepalive\n\n"


def _sse(event: DomainEvent) -> bytes:
    data = json.dumps(event.json(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: domain_event\ndata: {data}\n\n".encode()
