"""A store that behaves like a networked one: every call yields to the event loop, and other
writers may go on between two reads (`between` runs after each range read).

Readers that load several prefixes are tested on it: on SQLite alone every read happens at
once, and a loader that reads at several revisions looks right."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from kade.store import Compare, Entry, Event, Op, SqliteStore, TxnResult


class InterleavingStore:
    def __init__(self, inner: SqliteStore,
                 between: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.inner = inner
        self.between = between
        self.ranges: list[tuple[str, int]] = []  # (prefix, revision read at), in order

    async def revision(self) -> int:
        await asyncio.sleep(0)
        return await self.inner.revision()

    async def get(self, key: str) -> Entry | None:
        await asyncio.sleep(0)
        return await self.inner.get(key)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        await asyncio.sleep(0)
        entries, revision = await self.inner.range(prefix)
        self.ranges.append((prefix, revision))
        if self.between is not None:
            await self.between(prefix)
        return entries, revision

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        await asyncio.sleep(0)
        return await self.inner.put(key, value, expect=expect)

    async def delete(self, key: str, *, expect: int | None = None, prefix: bool = False) -> int:
        await asyncio.sleep(0)
        return await self.inner.delete(key, expect=expect, prefix=prefix)

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        await asyncio.sleep(0)
        return await self.inner.txn(compares, success, failure)

    async def prefix_revision(self, prefix: str) -> int:
        await asyncio.sleep(0)
        return await self.inner.prefix_revision(prefix)

    def watch(self, prefix: str, after: int) -> AsyncIterator[list[Event]]:
        return self.inner.watch(prefix, after)

    async def wait(self, prefix: str, after: int, timeout: float) -> int:
        await asyncio.sleep(0)
        return await self.inner.wait(prefix, after, timeout)

    async def close(self) -> None:
        await self.inner.close()
