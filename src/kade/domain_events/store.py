"""Domain events on disk: one SQLite database of their own, with an FTS5 index.

Not the revisioned store: events are many, append-only and bounded by retention, and no
component reconciles on them. WAL with synchronous=FULL, so an append that returned survives
`kill -9` and a power cut — the consumer acks the broker only after that (ack after commit).

Rows are ordered by (time, id) in an index: a query bounded in time reads only its range.
Message ids are unique: a duplicate (a redelivery after a crash, a publisher's retry) is
dropped and counted. Retention removes the oldest events beyond an age or a size.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kade.domain_events.query import Query, fts_phrase, fts_words, glob_sql, json_path
from kade.domain_events.record import DomainEvent
from kade.sqlite_db import IdSpans, SQLiteDB

log = logging.getLogger("kade.domain_events")

T = TypeVar("T")
DB_FILE = "domain-events.db"
MAX_LIMIT = 10_000  # events in one answer
MAX_BUCKETS = 1_000  # histogram intervals in one answer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    time REAL NOT NULL,
    received REAL NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    exchange TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time, id);
CREATE INDEX IF NOT EXISTS events_type ON events(type, time);
CREATE VIRTUAL TABLE IF NOT EXISTS events_text USING fts5(
    type, source, routing_key, body, content='events', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS events_text_add AFTER INSERT ON events BEGIN
    INSERT INTO events_text(rowid, type, source, routing_key, body)
    VALUES (new.id, new.type, new.source, new.routing_key, new.body);
END;
CREATE TRIGGER IF NOT EXISTS events_text_remove AFTER DELETE ON events BEGIN
    INSERT INTO events_text(events_text, rowid, type, source, routing_key, body)
    VALUES ('delete', old.id, old.type, old.source, old.routing_key, old.body);
END;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
SPAN = 3600  # seconds of event time per row of `spans`: the ids stored for that hour
_SPANS = IdSpans("spans", SPAN, key="hour")
ANALYZE_EVERY = 50_000  # stored events between refreshes of the planner's statistics
_NO_ID = 2**62  # above every id
# a body field as text: JSON's true and false as such, not as SQLite's 1 and 0
_FIELD_TEXT = ("(CASE json_type(body, ?) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
               "ELSE CAST(json_extract(body, ?) AS TEXT) END)")
_COLUMNS = ("id, message_id, time, received, type, source, routing_key, exchange, "
            "correlation_id, headers, body")


@dataclass(frozen=True)
class Retention:
    """Defaults: a week, and 1 GiB of events (docs/domain-events.md)."""

    max_age: float = 7 * 24 * 3600.0
    max_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class Appended:
    stored: int
    duplicates: int
    last_id: int


@dataclass(frozen=True)
class Window:
    """What a search looks at: a query and a time range (`until` exclusive)."""

    query: Query
    since: float | None = None
    until: float | None = None


class EventStore:
    """Writes go through one thread that owns the write connection; every read uses a
    read-only connection of its own, so a long search never holds up ingest
    (`kade.sqlite_db`)."""

    def __init__(self, data_dir: Path, retention: Retention | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(data_dir) / DB_FILE
        self.retention = retention or Retention()
        self.clock = clock
        self._file = SQLiteDB(self.path, self._open, name="domain-events")
        self._bytes = 0
        self._last_id = 0
        self._unanalyzed = 0
        self._changed = asyncio.Event()

    async def open(self) -> EventStore:
        await self._file.open()
        return self

    def _open(self, db: sqlite3.Connection) -> None:
        db.executescript(_SCHEMA + _SPANS.schema())
        self._bytes = db.execute("SELECT coalesce(sum(size), 0) FROM events").fetchone()[0]
        self._last_id = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        if self._last_id and db.execute("SELECT count(*) FROM spans").fetchone()[0] == 0:
            _SPANS.add_stored(db, "events", "time", 0)
        db.execute("PRAGMA analysis_limit=400")
        self._unanalyzed = ANALYZE_EVERY if self._last_id else 0

    async def close(self) -> None:
        await self._file.close()

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._file.write(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._file.read(fn)

    # -- writes ----------------------------------------------------------------------------

    async def append(self, events: Sequence[DomainEvent], dead_lettered: int = 0) -> Appended:
        """Store `events` in one durable transaction (duplicates dropped), and count
        `dead_lettered` messages in the same one. Returns once it is on disk."""
        result = await self._write(lambda db: self._append(db, events, dead_lettered))
        if result.stored:
            self._changed.set()
            self._changed = asyncio.Event()
        return result

    def _append(self, db: sqlite3.Connection, events: Sequence[DomainEvent],
                dead_lettered: int) -> Appended:
        rows = []
        for e in events:
            headers = json.dumps(e.headers, ensure_ascii=False, separators=(",", ":"))
            body = json.dumps(e.body, ensure_ascii=False, separators=(",", ":"))
            size = len(body) + len(headers) + len(e.type) + len(e.message_id) + 64
            rows.append((e.message_id, e.time, e.received, e.type, e.source, e.routing_key,
                         e.exchange, e.correlation_id, headers, body, size))
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.executemany(
                "INSERT OR IGNORE INTO events (message_id, time, received, type, source, "
                "routing_key, exchange, correlation_id, headers, body, size) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            stored = max(cur.rowcount, 0)
            duplicates = len(rows) - stored
            self._count(db, "duplicates", duplicates)
            self._count(db, "dead_lettered", dead_lettered)
            self._count(db, "stored", stored)
            last = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
            if stored:
                self._bytes += db.execute(
                    "SELECT coalesce(sum(size), 0) FROM events WHERE id > ?",
                    (self._last_id,)).fetchone()[0]
                _SPANS.add_stored(db, "events", "time", self._last_id)
            self._enforce(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._bytes = db.execute("SELECT coalesce(sum(size), 0) FROM events").fetchone()[0]
            raise
        self._last_id = last
        self._unanalyzed += stored
        if self._unanalyzed >= ANALYZE_EVERY:  # so the planner knows how selective each is
            db.execute("ANALYZE events")
            self._unanalyzed = 0
        return Appended(stored, duplicates, last)

    @staticmethod
    def _count(db: sqlite3.Connection, name: str, n: int) -> None:
        if n:
            db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) "
                       "DO UPDATE SET value = value + excluded.value", (name, n))

    def _enforce(self, db: sqlite3.Connection) -> None:
        """Drop events older than the age, then the oldest while over the size."""
        cutoff = self.clock() - self.retention.max_age
        cur = db.execute("DELETE FROM events WHERE time < ? RETURNING size", (cutoff,))
        removed = sum(r[0] for r in cur.fetchall())
        excess = self._bytes - removed - self.retention.max_bytes
        if excess > 0:
            # down to 99% of the size, so that the next appends do not each remove a few
            excess += self.retention.max_bytes // 100
            last: tuple[float, int] | None = None
            for at, id_, size in db.execute("SELECT time, id, size FROM events "
                                            "ORDER BY time, id"):
                excess -= size
                last = (at, id_)
                if excess <= 0:
                    break
            if last is not None:
                cur = db.execute("DELETE FROM events WHERE (time, id) <= (?, ?) "
                                 "RETURNING size", last)
                removed += sum(r[0] for r in cur.fetchall())
        if removed:
            self._bytes -= removed
            self._count(db, "expired", removed)

    # -- reads -----------------------------------------------------------------------------

    async def search(self, window: Window, limit: int = 100) -> list[DomainEvent]:
        """The newest `limit` events in the window, newest first."""
        def read(db: sqlite3.Connection) -> list[DomainEvent]:
            where, args = _where(window, _ids(db, window))
            sql = (f"SELECT {_COLUMNS} FROM events WHERE {where} "
                   "ORDER BY time DESC, id DESC LIMIT ?")
            return [_event(r) for r in db.execute(sql, (*args, _limit(limit)))]

        return await self._read(read)

    async def histogram(self, window: Window, interval: float) -> list[tuple[float, int]]:
        """(start, count) for every `interval` from `since` to `until`, empty ones too."""
        if window.since is None or window.until is None:
            raise ValueError("interval: needs since and until")
        if not interval > 0:
            raise ValueError("interval: must be more than 0 seconds")
        buckets = int((window.until - window.since) // interval) + 1
        if buckets > MAX_BUCKETS:
            raise ValueError(f"interval: {buckets} intervals between since and until, at most "
                             f"{MAX_BUCKETS} are answered (take a longer interval)")
        def read(db: sqlite3.Connection) -> dict[int, int]:
            where, args = _where(window, _ids(db, window))
            sql = (f"SELECT CAST((time - ?) / ? AS INTEGER) AS b, count(*) FROM events "
                   f"WHERE {where} GROUP BY b")
            return dict(db.execute(sql, (window.since, interval, *args)).fetchall())

        counts = await self._read(read)
        start = window.since
        return [(start + i * interval, counts.get(i, 0)) for i in range(buckets)
                if start + i * interval < window.until]

    async def get(self, event_id: int) -> DomainEvent | None:
        rows = await self._read(lambda db: db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchall())
        return _event(rows[0]) if rows else None

    async def around(self, event: DomainEvent, n: int
                     ) -> tuple[list[DomainEvent], list[DomainEvent]]:
        """The `n` events before and after `event` in time, each list in time order."""
        n = _limit(n)

        def read(db: sqlite3.Connection) -> tuple[list[DomainEvent], list[DomainEvent]]:
            before = [_event(r) for r in db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE (time, id) < (?, ?) "
                "ORDER BY time DESC, id DESC LIMIT ?", (event.time, event.id, n))]
            after = [_event(r) for r in db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE (time, id) > (?, ?) "
                "ORDER BY time, id LIMIT ?", (event.time, event.id, n))]
            return before[::-1], after

        return await self._read(read)

    async def newer(self, after_id: int, query: Query, limit: int = 1000
                    ) -> list[DomainEvent]:
        """Events stored after `after_id`, in the order they were stored (for follow)."""
        where, args = _where(Window(query), (after_id + 1, _NO_ID))
        sql = f"SELECT {_COLUMNS} FROM events WHERE id > ? AND {where} ORDER BY id LIMIT ?"
        return await self._read(lambda db: [_event(r) for r in db.execute(
            sql, (after_id, *args, _limit(limit)))])

    @property
    def last_id(self) -> int:
        return self._last_id

    async def wait_newer(self, after_id: int, timeout: float) -> bool:
        """Wait until something is stored after `after_id`, at most `timeout` seconds."""
        if self._last_id > after_id:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stats(self) -> dict[str, Any]:
        def read(db: sqlite3.Connection) -> dict[str, Any]:
            count, oldest, newest = db.execute(
                "SELECT count(*), min(time), max(time) FROM events").fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            return {"events": count, "oldest": oldest, "newest": newest,
                    "stored": counters.get("stored", 0),
                    "duplicates": counters.get("duplicates", 0),
                    "deadLettered": counters.get("dead_lettered", 0),
                    "expiredBytes": counters.get("expired", 0)}

        out = await self._read(read)
        out.update(bytes=self._bytes, maxBytes=self.retention.max_bytes,
                   maxAgeSeconds=self.retention.max_age)
        return out


def _limit(n: int) -> int:
    return max(0, min(int(n), MAX_LIMIT))


def _ids(db: sqlite3.Connection, window: Window) -> tuple[int, int]:
    """Bounds of the ids of the events in the window's time range, from the hours' id
    ranges (`spans`): a few rows, whatever the window."""
    q = window.query
    if not (q.text or q.fields) or (window.since is None and window.until is None):
        return 0, _NO_ID
    return _SPANS.ids(db, window.since, window.until)


def _where(window: Window, ids: tuple[int, int] = (0, _NO_ID)) -> tuple[str, list[Any]]:
    """The WHERE clause of a window. `ids` bounds the ids of its events: given to the
    full-text index, which then reads only that part of each word's list."""
    clauses = ["1"]
    args: list[Any] = []
    if window.since is not None:
        clauses.append("time >= ?")
        args.append(window.since)
    if window.until is not None:
        clauses.append("time < ?")
        args.append(window.until)
    q = window.query
    for column, glob in q.columns:
        op, operand = glob_sql(glob)
        clauses.append(f"{column} {op} ?")  # column names come from query.COLUMNS only
        args.append(operand)
    match = [fts_phrase(t) for t in q.text]
    for name, glob in q.fields:
        op, operand = glob_sql(glob)
        clauses.append(f"{_FIELD_TEXT} {op} ?")
        args += [json_path(name)] * 2 + [operand]
        if (words := fts_words(glob)) is not None:
            match.append(f"body : {words}")  # the index narrows, json_extract decides
    if match:
        clauses.append("id IN (SELECT rowid FROM events_text WHERE events_text MATCH ? "
                       "AND rowid BETWEEN ? AND ?)")
        args += [" AND ".join(match), *ids]
    return " AND ".join(clauses), args


def _event(row: tuple[Any, ...]) -> DomainEvent:
    (id_, message_id, at, received, kind, source, routing_key, exchange, correlation_id,
     headers, body) = row
    return DomainEvent(id=id_, message_id=message_id, time=at, received=received, type=kind,
                       source=source, routing_key=routing_key, exchange=exchange,
                       correlation_id=correlation_id, headers=_json(headers, {}),
                       body=_json(body, body))


def _json(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default
