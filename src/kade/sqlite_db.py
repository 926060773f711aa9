"""An embedded SQLite file used from asyncio: the append-heavy stores of a node (domain events,
task logs) share it.

Writes go through one thread that owns the write connection: appends are serialised without
a lock held across an `await`, and a batch is one transaction. Reads run on a small pool of
threads, each with its own read-only connection kept open (its page cache stays warm from one
query to the next); in WAL mode a long search never holds up a write, nor a write a search.

Durability is chosen per file: `synchronous=FULL` makes a commit survive a power cut, not
only `kill -9` (WAL with NORMAL may lose the last commits on power loss).

`IdSpans` maps time to row ids for tables whose ids grow as rows are appended while their
times only roughly do (a capture that resumes stores old stamps late): per span of time, the
lowest and highest id stored for it, so a time-bounded search reads only that id range of a
full-text index.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
READERS = 4  # threads (and connections) answering reads
BUSY_TIMEOUT_MS = 5000  # another process holding the write lock (a test, a second opener)


class SQLiteDB:
    """One database file: `await write(fn)` runs `fn(connection)` on the writer thread,
    `await read(fn)` on a reader's read-only connection. `setup` runs once on the write
    connection at `open()` (schema, counters)."""

    def __init__(self, path: Path, setup: Callable[[sqlite3.Connection], None], *,
                 name: str, synchronous: str = "FULL", readers: int = READERS) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous: must be FULL or NORMAL")
        self.path = Path(path)
        self._setup = setup
        self._synchronous = synchronous
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-write")
        self._reader = ThreadPoolExecutor(readers, thread_name_prefix=f"{name}-read")
        self._db: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    async def open(self) -> None:
        await self.write_plain(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        self._setup(db)
        self._db = db

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self.write_plain(close)
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers.clear()

    async def write_plain(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` with the write connection, on the writer thread (`fn` opens its transaction:
        see `transaction`)."""
        def run() -> T:
            if self._db is None:
                raise RuntimeError(f"{self.path.name}: not open")
            return fn(self._db)

        return await self.write_plain(run)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` with the read-only connection of a reader thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, lambda: fn(self._reader_db()))

    def _reader_db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                 isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db


def transaction(db: sqlite3.Connection, fn: Callable[[], T]) -> T:
    """`fn()` in one write transaction: committed when it returns, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        out = fn()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return out


class IdSpans:
    """Per `width` of time, the id range of the rows stored for it (table `name`: span,
    low, high). A range only grows (deleting rows leaves it as it is): it stays a bound of
    that span's ids. Times are whatever unit the owner uses (seconds, nanoseconds)."""

    def __init__(self, name: str, width: float, key: str = "span") -> None:
        if not (name.isidentifier() and key.isidentifier()):
            raise ValueError("name, key: must be identifiers")
        self.name = name
        self.key = key
        self.width = width

    def schema(self) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {self.name} ("
                f"{self.key} INTEGER PRIMARY KEY, low INTEGER NOT NULL, high INTEGER NOT NULL);")

    def span_of(self, at: float) -> int:
        return int(at // self.width)

    def add(self, db: sqlite3.Connection, rows: Iterable[tuple[float, int]]) -> None:
        """Widen the spans by rows given as (time, id)."""
        spans: dict[int, tuple[int, int]] = {}
        width = self.width
        for at, id_ in rows:
            s = int(at // width)
            have = spans.get(s)
            spans[s] = (id_, id_) if have is None else (min(have[0], id_), max(have[1], id_))
        self.widen(db, [(s, low, high) for s, (low, high) in spans.items()])

    def add_stored(self, db: sqlite3.Connection, table: str, time: str, after_id: int) -> None:
        """Widen the spans by the rows of `table` (its `time` column) stored after `after_id`
        (names are the owner's constants, never a user's)."""
        db.execute(
            f"INSERT INTO {self.name} ({self.key}, low, high) "
            f"SELECT CAST({time} / ? AS INTEGER) AS s, min(id), max(id) FROM {table} "
            "WHERE id > ? GROUP BY s "
            f"ON CONFLICT({self.key}) DO UPDATE SET low = min(low, excluded.low), "
            "high = max(high, excluded.high)", (self.width, after_id))

    def widen(self, db: sqlite3.Connection, spans: Iterable[tuple[int, int, int]]) -> None:
        db.executemany(
            f"INSERT INTO {self.name} ({self.key}, low, high) VALUES (?, ?, ?) "
            f"ON CONFLICT({self.key}) DO UPDATE SET low = min(low, excluded.low), "
            "high = max(high, excluded.high)", list(spans))

    def between(self, db: sqlite3.Connection, since: float | None, until: float | None,
                *, descending: bool = False) -> list[tuple[int, int, int]]:
        """(span, low, high) of the spans that hold times in [since, until), in time order
        (or the reverse)."""
        first = -(2**62) if since is None else self.span_of(since)
        last = 2**62 if until is None else self.span_of(until)
        order = "DESC" if descending else "ASC"
        return db.execute(f"SELECT {self.key}, low, high FROM {self.name} "
                          f"WHERE {self.key} BETWEEN ? AND ? ORDER BY {self.key} {order}",
                          (first, last)).fetchall()

    def ids(self, db: sqlite3.Connection, since: float | None, until: float | None
            ) -> tuple[int, int]:
        """Bounds of the ids stored for times in [since, until); (1, 0) when there are none."""
        first = -(2**62) if since is None else self.span_of(since)
        last = 2**62 if until is None else self.span_of(until)
        low, high = db.execute(f"SELECT min(low), max(high) FROM {self.name} "
                               f"WHERE {self.key} BETWEEN ? AND ?", (first, last)).fetchone()
        return (low, high) if low is not None else (1, 0)
