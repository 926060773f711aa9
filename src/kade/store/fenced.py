"""The store as a leader's loops write to it: every write carries the leader's fence.

The scheduler and the deployer are written against the `Store` protocol; on a cluster's leader
they get this wrapper, so a deposed leader that has not noticed yet (paused, cut off) cannot
write a single plan: its transaction fails with `NotLeader` and changes nothing. Reads, watches
and leases go to the store unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from kade.store.base import CasFailed, Compare, Delete, Entry, Event, Op, Put, Store, TxnResult
from kade.store.election import Leadership


class FencedStore:
    def __init__(self, leadership: Leadership) -> None:
        self.leadership = leadership
        self.store: Store = leadership.store

    # -- writes: fenced ------------------------------------------------------------------

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        if failure:  # a failed fence must not apply them: not offered under a fence
            raise ValueError("a fenced transaction takes no failure operations")
        return await self.leadership.txn(compares, success)

    async def put(self, key: str, value: bytes, *, expect: int | None = None,
                  lease: int = 0) -> int:
        compares = [] if expect is None else [Compare(key, expect)]
        result = await self.txn(compares, [Put(key, value, lease)])
        if not result.succeeded:
            raise CasFailed(f"put {key!r}: mod_revision is not {expect}")
        return result.revision

    async def delete(self, key: str, *, expect: int | None = None, prefix: bool = False) -> int:
        compares = [] if expect is None else [Compare(key, expect)]
        result = await self.txn(compares, [Delete(key, prefix)])
        if not result.succeeded:
            raise CasFailed(f"delete {key!r}: mod_revision is not {expect}")
        return result.revision

    # -- everything else: the store's own -------------------------------------------------

    async def revision(self) -> int:
        return await self.store.revision()

    async def get(self, key: str) -> Entry | None:
        return await self.store.get(key)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        return await self.store.range(prefix)

    async def prefix_revision(self, prefix: str) -> int:
        return await self.store.prefix_revision(prefix)

    def watch(self, prefix: str, after: int) -> AsyncIterator[list[Event]]:
        return self.store.watch(prefix, after)

    async def wait(self, prefix: str, after: int, timeout: float) -> int:
        return await self.store.wait(prefix, after, timeout)

    async def grant(self, ttl: float) -> int:
        return await self.store.grant(ttl)

    async def keepalive(self, lease: int) -> float:
        return await self.store.keepalive(lease)

    async def revoke(self, lease: int) -> None:
        await self.store.revoke(lease)

    async def close(self) -> None:
        """The leader's loops do not own the store: closing is the server's."""
