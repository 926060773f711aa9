"""Long waits — blocking queries, event streams — end when the server is stopping.

`kade down` must not wait for a client's ten-minute blocking query or an open event stream:
the composition root sets the app's `closing` event, every long wait races it, and the
request is answered with what is current (a blocking query) or ended (a stream) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import FastAPI, Request

from kade.store.base import Event, Store
from kade.store.mirror import watch_until

T = TypeVar("T")


def closing_event(app: FastAPI) -> asyncio.Event:
    event: asyncio.Event | None = getattr(app.state, "closing", None)
    if event is None:
        event = app.state.closing = asyncio.Event()
    return event


async def until_closing(request: Request, waiting: Awaitable[T]) -> T | None:
    """`waiting`'s result, or None if the server began to stop first."""
    closing = closing_event(request.app)
    task: asyncio.Future[T] = asyncio.ensure_future(waiting)
    stop: asyncio.Future[Any] = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if not task.cancelled() else None


def watch_until_closing(store: Store, since: int, closing: asyncio.Event,
                        keepalive: float, prefix: str = ""
                        ) -> AsyncIterator[list[Event] | None]:
    """Every change under `prefix` after `since`, in batches, for an event stream: None when
    `keepalive` seconds passed without one (time for the stream's keepalive); the iteration
    ends when the server begins to stop. Raises Compacted when `since` is older than the
    history."""
    return watch_until(store, prefix, since, closing, keepalive)


async def until_closing_each(items: AsyncIterator[T], closing: asyncio.Event,
                             keepalive: float) -> AsyncIterator[T | None]:
    """Each item of `items` as it comes, for a stream: None when `keepalive` seconds passed
    without one (time for the stream's keepalive). Ends when `items` does or the server
    begins to stop; `items` is closed either way (a store's follower lets go at once)."""
    stop: asyncio.Future[Any] = asyncio.ensure_future(closing.wait())
    pending: asyncio.Future[T] | None = None
    try:
        while not closing.is_set():
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({pending, stop}, timeout=keepalive,
                                         return_when=asyncio.FIRST_COMPLETED)
            if pending in done:
                got, pending = pending, None
                try:
                    item = got.result()
                except StopAsyncIteration:
                    return
                yield item
            elif stop in done:
                return
            else:
                yield None
    finally:
        stop.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
