"""The node's metrics: series and their samples, embedded and bounded.

Layout, as Prometheus' own TSDB in spirit, on SQLite:
- **series**: one row per label set; all label sets also live in memory (a node has a few
  thousand), so a selector is matched without reading the disk;
- **head**: the samples of the current hour of each series, in memory, and
  appended to a write-ahead file (`metrics.wal`, fsynced per batch) so that a `kill -9`
  loses nothing that was appended;
- **chunks**: a closed hour of one series is one row (the gaps between times and the
  values, byte-shuffled, zlib): a day of one series is 24 rows, a range query reads only
  its rows;
- **rollups**: when a span closes, the last sample of each of its minutes is kept too, for
  much longer: queries beyond the raw retention read those.

Retention: raw samples for a day, rollups for 30 days by default (`Retention`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import threading
import time
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kade.metrics.series import Labels, Matcher, Series, labels_of, matches_all

DB_FILE = "metrics.db"
WAL_FILE = "metrics.wal"
SPAN = 60 * 60 * 1000  # ms of samples per chunk row: a day of a series is 24 rows
MINUTE = 60_000
_WAL_SAMPLE = struct.Struct("<Bqqd")  # kind 1: (series id, time ms, value)
_WAL_SERIES = struct.Struct("<BqI")  # kind 2: (series id, length of the labels' JSON) + JSON

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, labels TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS chunks (
    series INTEGER NOT NULL, start INTEGER NOT NULL, last INTEGER NOT NULL,
    count INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (series, start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    series INTEGER NOT NULL, start INTEGER NOT NULL, last INTEGER NOT NULL,
    count INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (series, start)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_last ON chunks(last);
CREATE INDEX IF NOT EXISTS rollups_last ON rollups(last);
"""


@dataclass(frozen=True)
class Retention:
    raw: float = 24 * 3600.0  # seconds of raw samples
    rollups: float = 30 * 24 * 3600.0  # seconds of 1-minute rollups


def _shuffle(data: bytes, width: int) -> bytes:
    """The values' first bytes, then their second bytes...: sign, exponent and high mantissa
    bytes of neighbouring samples are alike, so zlib finds them (the shuffle of Blosc)."""
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, width).T.tobytes()


def _unshuffle(data: bytes, width: int) -> bytes:
    return np.frombuffer(data, dtype=np.uint8).reshape(width, -1).T.tobytes()


def encode(times: Sequence[int], values: Sequence[float]) -> bytes:
    """The first time, the gaps between times (uint32 ms) and the values (float64), each
    byte-shuffled, then zlib: a steady gauge costs about a byte a sample, a busy counter 8."""
    gaps = np.diff(np.asarray(times, dtype=np.int64)).astype("<u4").tobytes()
    return zlib.compress(struct.pack("<q", times[0]) + _shuffle(gaps, 4)
                         + _shuffle(np.asarray(values, dtype="<f8").tobytes(), 8), 6)


def decode_arrays(data: bytes, count: int) -> tuple[Any, Any]:
    """(times int64, values float64) numpy arrays of one row."""
    raw = zlib.decompress(data)
    (first,) = struct.unpack_from("<q", raw)
    gaps = np.frombuffer(_unshuffle(raw[8:8 + 4 * (count - 1)], 4), dtype="<u4")
    times = np.empty(count, dtype=np.int64)
    times[0] = first
    np.cumsum(gaps, out=times[1:])
    times[1:] += first
    values = np.frombuffer(_unshuffle(raw[8 + 4 * (count - 1):], 8), dtype="<f8")
    return times, values


def decode(data: bytes, count: int) -> tuple[list[int], list[float]]:
    times, values = decode_arrays(data, count)
    return times.tolist(), values.tolist()


def rollup(times: Sequence[int], values: Sequence[float]) -> tuple[list[int], list[float]]:
    """The last sample of each minute: what queries beyond the raw retention read."""
    out_t: list[int] = []
    out_v: list[float] = []
    for t, v in zip(times, values, strict=True):
        minute = t // MINUTE
        if out_t and out_t[-1] // MINUTE == minute:
            out_t[-1], out_v[-1] = t, v
        else:
            out_t.append(t)
            out_v.append(v)
    return out_t, out_v


