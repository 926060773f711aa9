"""The embedded store: one SQLite file in WAL mode, owned by one process.

Writes run synchronously on the event loop (a commit is one fsync of the WAL, well under a
millisecond of CPU), so the in-memory state below changes atomically with each commit:
- `_ring`: the events of recent revisions, so live watchers never query SQLite;
- `_prefix_revs`: a cache of prefix_revision() answers, updated on every write, because
  Consul clients ask for it on every request;
- `_signals`: one shared future per waited-on prefix, resolved by the write that touches it,
  so one write wakes any number of waiters and watchers without a query each.
History is kept in the `log` table for `history` revisions, for watches that resume from
further back. Deleted keys leave a tombstone so that prefix_revision() counts deletes, also
after a restart; old tombstones are folded into their parent directory (`reaped`), which keeps
the answer monotonic at the cost of being conservative for that directory.
"""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

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
)

HISTORY = 100_000  # revisions of change log kept for watches
RING = 10_000  # revisions of events kept in memory for live watchers
PREFIX_CACHE = 10_000  # prefix_revision answers kept in memory
PAGE = 1_000  # revisions read from the log per query when a watch catches up

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    create_rev INTEGER,
    version INTEGER,
    prev_value BLOB,
    prev_create INTEGER,
    prev_mod INTEGER,
    prev_version INTEGER
);
CREATE INDEX IF NOT EXISTS log_rev ON log (rev);
CREATE TABLE IF NOT EXISTS tomb (key TEXT PRIMARY KEY, rev INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tomb_rev ON tomb (rev);
CREATE TABLE IF NOT EXISTS reaped (dir TEXT PRIMARY KEY, rev INTEGER NOT NULL);
"""


def prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string that starts with `prefix` (None: no bound)."""
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    code = ord(stem[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates cannot occur in keys
        code = 0xE000
    return stem[:-1] + chr(code)


def _key_range(column: str, prefix: str) -> tuple[str, tuple[str, ...]]:
    upper = prefix_upper(prefix)
    if upper is None:
        return f"{column} >= ?", (prefix,)
    return f"{column} >= ? AND {column} < ?", (prefix, upper)


def prefixes_hit(prefixes: Mapping[str, object], keys: Sequence[str]) -> list[str]:
    """Which of `prefixes` start at least one of `keys`.

    Picks the cheaper of two ways: look up every leading slice of each key, or bisect the
    sorted keys for each prefix (better for a prefix delete of many keys).
    """
    if not prefixes or not keys:
        return []
    slices = sum(len(k) + 1 for k in keys)
    if slices <= len(prefixes) * 8:
        found = {k[:i] for k in keys for i in range(len(k) + 1)}
        return [p for p in found if p in prefixes]
    ordered = sorted(keys)
    hits = []
    for p in prefixes:
        i = bisect.bisect_left(ordered, p)
        if i < len(ordered) and ordered[i].startswith(p):
            hits.append(p)
    return hits


def _parent_dir(key: str) -> str:
    return key[: key.rfind("/") + 1]


class _Signals:
    """One future per prefix, resolved with the first revision that changes the prefix."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[asyncio.Future[int], list[int]]] = {}

    def acquire(self, prefix: str) -> asyncio.Future[int]:
        entry = self._entries.get(prefix)
        if entry is None:
            entry = (asyncio.get_running_loop().create_future(), [0])
            self._entries[prefix] = entry
        entry[1][0] += 1
        return entry[0]

    def release(self, prefix: str, fut: asyncio.Future[int]) -> None:
        entry = self._entries.get(prefix)
        if entry is None or entry[0] is not fut:
            return  # already fired
        entry[1][0] -= 1
        if entry[1][0] == 0:
            del self._entries[prefix]
            fut.cancel()

    def notify(self, keys: Sequence[str], revision: int) -> None:
        for p in prefixes_hit(self._entries, keys):
            fut, _ = self._entries.pop(p)
            fut.set_result(revision)

    def fire_all(self, revision: int) -> None:
        for fut, _ in self._entries.values():
            fut.set_result(revision)
        self._entries.clear()


def _entry(key: str, value: Any, create: Any, mod: Any, version: Any) -> Entry | None:
    if create is None:
        return None
    return Entry(key, bytes(value), create, mod, version)


class SqliteStore:
    """The Store protocol on SQLite; see the module docstring for how it is laid out."""

    def __init__(self, data_dir: Path, *, history: int = HISTORY, ring: int = RING) -> None:
        if history < 1:
            raise ValueError("history must keep at least one revision")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreError(
                f"data dir {self.data_dir} is in use by another kade process"
            ) from None
        self._db = sqlite3.connect(self.data_dir / "state.db", isolation_level=None)
        try:
            (mode,) = self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode != "wal":
                raise StoreError(f"{self.data_dir}: SQLite cannot use WAL mode here ({mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            rev, compacted = self._db.execute("SELECT revision, compacted FROM meta").fetchone()
            self._rev: int = rev
            self._compacted: int = compacted
        except BaseException:
            self._db.close()
            os.close(self._lock_fd)
            raise
        self._history = history
        self._ring_size = max(1, min(ring, history))
        self._ring: dict[int, list[Event]] = {}
        self._ring_start = self._rev + 1  # oldest revision held in _ring
        self._prefix_revs: dict[str, int] = {}
        self._signals = _Signals()
        self._closed = False
        self._maybe_compact()

    # -- reads ---------------------------------------------------------------------------

    async def revision(self) -> int:
        self._check_open()
        return self._rev

    async def get(self, key: str) -> Entry | None:
        self._check_open()
        return self._read(key)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        self._check_open()
        where, args = _key_range("key", prefix)
        rows = self._db.execute(
            f"SELECT key, value, create_rev, mod_rev, version FROM kv WHERE {where} ORDER BY key",
            args,
        ).fetchall()
        return [Entry(k, bytes(v), c, m, n) for k, v, c, m, n in rows], self._rev

    async def prefix_revision(self, prefix: str) -> int:
        self._check_open()
        return self._prefix_revision(prefix)

    # -- writes --------------------------------------------------------------------------

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        self._check_open()
        compares = [] if expect is None else [Compare(key, expect)]
        result = self._txn(compares, [Put(key, value)], ())
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
            _validate(op)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            succeeded = all(self._mod_rev(c.key) == c.mod_revision for c in compares)
            events = self._apply(success if succeeded else failure)
            if events:
                db.execute("UPDATE meta SET revision = ?", (events[0].revision,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
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
                events.append(Event(rev, "put", op.key, entry, prev))
                continue
            if op.prefix:
                where, args = _key_range("key", op.key)
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
            events.extend(Event(rev, "delete", e.key, None, e) for e in gone)
        db.executemany(
            "INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_log_row(e) for e in events],
        )
        return events

    def _committed(self, events: list[Event]) -> None:
        """Bring memory in line with a commit; runs without awaiting, so nobody sees a gap."""
        rev = events[0].revision
        self._rev = rev
        self._ring[rev] = events
        while len(self._ring) > self._ring_size:
            del self._ring[self._ring_start]
            self._ring_start += 1
        keys = [e.key for e in events]
        for p in prefixes_hit(self._prefix_revs, keys):
            self._prefix_revs[p] = rev
        self._signals.notify(keys, rev)
        try:
            self._maybe_compact()
        except sqlite3.Error:  # the write itself is done; compaction retries on the next one
            log.warning("store compaction failed", exc_info=True)

    # -- compaction ----------------------------------------------------------------------

    def _maybe_compact(self) -> None:
        step = max(1, min(10_000, self._history // 10))
        if self._rev - self._compacted < self._history + step:
            return
        self.compact(self._rev - self._history)

    def compact(self, revision: int) -> None:
        """Forget history up to `revision`; watches from before it get Compacted."""
        self._check_open()
        revision = min(revision, self._rev)
        if revision <= self._compacted:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM log WHERE rev <= ?", (revision,))
            old = db.execute("SELECT key, rev FROM tomb WHERE rev <= ?", (revision,)).fetchall()
            dirs: dict[str, int] = {}
            for key, rev in old:
                d = _parent_dir(key)
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
        if old:
            self._prefix_revs.clear()  # answers may rise to the reaped directories' revisions

    # -- watching ------------------------------------------------------------------------

    async def watch(self, prefix: str, after: int) -> AsyncIterator[list[Event]]:
        self._check_open()
        pos = max(after, 0)
        if pos < self._compacted:
            raise Compacted(pos, self._compacted)
        while not self._closed:
            current = self._rev
            if pos < current:
                if pos + 1 >= self._ring_start:
                    batch = [
                        e
                        for rev in range(pos + 1, current + 1)
                        for e in self._ring[rev]
                        if e.key.startswith(prefix)
                    ]
                    pos = current
                else:
                    if pos < self._compacted:
                        raise Compacted(pos, self._compacted)
                    end = min(current, self._ring_start - 1, pos + PAGE)
                    batch = self._log_events(prefix, pos, end)
                    pos = end
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
            where, args = _key_range("key", prefix)
            live = self._db.execute(f"SELECT max(mod_rev) FROM kv WHERE {where}", args)
            dead = self._db.execute(f"SELECT max(rev) FROM tomb WHERE {where}", args)
            found = max(live.fetchone()[0] or 0, dead.fetchone()[0] or 0)
            # Reaped tombstones: directories under the prefix, or above it (conservative).
            where, args = _key_range("dir", prefix)
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

    def _log_events(self, prefix: str, after: int, end: int) -> list[Event]:
        where, args = _key_range("key", prefix)
        rows = self._db.execute(
            "SELECT rev, key, value, create_rev, version, "
            "prev_value, prev_create, prev_mod, prev_version FROM log "
            f"WHERE rev > ? AND rev <= ? AND {where} ORDER BY rev, rowid",
            (after, end, *args),
        ).fetchall()
        events = []
        for rev, key, value, create, version, pv, pc, pm, pn in rows:
            entry = _entry(key, value, create, rev, version)
            prev = _entry(key, pv, pc, pm, pn)
            if entry is not None:
                events.append(Event(rev, "put", key, entry, prev))
            else:
                events.append(Event(rev, "delete", key, None, prev))
        return events


def _validate(op: Op) -> None:
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
    if isinstance(op, Put) and not isinstance(op.value, bytes | bytearray | memoryview):
        raise TypeError(f"value of {op.key!r} must be bytes, not {type(op.value).__name__}")


def _log_row(e: Event) -> tuple[Any, ...]:
    new, old = e.entry, e.prev
    return (
        e.revision,
        e.key,
        new.value if new else None,
        new.create_revision if new else None,
        new.version if new else None,
        old.value if old else None,
        old.create_revision if old else None,
        old.mod_revision if old else None,
        old.version if old else None,
    )
