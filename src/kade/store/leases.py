"""Leases of the embedded store: in-process timers, since one process owns the store.

A lease is an id, a time to live and the keys written under it. Each lease has one timer task
that sleeps its TTL and then ends it; a keepalive restarts the timer. Ending a lease deletes
its keys in one transaction (normal delete events, which watchers see), done by the store
through the `expire` callback. The keys' lease ids are also kept on disk (`leased` table):
leases do not outlive the process, so at open the store deletes what a previous process left
under one (`SqliteStore.__init__`).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kade.store.base import LeaseExpired

MAX_TTL = 9_000_000_000.0  # etcd's bound on a lease's time to live, in seconds
MAX_LEASES = 100_000  # a backstop on leases alive at once (one per agent, server, session)


class Sleeper(Protocol):
    """What a lease timer needs of a clock (kade.testing.FakeClock fits)."""

    async def sleep(self, seconds: float) -> None: ...


class _AsyncioSleeper:
    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass
class Lease:
    id: int
    ttl: float
    keys: set[str] = field(default_factory=set)
    timer: asyncio.Task[None] | None = None


def check_ttl(ttl: float) -> float:
    """A lease's time to live: a positive, finite number of seconds (ValueError otherwise)."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) \
            or ttl <= 0 or ttl > MAX_TTL:
        raise ValueError(f"ttl: must be a number of seconds above 0 and at most {MAX_TTL:.0f}, "
                         f"not {ttl!r}")
    return float(ttl)


class Leases:
    """The live leases of one process, and which keys each holds."""

    def __init__(self, expire: Callable[[Lease], None], clock: Sleeper | None = None) -> None:
        self._expire = expire
        self._clock: Sleeper = clock or _AsyncioSleeper()
        self._leases: dict[int, Lease] = {}
        self._owner: dict[str, int] = {}  # key -> lease

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._leases

    def grant(self, ttl: float) -> int:
        ttl = check_ttl(ttl)
        if len(self._leases) >= MAX_LEASES:
            raise ValueError(f"too many leases: {MAX_LEASES} are alive; revoke unused ones")
        lease_id = secrets.randbits(62) + 1  # never 0 (no lease), never reused across runs
        lease = Lease(lease_id, ttl)
        self._leases[lease_id] = lease
        self._arm(lease)
        return lease_id

    def keepalive(self, lease_id: int) -> float:
        lease = self.get(lease_id)
        self._arm(lease)
        return lease.ttl

    def get(self, lease_id: int) -> Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseExpired(f"lease {lease_id:x} is gone: it expired or was revoked")
        return lease

    def keys_of(self, lease_id: int) -> list[str]:
        lease = self._leases.get(lease_id)
        return sorted(lease.keys) if lease else []

    def attach(self, key: str, lease_id: int) -> None:
        """`key` was written with `lease_id` (0: without a lease, which detaches it)."""
        self.detach(key)
        if lease_id:
            self._leases[lease_id].keys.add(key)
            self._owner[key] = lease_id

    def detach(self, key: str) -> None:
        old = self._owner.pop(key, None)
        if old is not None and old in self._leases:
            self._leases[old].keys.discard(key)

    def forget(self, lease_id: int) -> Lease | None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return None
        if lease.timer is not None and lease.timer is not asyncio.current_task():
            lease.timer.cancel()
        for key in lease.keys:
            self._owner.pop(key, None)
        return lease

    def close(self) -> None:
        for lease in list(self._leases.values()):
            if lease.timer is not None:
                lease.timer.cancel()
        self._leases.clear()
        self._owner.clear()

    def _arm(self, lease: Lease) -> None:
        if lease.timer is not None:
            lease.timer.cancel()
        lease.timer = asyncio.get_running_loop().create_task(self._run(lease))

    async def _run(self, lease: Lease) -> None:
        await self._clock.sleep(lease.ttl)
        if self._leases.get(lease.id) is lease:
            self._expire(lease)