class TSDB:
    """Writes (`append`, `flush`, `enforce_retention`) come from one thread at a time;
    `select` and the label lookups may run in any thread (each gets its own connection)."""

    def __init__(self, data_dir: Path, retention: Retention | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(data_dir)
        self.retention = retention or Retention()
        self.clock = clock
        self._labels: dict[int, Labels] = {}
        self._ids: dict[Labels, int] = {}
        # a series' samples of the current span: compact arrays (16 bytes a sample)
        self._head: dict[int, tuple[array[int], array[float]]] = {}
        self._lock = threading.Lock()  # head and series, between the writer and readers
        self._local = threading.local()
        self._db: sqlite3.Connection | None = None
        self._wal: int | None = None

    # -- opening ---------------------------------------------------------------------------

    def open(self) -> TSDB:
        self.dir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.dir / DB_FILE, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a chunk is on disk before the WAL forgets it
        db.executescript(_SCHEMA)
        for id_, text in db.execute("SELECT id, labels FROM series"):
            labels = tuple(tuple(kv) for kv in json.loads(text))
            self._labels[id_] = labels
            self._ids[labels] = id_
        self._db = db
        self._replay()
        self._wal = os.open(self.dir / WAL_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self

    def _replay(self) -> None:
        """The head as it was: samples the WAL holds and the chunks do not."""
        path = self.dir / WAL_FILE
        if not path.exists():
            return
        raw = path.read_bytes()
        at = 0
        while at < len(raw):
            kind = raw[at]
            if kind == 1 and at + _WAL_SAMPLE.size <= len(raw):
                _, sid, t, v = _WAL_SAMPLE.unpack_from(raw, at)
                at += _WAL_SAMPLE.size
                if sid in self._labels:
                    self._into_head(sid, t, v)
            elif kind == 2 and at + _WAL_SERIES.size <= len(raw):
                _, sid, size = _WAL_SERIES.unpack_from(raw, at)
                at += _WAL_SERIES.size + size
                if at <= len(raw) and sid not in self._labels:
                    labels = labels_of(dict(json.loads(raw[at - size:at])))
                    self._add_series_row(sid, labels)
            else:
                break  # a record cut by the crash: it was never acknowledged
        self._flush_closed(force=False)

    def close(self) -> None:
        if self._db is not None:
            self.flush(force=True)
            self._db.close()
            self._db = None
        if self._wal is not None:
            os.close(self._wal)
            self._wal = None

    # -- writes ----------------------------------------------------------------------------

    def append(self, samples: Iterable[tuple[dict[str, str], int, float]]) -> int:
        """Samples (labels, time ms, value) into the head, durable when this returns."""
        records = bytearray()
        n = 0
        with self._lock:
            for labels, t, v in samples:
                key = labels_of(labels)
                sid = self._ids.get(key)
                if sid is None:
                    sid = self._new_series(key)
                    text = json.dumps(key, separators=(",", ":")).encode()
                    records += _WAL_SERIES.pack(2, sid, len(text)) + text
                if self._into_head(sid, t, v):
                    records += _WAL_SAMPLE.pack(1, sid, t, v)
                    n += 1
        if records and self._wal is not None:
            os.write(self._wal, records)
            os.fsync(self._wal)
        return n

    def _new_series(self, labels: Labels) -> int:
        assert self._db is not None
        sid = self._db.execute("INSERT INTO series (labels) VALUES (?)",
                               (json.dumps(labels, separators=(",", ":")),)).lastrowid
        assert sid is not None
        self._labels[sid] = labels
        self._ids[labels] = sid
        return sid

    def _add_series_row(self, sid: int, labels: Labels) -> None:
        assert self._db is not None
        self._db.execute("INSERT OR IGNORE INTO series (id, labels) VALUES (?, ?)",
                         (sid, json.dumps(labels, separators=(",", ":"))))
        self._labels[sid] = labels
        self._ids[labels] = sid

    def _into_head(self, sid: int, t: int, v: float) -> bool:
        times, values = self._head.setdefault(sid, (array("q"), array("d")))
        if times and t <= times[-1]:
            return False  # out of order or a repeat: Prometheus drops those too
        times.append(t)
        values.append(v)
        return True

    def flush(self, force: bool = False) -> int:
        """Closed spans of the head into chunk and rollup rows (all of it with `force`), then
        a new WAL with what stays in the head. Returns the chunks written."""
        with self._lock:
            written = self._flush_closed(force)
            if written:
                self._rewrite_wal()
        return written

    def _flush_closed(self, force: bool) -> int:
        assert self._db is not None
        now_span = int(self.clock() * 1000) // SPAN
        rows = []
        for sid, (times, values) in list(self._head.items()):
            limit = len(times) if force else bisect_left(times, now_span * SPAN)
            i = 0
            while i < limit:  # one row per span
                j = min(limit, bisect_left(times, (times[i] // SPAN + 1) * SPAN, i))
                ct, cv = times[i:j], values[i:j]
                rt, rv = rollup(ct, cv)
                rows.append((sid, ct[0], ct[-1], len(ct), encode(ct, cv),
                             rt[0], rt[-1], len(rt), encode(rt, rv)))
                i = j
            del times[:limit], values[:limit]
            if not times:
                del self._head[sid]
        if rows:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO chunks (series, start, last, count, data) "
                "VALUES (?, ?, ?, ?, ?)", [r[:5] for r in rows])
            self._db.executemany(
                "INSERT OR REPLACE INTO rollups (series, start, last, count, data) "
                "VALUES (?, ?, ?, ?, ?)", [(r[0], *r[5:]) for r in rows])
            self._db.execute("COMMIT")
        return len(rows)

    def _rewrite_wal(self) -> None:
        tmp = self.dir / (WAL_FILE + ".new")
        with open(tmp, "wb") as f:
            for sid, (times, values) in self._head.items():
                for t, v in zip(times, values, strict=True):
                    f.write(_WAL_SAMPLE.pack(1, sid, t, v))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / WAL_FILE)
        if self._wal is not None:
            os.close(self._wal)
        self._wal = os.open(self.dir / WAL_FILE, os.O_WRONLY | os.O_APPEND)

    async def run(self, flush_every: float = 60.0, retention_every: float = 600.0) -> None:
        """Close the spans that ended (and forget what is past its retention) on a timer."""
        import asyncio

        last_retention = 0.0
        while True:
            await asyncio.sleep(flush_every)
            await asyncio.to_thread(self.flush)
            if time.monotonic() - last_retention >= retention_every:
                last_retention = time.monotonic()
                await asyncio.to_thread(self.enforce_retention)

    def enforce_retention(self) -> int:
        """Rows past their retention removed; returns how many."""
        assert self._db is not None
        now = self.clock() * 1000
        removed = self._db.execute("DELETE FROM chunks WHERE last < ?",
                                   (int(now - self.retention.raw * 1000),)).rowcount
        removed += self._db.execute("DELETE FROM rollups WHERE last < ?",
                                    (int(now - self.retention.rollups * 1000),)).rowcount
        return removed

    # -- reads -----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self.dir / DB_FILE}?mode=ro", uri=True,
                                 check_same_thread=False)
            self._local.db = db
        return db

    def matching(self, matchers: Sequence[Matcher]) -> dict[int, Labels]:
        with self._lock:
            known = dict(self._labels)
        return {sid: labels for sid, labels in known.items() if matches_all(labels, matchers)}

    def select(self, matchers: Sequence[Matcher], low: int, high: int) -> Iterable[Series]:
        return [Series(labels, times.tolist(), values.tolist())
                for labels, times, values in self.select_arrays(matchers, low, high)]

    def select_arrays(self, matchers: Sequence[Matcher], low: int,
                      high: int) -> list[tuple[Labels, Any, Any]]:
        """`select` as numpy arrays (kade.metrics.columnar reads them so)."""
        found = self.matching(matchers)
        if not found:
            return []
        db = self._reader()
        out = []
        raw_from = int(self.clock() * 1000 - self.retention.raw * 1000)
        for sid, labels in sorted(found.items(), key=lambda kv: kv[1]):
            parts: list[tuple[Any, Any]] = []
            if low < raw_from:  # older than the raw samples: the minutes' last values
                parts += [decode_arrays(data, count) for data, count in db.execute(
                    "SELECT data, count FROM rollups WHERE series = ? AND last >= ? "
                    "AND start <= ? ORDER BY start", (sid, low, min(high, raw_from)))]
            raw = [decode_arrays(data, count) for data, count in db.execute(
                "SELECT data, count FROM chunks WHERE series = ? AND last >= ? "
                "AND start <= ? ORDER BY start", (sid, low, high))]
            if raw and parts:  # the raw samples win where both are
                first_raw = raw[0][0][0]
                parts = [(t[t < first_raw], v[t < first_raw]) for t, v in parts]
            parts += raw
            with self._lock:
                head = self._head.get(sid)
                if head is not None and head[0]:
                    parts.append((np.asarray(head[0], dtype=np.int64),
                                  np.asarray(head[1], dtype=np.float64)))
            if not parts:
                continue
            times = np.concatenate([t for t, _ in parts])
            values = np.concatenate([v for _, v in parts])
            if len(times) > 1 and (np.diff(times) <= 0).any():  # a chunk and the head overlap
                keep = np.concatenate(([True], np.diff(times) > 0))
                times, values = times[keep], values[keep]
            if len(times):
                out.append((labels, times, values))
        return out

    def latest(self, since_ms: int) -> list[tuple[Labels, int, float]]:
        """The last sample of every series that has one at or after `since_ms` (/metrics)."""
        with self._lock:
            return [(self._labels[sid], times[-1], values[-1])
                    for sid, (times, values) in self._head.items()
                    if times and times[-1] >= since_ms]

    def label_names(self, matchers: Sequence[Matcher] = ()) -> list[str]:
        return sorted({k for labels in self.matching(matchers).values() for k, _ in labels})

    def label_values(self, name: str, matchers: Sequence[Matcher] = ()) -> list[str]:
        return sorted({v for labels in self.matching(matchers).values()
                       for k, v in labels if k == name})

