"""How the log store reads a query: plans on the read-only connection, pure but for SQL.

Two plans, both reading only the query's time range and stopping once the answer is full:

- No full-text words: each task's lines come from the index (task, time) in time order (or
  backwards for `tail`), merged across the app's tasks by (time, id). `tail n` reads the last
  lines of each task and stops after n kept lines.
- Full-text words: per hour of time (the `spans` of ids stored for that hour), the FTS5
  index gives the ids that hold every word within that id range; the lines are read by id,
  checked (phrases, grep, where) and sorted. Hours are taken in order (or backwards for
  `tail`) until the answer is full.

Either plan examines at most `MAX_SCAN` lines: a query that would scan more is refused with
an error that says how to narrow it, never left to run for minutes.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from kade.logs.filters import LineFilter
from kade.logs.record import STREAMS, LogLine, LogQuery, Stream
from kade.sqlite_db import IdSpans

MAX_SCAN = 2_000_000  # lines one query may examine
HOUR_NS = 3600 * 10**9
SPANS = IdSpans("spans", HOUR_NS)
_FAR = 2**62
_IN_SQL = 500  # up to this many tasks are named in the SQL; more are filtered in Python
Row = tuple[int, int, int, int, int, str]  # time, id, ref, stream, seq, line


class QueryTooBroad(ValueError):
    """The query would examine more than MAX_SCAN lines."""


@dataclass(frozen=True)
class TaskInfo:
    task: str
    app: str
    version: str
    node: str


def task_refs(db: sqlite3.Connection, q: LogQuery) -> dict[int, TaskInfo]:
    """The tasks the query reads, by ref: those with lines in its time range."""
    where = ["task = ?" if q.task is not None else "app = ?", "lines > 0"]
    args: list[object] = [q.task if q.task is not None else q.app]
    if q.previous:
        where.append("ended IS NOT NULL")
    if q.since is not None:
        where.append("last >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append("first < ?")
        args.append(q.until)
    rows = db.execute("SELECT ref, task, app, version, node FROM tasks "
                      f"WHERE {' AND '.join(where)}", args).fetchall()
    return {r[0]: TaskInfo(r[1], r[2], r[3], r[4]) for r in rows}


def stream_codes(q: LogQuery) -> tuple[int, ...]:
    return tuple(STREAMS.index(s) for s in q.streams)


def run_query(db: sqlite3.Connection, q: LogQuery, flt: LineFilter
              ) -> tuple[list[LogLine], int]:
    """The query's lines in time order, and the last id stored when they were read."""
    db.execute("BEGIN")
    try:
        last_id = db.execute("SELECT coalesce(max(id), 0) FROM lines").fetchone()[0]
        refs = task_refs(db, q)
        n = q.tail if q.tail is not None else q.limit
        if not refs or n == 0:
            return [], last_id
        plan = _by_text if flt.index_words else _by_task
        rows = plan(db, q, flt, refs, n)
    finally:
        db.execute("COMMIT")
    if q.tail is not None:
        rows.reverse()
    return [as_line(r, refs) for r in rows], last_id


def as_line(r: Row, refs: dict[int, TaskInfo]) -> LogLine:
    info = refs[r[2]]
    stream: Stream = STREAMS[r[3]]
    return LogLine(r[0], info.app, info.task, info.version, info.node, stream, r[5], r[4])


def _bounds(q: LogQuery) -> tuple[int, int]:
    return (q.since if q.since is not None else -_FAR,
            q.until if q.until is not None else _FAR)


def _by_task(db: sqlite3.Connection, q: LogQuery, flt: LineFilter,
             refs: dict[int, TaskInfo], n: int) -> list[Row]:
    since, until = _bounds(q)
    backwards = q.tail is not None
    order = "DESC" if backwards else "ASC"
    codes = stream_codes(q)
    stream_sql = "" if len(codes) == len(STREAMS) else f" AND stream = {codes[0]}"
    sql = (f"SELECT time, id, ref, stream, seq, line FROM lines WHERE ref = ? AND time >= ? "
           f"AND time < ?{stream_sql} ORDER BY time {order}, id {order}")

    def rows(ref: int) -> Iterator[Row]:
        yield from db.execute(sql, (ref, since, until))

    merged = heapq.merge(*(rows(ref) for ref in refs), reverse=backwards)
    return _take(merged, flt, n)


