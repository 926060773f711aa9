"""The revisioned key/value model every component shares.

Every write gets one global revision. Readers take a consistent snapshot, or watch a prefix
from a revision and are told of every change after it, in order: nothing in kade polls.
The protocol is async so that a networked backend (etcd) fits the same shape as SQLite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int  # writes since the key was (re)created, 1 for a new key


@dataclass(frozen=True, slots=True)
class Event:
    revision: int
    kind: Literal["put", "delete"]
    key: str
    entry: Entry | None  # the new entry for a put, None for a delete
    prev: Entry | None = None


@dataclass(frozen=True, slots=True)
class Compare:
    """A guard of a transaction: `key`'s mod_revision (0 = absent) must equal `mod_revision`."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    """Write `key`; with a `lease` (from Store.grant), the key is deleted when the lease ends."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store's revision after the transaction
    events: Sequence[Event] = field(default_factory=tuple)


class StoreError(Exception):
    """Base of the store's errors."""


class CasFailed(StoreError):
    """A compare-and-swap guard did not hold: re-read and try again."""


class LimitExceeded(StoreError):
    """A write would pass a limit of the store (see `kade.store.limits`); nothing was written.

    `kind` is which bound: "value" (one value too large), "keys" or "bytes" (a quota full)."""

    def __init__(
        self, message: str, *, kind: Literal["value", "keys", "bytes"], limit: int, prefix: str
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.limit = limit
        self.prefix = prefix


class Unavailable(StoreError):
    """The store cannot be reached (every endpoint named in the message failed); retry later."""


class NoQuorum(Unavailable):
    """The store answers but cannot commit: etcd has lost its quorum. Writes are refused until
    it returns; reads still answer from what a member holds."""


class LeaseExpired(StoreError):
    """The lease is unknown: it expired, was revoked, or died with the process that held it."""


class Compacted(StoreError):
    """A watch asked for revisions that are no longer kept; re-read a snapshot."""

    def __init__(self, revision: int, compacted: int) -> None:
        super().__init__(f"revision {revision} is compacted (oldest kept: {compacted})")
        self.revision = revision
        self.compacted = compacted


class Store(Protocol):
    async def revision(self) -> int:
        """The revision of the last write (0 for an empty store)."""
        ...

    async def get(self, key: str) -> Entry | None: ...

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        """Every entry whose key starts with `prefix`, sorted by key, and the revision read at."""
        ...

    async def put(
        self, key: str, value: bytes, *, expect: int | None = None, lease: int = 0
    ) -> int:
        """Write `key`; with `expect`, only if its mod_revision is `expect` (0 = must not exist).
        With `lease`, the key goes (a delete event) when the lease ends.

        Returns the new revision; raises CasFailed when the guard does not hold, LeaseExpired
        for a lease that is gone, and LimitExceeded (writing nothing) when the value or a
        quota's usage would be too large.
        """
        ...

    async def delete(self, key: str, *, expect: int | None = None, prefix: bool = False) -> int:
        """Delete `key` (or every key under it with `prefix`). Returns the new revision,
        or the current one when nothing was deleted; raises CasFailed like put."""
        ...

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """All compares hold → apply `success`, else `failure`; atomically, one revision.

        Raises LimitExceeded, applying nothing, when the applied ops would pass a limit."""
        ...

    async def prefix_revision(self, prefix: str) -> int:
        """The last revision that changed any key under `prefix`, deletes included."""
        ...

    def watch(self, prefix: str, after: int) -> AsyncIterator[list[Event]]:
        """Yield batches of events under `prefix` with revision > `after`, in order, forever.

        Raises Compacted when `after` is older than the history kept.
        """
        ...

    async def wait(self, prefix: str, after: int, timeout: float) -> int:
        """Return as soon as something under `prefix` changed after `after`, or at `timeout`.

        Returns prefix_revision(prefix) at that moment (blocking queries build on this)."""
        ...

    async def grant(self, ttl: float) -> int:
        """A new lease that ends `ttl` seconds from now unless kept alive; returns its id.

        Backends may round `ttl` up (etcd: whole seconds, and at least its minimum)."""
        ...

    async def keepalive(self, lease: int) -> float:
        """Restart the lease's time to live; returns it in seconds. Raises LeaseExpired when
        the lease is gone (its keys are deleted already)."""
        ...

    async def revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys (one revision); a lease already gone is fine."""
        ...

    async def close(self) -> None: ...


def validate_op(op: Op) -> None:
    """Refuse what no backend can store, before anything is written: both backends call it."""
    if not isinstance(op, Put | Delete):
        raise TypeError(f"not a store operation: {op!r}")
    if not isinstance(op.key, str):
        raise TypeError(f"key must be str, not {type(op.key).__name__}")
    if op.key == "" and not (isinstance(op, Delete) and op.prefix):
        raise ValueError("key must not be empty")
    try:
        op.key.encode()
    except UnicodeEncodeError:
        raise ValueError(f"key {op.key!r} is not valid UTF-8") from None
    if isinstance(op, Put):
        if not isinstance(op.value, bytes | bytearray | memoryview):
            raise TypeError(f"value of {op.key!r} must be bytes, not {type(op.value).__name__}")
        if not isinstance(op.lease, int) or op.lease < 0:
            raise ValueError(f"lease of {op.key!r} must be a lease id (or 0), not {op.lease!r}")
