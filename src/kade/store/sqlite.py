"""The embedded store: one SQLite file in WAL mode, owned by one process.

Writes run synchronously on the event loop (a commit is one fsync of the WAL, well under a
millisecond of CPU), so the in-memory state below changes atomically with each commit:
- `_ring`: the events of recent revisions, so live watchers never query SQLite;
- `_prefix_revs`: a cache of prefix_revision() answers, updated on every write, because
  Consul clients ask for it on every request;
- `_signals`: one shared future per waited-on prefix, resolved by the write that touches it,
  so one write wakes any number of waiters and watchers without a query each.
History is kept in the `log` table for `history` revisions or `history_bytes`, whichever is
less, for watches that resume from further back; the ring is bounded the same way
(`kade.store.limits`). Writes under a `Quota` are counted (`_usage`) and refused past it.
Space freed by compaction is reused (and given back past a threshold: incremental
auto-vacuum), so the file does not grow with history. The data dir is 0700 and its files
0600 (`kade.store.files`). Deleted keys leave a tombstone so that prefix_revision() counts
deletes, also after a restart; old tombstones are folded into their parent directory
(`reaped`), which keeps the answer monotonic at the cost of being conservative for that
directory. Leases are timers of this process (`kade.store.leases`); the keys under them are
listed in `leased`, and deleted at the next open, since their leases died with the process.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from kade.store.base import (
    CasFailed,
    Compacted,
    Compare,
    Delete,
    Entry,
    Event,
    Op,
    Put,
    StoreError,
    TxnResult,
    validate_op,
)
from kade.store.files import open_private, private_dir, private_file
from kade.store.history import Ring, log_row, read_log
from kade.store.keys import Signals, key_range, parent_dir, prefixes_hit
from kade.store.leases import Lease, Leases, Sleeper
from kade.store.limits import (
    LOG_BYTES,
    LOG_REVISIONS,
    LOG_ROW_BYTES_SQL,
    RING_BYTES,
    RING_REVISIONS,
    Quota,
    Usage,
    check_usage,
    check_value,
    compaction_point,
    default_quotas,
    log_bytes,
    usage_delta,
)
from kade.store.schema import convert, give_back_space, measure, prepare

HISTORY = LOG_REVISIONS
RING = RING_REVISIONS
PREFIX_CACHE = 10_000  # prefix_revision answers kept in memory
PAGE = 1_000  # revisions read from the log per query when a watch catches up
VACUUM_MIN = 32 * 1024 * 1024  # free pages given back to the file system past this
FILES = ("state.db", "state.db-wal", "state.db-shm")

log = logging.getLogger(__name__)

class SqliteStore:
    """The Store protocol on SQLite; see the module docstring for how it is laid out."""

    def __init__(
        self,
        data_dir: Path,
        *,
        history: int = HISTORY,
        ring: int = RING,
        history_bytes: int = LOG_BYTES,
        ring_bytes: int = RING_BYTES,
        quotas: Sequence[Quota] | None = None,
        clock: Sleeper | None = None,
    ) -> None:
        if history < 1 or history_bytes < 1:
            raise ValueError("history must keep at least one revision and one byte")
        self.data_dir = Path(data_dir)
        try:
            private_dir(self.data_dir)
        except PermissionError as e:
            where = f"{e.filename}: " if e.filename is not None else ""
            raise StoreError(f"data dir {where}{e.strerror}") from None
        self._lock_fd = open_private(self.data_dir / "lock")
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreError(
                f"data dir {self.data_dir} is in use by another kade process"
            ) from None
        try:
            # SQLite creates the WAL and shared-memory files with the database's mode.
            os.close(open_private(self.data_dir / FILES[0]))
            for name in FILES[1:]:
                private_file(self.data_dir / name)
            self._db = sqlite3.connect(self.data_dir / FILES[0], isolation_level=None)
        except BaseException:
            os.close(self._lock_fd)
            raise
        try:
            older_file = prepare(self._db, self.data_dir)
            for name in FILES[1:]:
                private_file(self.data_dir / name)
            rev, compacted = self._db.execute("SELECT revision, compacted FROM meta").fetchone()
            self._rev: int = rev
            self._compacted: int = compacted
            (self._log_bytes,) = self._db.execute(
                f"SELECT coalesce(sum({LOG_ROW_BYTES_SQL}), 0) FROM log"
            ).fetchone()
            self._quotas = tuple(default_quotas({}) if quotas is None else quotas)
            self._usage = [measure(self._db, q) for q in self._quotas]
        except BaseException:
            self._db.close()
            os.close(self._lock_fd)
            raise
        self._history = history
        self._history_bytes = history_bytes
        self._ring = Ring(self._rev + 1, min(ring, history), ring_bytes)
        self._prefix_revs: dict[str, int] = {}
        self._signals = Signals()
        self._leases = Leases(self._expire, clock)
        self._closed = False
        try:
            self._maybe_compact()
            if older_file:
                convert(self._db, self.data_dir)
            self._drop_orphans()
        except BaseException:
            self._db.close()
            os.close(self._lock_fd)
            raise

    # -- reads ---------------------------------------------------------------------------

    async def revision(self) -> int:
        self._check_open()
        return self._rev

    async def get(self, key: str) -> Entry | None:
        self._check_open()
        return self._read(key)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        self._check_open()
        where, args = key_range("key", prefix)
        rows = self._db.execute(
            f"SELECT key, value, create_rev, mod_rev, version FROM kv WHERE {where} ORDER BY key",
            args,
        ).fetchall()
        return [Entry(k, bytes(v), c, m, n) for k, v, c, m, n in rows], self._rev

    async def prefix_revision(self, prefix: str) -> int:
        self._check_open()
        return self._prefix_revision(prefix)

    # -- writes --------------------------------------------------------------------------

    async def put(
        self, key: str, value: bytes, *, expect: int | None = None, lease: int = 0
    ) -> int:
        self._check_open()
        compares = [] if expect is None else [Compare(key, expect)]
        result = self._txn(compares, [Put(key, value, lease)], ())
        if not result.succeeded:
            raise CasFailed(f"put {key!r}: mod_revision is not {expect}")
        return result.revision

    async def delete(self, key: str, *, expect: int | None = None, prefix: bool = False) -> int:
        self._check_open()
        if prefix and expect is not None:
            raise ValueError("delete: expect cannot be combined with prefix")
        compares = [] if expect is None else [Compare(key, expect)]
        result = self._txn(compares, [Delete(key, prefix)], ())
        if not result.succeeded:
            raise CasFailed(f"delete {key!r}: mod_revision is not {expect}")
        return result.revision

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self._check_open()
        return self._txn(compares, success, failure)

    def _txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        for op in (*success, *failure):
            validate_op(op)
            if isinstance(op, Put):
                check_value(self._quotas, op.key, len(op.value))
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            succeeded = all(self._mod_rev(c.key) == c.mod_revision for c in compares)
            applied = success if succeeded else failure
            leased = {op.key: op.lease for op in applied if isinstance(op, Put)}
            for lease in set(leased.values()) - {0}:
                self._leases.get(lease)  # raises LeaseExpired, writing nothing
            events = self._apply(applied)
            deltas = [usage_delta(q.prefix, events) for q in self._quotas]
            for quota, usage, delta in zip(self._quotas, self._usage, deltas, strict=True):
                check_usage(quota, usage, delta)
            if events:
                db.execute("UPDATE meta SET revision = ?", (events[0].revision,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        for usage, delta in zip(self._usage, deltas, strict=True):
            usage.keys += delta.keys
            usage.bytes += delta.bytes
        for e in events:
            if e.kind == "put":
                self._leases.attach(e.key, leased[e.key])
            else:
                self._leases.detach(e.key)
        if events:
            self._committed(events)
        return TxnResult(succeeded, self._rev, tuple(events))

    def _apply(self, ops: Sequence[Op]) -> list[Event]:
        """Apply `ops` in order inside the open transaction; one revision for all of them."""
        db = self._db
        rev = self._rev + 1
        events: list[Event] = []
        for op in ops:
            if isinstance(op, Put):
                prev = self._read(op.key)
                entry = Entry(
                    op.key,
                    bytes(op.value),
                    prev.create_revision if prev else rev,
                    rev,
                    prev.version + 1 if prev else 1,
                )
                db.execute(
                    "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?)",
                    (entry.key, entry.value, entry.create_revision, rev, entry.version),
                )
                db.execute("DELETE FROM tomb WHERE key = ?", (op.key,))
                if op.lease:
                    db.execute("INSERT OR REPLACE INTO leased VALUES (?, ?)", (op.key, op.lease))
                elif prev is not None:
                    db.execute("DELETE FROM leased WHERE key = ?", (op.key,))
                events.append(Event(rev, "put", op.key, entry, prev))
                continue
            if op.prefix:
                where, args = key_range("key", op.key)
                rows = db.execute(
                    "SELECT key, value, create_rev, mod_rev, version FROM kv "
                    f"WHERE {where} ORDER BY key",
                    args,
                ).fetchall()
                gone = [Entry(k, bytes(v), c, m, n) for k, v, c, m, n in rows]
                db.execute(f"DELETE FROM kv WHERE {where}", args)
            else:
                one = self._read(op.key)
                gone = [one] if one else []
                if one:
                    db.execute("DELETE FROM kv WHERE key = ?", (op.key,))
            db.executemany(
                "INSERT OR REPLACE INTO tomb VALUES (?, ?)", [(e.key, rev) for e in gone]
            )
            db.executemany("DELETE FROM leased WHERE key = ?", [(e.key,) for e in gone])
            events.extend(Event(rev, "delete", e.key, None, e) for e in gone)
        db.executemany(
            "INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [log_row(e) for e in events],
        )
        return events

    def _committed(self, events: list[Event]) -> None:
        """Bring memory in line with a commit; runs without awaiting, so nobody sees a gap."""
        rev = events[0].revision
        self._rev = rev
        self._ring.add(rev, events)
        self._log_bytes += log_bytes(events)
        keys = [e.key for e in events]
        for p in prefixes_hit(self._prefix_revs, keys):
            self._prefix_revs[p] = rev
        self._signals.notify(keys, rev)
        try:
            self._maybe_compact()
        except sqlite3.Error:  # the write itself is done; compaction retries on the next one
            log.warning("store compaction failed", exc_info=True)

    # -- leases --------------------------------------------------------------------------

    async def grant(self, ttl: float) -> int:
        self._check_open()
        return self._leases.grant(ttl)

    async def keepalive(self, lease: int) -> float:
        self._check_open()
        return self._leases.keepalive(lease)

    async def revoke(self, lease: int) -> None:
        self._check_open()
        if lease in self._leases:
            self._end(lease)

    def _expire(self, lease: Lease) -> None:
        if not self._closed:
            self._end(lease.id)

    def _end(self, lease_id: int) -> None:
        """Delete the lease's keys in one revision, then forget it."""
        keys = self._leases.keys_of(lease_id)
        self._leases.forget(lease_id)
        if keys:
            self._txn([], [Delete(k) for k in keys], ())

    def _drop_orphans(self) -> None:
        """Delete keys left under a lease by a previous process (its leases died with it)."""
        keys = [k for (k,) in self._db.execute("SELECT key FROM leased ORDER BY key")]
        if keys:
            log.info("deleting %d keys whose leases ended with the previous process", len(keys))
            self._txn([], [Delete(k) for k in keys], ())

    # -- compaction ----------------------------------------------------------------------

    def _maybe_compact(self) -> None:
        """Compact past either budget of the log, by a step (a tenth of the revisions, an
        eighth of the bytes) so that the cost is paid once per many writes."""
        target = 0
        step = max(1, min(10_000, self._history // 10))
        if self._rev - self._compacted >= self._history + step:
            target = self._rev - self._history
        if self._log_bytes > self._history_bytes:
            excess = self._log_bytes - self._history_bytes + self._history_bytes // 8
            sizes = self._db.execute(
                f"SELECT rev, sum({LOG_ROW_BYTES_SQL}) FROM log WHERE rev > ? "
                "GROUP BY rev ORDER BY rev",
                (max(self._compacted, target),),
            )
            try:
                point = compaction_point(sizes, excess)
            finally:
                sizes.close()
            target = max(target, point or 0)
        if target > self._compacted:
            self.compact(target)

    def compact(self, revision: int) -> None:
        """Forget history up to `revision`; watches from before it get Compacted."""
        self._check_open()
        revision = min(revision, self._rev)
        if revision <= self._compacted:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            (freed,) = db.execute(
                f"SELECT coalesce(sum({LOG_ROW_BYTES_SQL}), 0) FROM log WHERE rev <= ?",
                (revision,),
            ).fetchone()
            db.execute("DELETE FROM log WHERE rev <= ?", (revision,))
            old = db.execute("SELECT key, rev FROM tomb WHERE rev <= ?", (revision,)).fetchall()
            dirs: dict[str, int] = {}
            for key, rev in old:
                d = parent_dir(key)
                dirs[d] = max(dirs.get(d, 0), rev)
            db.executemany(
                "INSERT INTO reaped VALUES (?, ?) "
                "ON CONFLICT (dir) DO UPDATE SET rev = max(rev, excluded.rev)",
                list(dirs.items()),
            )
            db.execute("DELETE FROM tomb WHERE rev <= ?", (revision,))
            db.execute("UPDATE meta SET compacted = ?", (revision,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._compacted = revision
        self._log_bytes -= freed
        self._ring.forget_through(revision)
        if old:
            self._prefix_revs.clear()  # answers may rise to the reaped directories' revisions
        give_back_space(db, VACUUM_MIN)

    def usage(self) -> list[tuple[Quota, Usage]]:
        """Each quota and what it counts now (for metrics and tests)."""
        return [(q, Usage(u.keys, u.bytes)) for q, u in zip(self._quotas, self._usage,
                                                             strict=True)]

    # -- watching ------------------------------------------------------------------------

    async def watch(self, prefix: str, after: int) -> AsyncIterator[list[Event]]:
        self._check_open()
        pos = max(after, 0)
        if pos < self._compacted:
            raise Compacted(pos, self._compacted)
        while not self._closed:
            current = self._rev
            if pos < current:
                if self._ring.holds_after(pos):
                    batch = self._ring.since(prefix, pos, current)
                    pos = current
                else:
                    if pos < self._compacted:
                        raise Compacted(pos, self._compacted)
                    end = min(current, self._ring.start - 1, pos + PAGE)
                    batch, pos = read_log(self._db, prefix, pos, end)
                if batch:
                    yield batch
                continue
            fut = self._signals.acquire(prefix)
            try:
                await asyncio.wait({fut})
            finally:
                self._signals.release(prefix, fut)
            if not self._closed and fut.done() and not fut.cancelled():
                # Nothing under the prefix changed before the revision that fired.
                pos = max(pos, fut.result() - 1)

    async def wait(self, prefix: str, after: int, timeout: float) -> int:
        self._check_open()
        current = self._prefix_revision(prefix)
        if current > after or timeout <= 0:
            return current
        fut = self._signals.acquire(prefix)
        try:
            await asyncio.wait({fut}, timeout=timeout)
        finally:
            self._signals.release(prefix, fut)
        self._check_open()
        return self._prefix_revision(prefix)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._leases.close()
        self._signals.fire_all(self._rev)
        self._db.close()
        os.close(self._lock_fd)  # releases the flock

    # -- helpers -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    def _read(self, key: str) -> Entry | None:
        row = self._db.execute(
            "SELECT value, create_rev, mod_rev, version FROM kv WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else Entry(key, bytes(row[0]), row[1], row[2], row[3])

    def _mod_rev(self, key: str) -> int:
        row = self._db.execute("SELECT mod_rev FROM kv WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def _prefix_revision(self, prefix: str) -> int:
        cached = self._prefix_revs.get(prefix)
        if cached is not None:
            return cached
        if prefix == "":
            found = self._rev
        else:
            where, args = key_range("key", prefix)
            live = self._db.execute(f"SELECT max(mod_rev) FROM kv WHERE {where}", args)
            dead = self._db.execute(f"SELECT max(rev) FROM tomb WHERE {where}", args)
            found = max(live.fetchone()[0] or 0, dead.fetchone()[0] or 0)
            # Reaped tombstones: directories under the prefix, or above it (conservative).
            where, args = key_range("dir", prefix)
            above = ["", *(prefix[: i + 1] for i, c in enumerate(prefix) if c == "/")]
            marks = ",".join("?" * len(above))
            row = self._db.execute(
                f"SELECT max(rev) FROM reaped WHERE ({where}) OR dir IN ({marks})",
                (*args, *above),
            ).fetchone()
            found = max(found, row[0] or 0)
        if len(self._prefix_revs) >= PREFIX_CACHE:
            del self._prefix_revs[next(iter(self._prefix_revs))]
        self._prefix_revs[prefix] = found
        return found