def _take(rows: Iterator[Row], flt: LineFilter, n: int) -> list[Row]:
    out: list[Row] = []
    keep = flt.keep
    for scanned, row in enumerate(rows, 1):
        if scanned > MAX_SCAN:
            raise _too_broad()
        if flt.everything or keep(row[5]):
            out.append(row)
            if len(out) >= n:
                break
    return out


def _too_broad() -> QueryTooBroad:
    return QueryTooBroad(f"query: examined {MAX_SCAN:,} lines without filling the answer; "
                         "narrow it with since/until, a task, a stream or full-text words")


def _by_text(db: sqlite3.Connection, q: LogQuery, flt: LineFilter,
             refs: dict[int, TaskInfo], n: int) -> list[Row]:
    since, until = _bounds(q)
    backwards = q.tail is not None
    codes = stream_codes(q)
    where = ["lines_text MATCH ?", "lines_text.rowid BETWEEN ? AND ?",
             "l.time >= ?", "l.time < ?"]
    if len(codes) < len(STREAMS):
        where.append(f"l.stream = {codes[0]}")
    in_sql = len(refs) <= _IN_SQL
    if in_sql:
        where.append(f"l.ref IN ({','.join(str(r) for r in refs)})")
    sql = ("SELECT l.time, l.id, l.ref, l.stream, l.seq, l.line FROM lines_text "
           f"CROSS JOIN lines AS l ON l.id = lines_text.rowid WHERE {' AND '.join(where)}")
    match = flt.fts_match()
    out: list[Row] = []
    scanned = 0
    for span, low, high in SPANS.between(db, q.since, q.until, descending=backwards):
        lo = max(since, span * HOUR_NS)
        hi = min(until, (span + 1) * HOUR_NS)
        found: list[Row] = []
        for row in db.execute(sql, (match, low, high, lo, hi)):
            scanned += 1
            if scanned > MAX_SCAN:
                raise _too_broad()
            if (in_sql or row[2] in refs) and flt.keep(row[5]):
                found.append(row)
        found.sort(reverse=backwards)
        out += found[:n - len(out)]
        if len(out) >= n:
            break
    return out


def newer(db: sqlite3.Connection, q: LogQuery, flt: LineFilter, after_id: int, batch: int
          ) -> tuple[list[LogLine], int]:
    """Lines stored after `after_id` that the query keeps, in the order they were stored
    (for follow; tasks that appeared since are included), and the last id looked at."""
    since, until = _bounds(q)
    codes = stream_codes(q)
    where = ["l.id > ?", "t.task = ?" if q.task is not None else "t.app = ?",
             "l.time >= ?", "l.time < ?"]
    if q.previous:
        where.append("t.ended IS NOT NULL")
    if len(codes) < len(STREAMS):
        where.append(f"l.stream = {codes[0]}")
    db.execute("BEGIN")
    try:  # one snapshot: the last id looked at is the last of what was read
        rows = db.execute(
            "SELECT l.time, l.id, l.ref, l.stream, l.seq, l.line, t.task, t.app, t.version, "
            f"t.node FROM lines AS l CROSS JOIN tasks AS t ON t.ref = l.ref "
            f"WHERE {' AND '.join(where)} ORDER BY l.id LIMIT ?",
            (after_id, q.task if q.task is not None else q.app, since, until, batch)).fetchall()
        if len(rows) == batch:
            last = rows[-1][1]
        else:
            top = db.execute("SELECT coalesce(max(id), 0) FROM lines").fetchone()[0]
            last = max(after_id, top)
    finally:
        db.execute("COMMIT")
    out = [LogLine(r[0], r[7], r[6], r[8], r[9], STREAMS[r[3]], r[5], r[4])
           for r in rows if flt.everything or flt.keep(r[5])]
    return out, last
