"""Leader election over the store, for the loops that must run once in a cluster (scheduler,
deployer, node monitor): etcd's election recipe, on any `Store` (on SQLite, with one process,
the only candidate wins at once).

A candidate writes `elect/<name>/<lease id>` under a lease of its own; the candidate whose key
has the lowest create_revision leads, the others wait for the keys before theirs to go. A
leader that dies stops keeping its lease alive: the key goes when the lease ends, and the next
candidate leads. A leader that was only paused (a long GC, a stalled VM) may wake up after
that and still believe it leads; **fencing** stops it from doing harm: every write of the
leader carries `Leadership.fence`, a Compare on its own key's mod_revision, which fails once
the key is gone (or was written by another). `Leadership.txn` adds it and raises `NotLeader`.

A leader learns that it lost its lease (`Leadership.lost` is set) when a keepalive is refused,
when no keepalive succeeded for a whole TTL (etcd unreachable or without quorum: the lease may
have ended meanwhile), or when its key is deleted. It must then stop its loops, and call
`resign()`, which gives the lease back if etcd still holds it (so the next candidate need not
wait for it to expire), before campaigning again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from kade.store.base import (
    CasFailed,
    Compacted,
    Compare,
    Delete,
    Entry,
    LeaseExpired,
    Op,
    Put,
    Store,
    StoreError,
    TxnResult,
)

PREFIX = "elect/"
TTL = 10.0  # seconds a dead leader keeps leading; its successor starts after this

log = logging.getLogger(__name__)


class NotLeader(CasFailed):
    """A fenced write failed: this process no longer leads (its key is gone or replaced)."""


@dataclass(frozen=True, slots=True)
class Leader:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


def _leader(entries: Sequence[Entry]) -> Leader | None:
    if not entries:
        return None
    first = min(entries, key=lambda e: e.create_revision)
    return Leader(first.key, first.value, first.create_revision, first.mod_revision)


async def _close(watch: AsyncIterator[object]) -> None:
    aclose = getattr(watch, "aclose", None)
    if aclose is not None:
        await aclose()


def check_name(name: str) -> str:
    if not name or "/" in name or not name.isprintable():
        raise ValueError(f"election name: must be a printable word without '/', not {name!r}")
    return name


class Election:
    """One election (`name`) on `store`: who leads, campaigns, changes of leader."""

    def __init__(self, store: Store, name: str, *, ttl: float = TTL) -> None:
        self.store = store
        self.name = check_name(name)
        self.prefix = f"{PREFIX}{name}/"
        self.ttl = ttl

    async def leader(self) -> Leader | None:
        """Who leads now (None: nobody)."""
        entries, _ = await self.store.range(self.prefix)
        return _leader(entries)

    async def observe(self) -> AsyncIterator[Leader | None]:
        """Who leads now, then each change of leader (or of its value), as it happens."""
        last: Leader | None = None
        first = True
        while True:
            entries, rev = await self.store.range(self.prefix)
            current = _leader(entries)
            if first or current != last:
                first, last = False, current
                yield current
            watch = self.store.watch(self.prefix, rev)
            try:
                async for _ in watch:
                    entries, _ = await self.store.range(self.prefix)
                    current = _leader(entries)
                    if current != last:
                        last = current
                        yield current
            except Compacted:
                continue
            finally:
                await _close(watch)

    async def campaign(self, value: bytes) -> Leadership:
        """Stand as a candidate with `value` (what the others see: an address, a name) and
        return once leading. Cancelling it withdraws the candidacy."""
        lease = await self.store.grant(self.ttl)
        key = f"{self.prefix}{lease:016x}"
        leadership: Leadership | None = None
        try:
            created = await self.store.txn([Compare(key, 0)], [Put(key, value, lease)])
            mine = created.revision
            leadership = Leadership(self, key, lease, value, mine)
            await self._wait_for_turn(key, mine, leadership)
            return leadership
        except BaseException:
            if leadership is not None:
                leadership.stop()
            with contextlib.suppress(StoreError):
                await self.store.revoke(lease)
            raise

    async def _wait_for_turn(self, key: str, mine: int, leadership: Leadership) -> None:
        while True:
            entries, rev = await self.store.range(self.prefix)
            if key not in {e.key for e in entries}:
                raise LeaseExpired(f"election {self.name}: the candidacy's lease ended "
                                   "while waiting to lead")
            before = {e.key for e in entries if e.create_revision < mine}
            if not before:
                return
            watch = self.store.watch(self.prefix, rev)
            try:
                async for batch in watch:
                    if any(e.kind == "delete" and (e.key in before or e.key == key)
                           for e in batch):
                        break
            except Compacted:
                pass
            finally:
                await _close(watch)
            if leadership.lost.is_set():
                raise LeaseExpired(f"election {self.name}: the candidacy's lease ended")


class Leadership:
    """Leading an election: the fence for writes, the lease kept alive, and `lost`."""

    def __init__(self, election: Election, key: str, lease: int, value: bytes,
                 revision: int) -> None:
        self.election = election
        self.key = key
        self.lease = lease
        self.value = value
        self.fence = Compare(key, revision)
        self.lost = asyncio.Event()
        self._keeper = asyncio.get_running_loop().create_task(self._keep_alive())

    @property
    def store(self) -> Store:
        return self.election.store

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op]) -> TxnResult:
        """`success` if `compares` hold and this process still leads, atomically. Raises
        NotLeader when it does not (nothing written); a failed compare of the caller's
        returns succeeded=False, as Store.txn does."""
        result = await self.store.txn([*compares, self.fence], success)
        if not result.succeeded:
            entry = await self.store.get(self.key)
            if entry is None or entry.mod_revision != self.fence.mod_revision:
                self._lose("its key is gone")
                raise NotLeader(f"election {self.election.name}: no longer the leader; "
                                "the write was refused")
        return result

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        compares = [] if expect is None else [Compare(key, expect)]
        result = await self.txn(compares, [Put(key, value)])
        if not result.succeeded:
            raise CasFailed(f"put {key!r}: mod_revision is not {expect}")
        return result.revision

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        return (await self.txn([], [Delete(key, prefix)])).revision

    async def proclaim(self, value: bytes) -> None:
        """Change the value the others see, still leading."""
        result = await self.txn([], [Put(self.key, value, self.lease)])
        self.value = value
        self.fence = Compare(self.key, result.revision)

    async def resign(self) -> None:
        """Stop leading: the next candidate leads at once."""
        self.stop()
        with contextlib.suppress(StoreError):
            await self.store.revoke(self.lease)
        self.lost.set()

    def stop(self) -> None:
        self._keeper.cancel()

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            log.warning("election %s: lost the lead (%s)", self.election.name, why)
            self.lost.set()
        self._keeper.cancel()

    async def _keep_alive(self) -> None:
        ttl = self.election.ttl
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.store.keepalive(self.lease)
                last_ok = time.monotonic()
                entry = await self.store.get(self.key)
                if entry is None:
                    self._lose("its key is gone")
                    return
            except LeaseExpired:
                self._lose("its lease ended")
                return
            except StoreError as e:
                if time.monotonic() - last_ok >= ttl:
                    self._lose(f"no keepalive for {ttl:g} s: {e}")
                    return
                log.info("election %s: keepalive failed (%s); retrying",
                         self.election.name, e)
