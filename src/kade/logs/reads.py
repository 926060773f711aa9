"""How the log store reads a query: plans on the read-only connection.

Two plans, both reading only the query's time range and stopping once the answer is full:

- No full-text words: each task's chunks come from the index (task, first) in time order —
  or (task, last) backwards for `tail` — and their lines are merged across the app's tasks
  by time. `tail n` reads the last chunks of each task and stops after n kept lines. A grep
  is first searched in a chunk's whole text: a chunk with no match is not split into lines.
- Full-text words: per hour of time (the `spans` of chunk ids stored for that hour), the
  FTS5 index gives the chunks that hold every word within that id range; their lines are
  checked (whole words, phrases, grep, where) and sorted. Hours are taken in order (or
  backwards for `tail`) until the answer is full.

Either plan examines at most `MAX_SCAN` lines: a query that would scan more is refused with
an error that says how to narrow it, never left to run for minutes.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kade.logs import text_index
from kade.logs.chunks import MAX_SPAN, SPANS, Row, as_line, decode
from kade.logs.filters import LineFilter
from kade.logs.record import STREAMS, LogLine, LogQuery

MAX_SCAN = 2_000_000  # lines one query may examine
HOUR_NS = 3600 * 10**9
_FAR = 2**62
_IN_SQL = 500  # up to this many tasks are named in the SQL; more are filtered in Python
_CHUNK = "id, ref, n, meta, text"


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


class _Scan:
    """Lines of chunks in the query's range and streams, counted against MAX_SCAN."""

    def __init__(self, q: LogQuery, flt: LineFilter) -> None:
        self.since = q.since if q.since is not None else -_FAR
        self.until = q.until if q.until is not None else _FAR
        self.codes = {STREAMS.index(s) for s in q.streams}
        self.flt = flt
        self.scanned = 0

    def rows(self, cid: int, ref: int, n: int, meta: bytes, text: str) -> list[Row]:
        """The chunk's lines that the query keeps."""
        self.scanned += n
        if self.scanned > MAX_SCAN:
            raise QueryTooBroad(
                f"query: examined {MAX_SCAN:,} lines without filling the answer; narrow it "
                "with since/until, a task, a stream or full-text words")
        flt = self.flt
        if flt.find is None:
            return self.kept(decode(cid, ref, n, meta, text))
        found = flt.find(text)
        if not found:
            return []
        return self._passing(decode(cid, ref, n, meta, text, found), flt.recheck)

    def kept(self, rows: list[Row]) -> list[Row]:
        """`rows` that the query keeps."""
        return self._passing(rows, None if self.flt.everything else self.flt.keep)

    def _passing(self, rows: list[Row], check: Callable[[str], bool] | None) -> list[Row]:
        """`rows` in range, of the streams, that pass `check`."""
        since, until, codes = self.since, self.until, self.codes
        out = [r for r in rows if since <= r[0] < until and r[4] in codes]
        if check is not None:
            out = [r for r in out if check(r[6])]
        return out


Marks = dict[tuple[int, int], tuple[int, int]]  # (task ref, stream) → last (time, seq) seen


@dataclass
class Position:
    """Where a follow is: the last chunk id it read, and per stream the last line stored
    when it read (a chunk stored again with more lines holds lines it has seen)."""

    last_id: int
    marks: Marks


def run_query(db: sqlite3.Connection, q: LogQuery, flt: LineFilter
              ) -> tuple[list[LogLine], Position]:
    """The query's lines in time order, and where a follow of it goes on from."""
    db.execute("BEGIN")
    try:
        last_id = db.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0]
        marks = {(r[0], r[1]): (r[2], r[3]) for r in db.execute(
            "SELECT s.ref, s.stream, s.time, s.seq FROM streams AS s JOIN tasks AS t "
            f"ON t.ref = s.ref WHERE t.{'task' if q.task is not None else 'app'} = ?",
            (q.task if q.task is not None else q.app,))}
        position = Position(last_id, marks)
        refs = task_refs(db, q)
        n = q.tail if q.tail is not None else q.limit
        if not refs or n == 0:
            return [], position
        scan = _Scan(q, flt)
        rows = (_by_text if flt.index_words else _by_task)(db, q, scan, refs, n)
    finally:
        db.execute("COMMIT")
    if q.tail is not None:
        rows.reverse()
    out = []
    for r in rows:
        t = refs[r[3]]
        out.append(as_line(r, t.task, t.app, t.version, t.node))
    return out, position


def _by_task(db: sqlite3.Connection, q: LogQuery, scan: _Scan,
             refs: dict[int, TaskInfo], n: int) -> list[Row]:
    backwards = q.tail is not None
    tasks = [_task_lines(db, ref, scan, backwards) for ref in refs]
    out: list[Row] = []
    for row in heapq.merge(*tasks, reverse=backwards):
        out.append(row)
        if len(out) >= n:
            break
    return out


def _task_lines(db: sqlite3.Connection, ref: int, scan: _Scan, backwards: bool
                ) -> Iterator[Row]:
    """A task's kept lines in time order (or backwards). Chunks may overlap in time (a
    stream flushed late): a line is given once no chunk still to read can hold an earlier
    one (a later one, backwards)."""
    since, until = scan.since, scan.until
    heap: list[tuple[int, int, int, Row]] = []
    if not backwards:
        chunks = db.execute(
            f"SELECT first, {_CHUNK} FROM chunks WHERE ref = ? AND first >= ? AND first < ? "
            "AND last >= ? ORDER BY first, id",
            (ref, max(since - MAX_SPAN, -_FAR), until, since))
        for first, cid, ref_, n, meta, text in chunks:
            while heap and heap[0][0] < first:
                yield heapq.heappop(heap)[3]
            for r in scan.rows(cid, ref_, n, meta, text):
                heapq.heappush(heap, (r[0], r[1], r[2], r))
        while heap:
            yield heapq.heappop(heap)[3]
        return
    chunks = db.execute(
        f"SELECT last, {_CHUNK} FROM chunks WHERE ref = ? AND last >= ? AND last < ? "
        "AND first < ? ORDER BY last DESC, id DESC",
        (ref, since, min(until + MAX_SPAN, _FAR), until))
    for last, cid, ref_, n, meta, text in chunks:
        while heap and -heap[0][0] > last:
            yield heapq.heappop(heap)[3]
        for r in scan.rows(cid, ref_, n, meta, text):
            heapq.heappush(heap, (-r[0], -r[1], -r[2], r))
    while heap:
        yield heapq.heappop(heap)[3]


def _by_text(db: sqlite3.Connection, q: LogQuery, scan: _Scan,
             refs: dict[int, TaskInfo], n: int) -> list[Row]:
    backwards = q.tail is not None
    where = ["{t} MATCH ?", "{t}.rowid BETWEEN ? AND ?", "c.last >= ?", "c.first < ?"]
    in_sql = len(refs) <= _IN_SQL
    if in_sql:
        where.append(f"c.ref IN ({','.join(str(r) for r in refs)})")
    match = scan.flt.fts_match()
    apps = sorted({info.app for info in refs.values()})
    out: list[Row] = []
    for span, low, high in SPANS.between(db, q.since, q.until, descending=backwards):
        lo = max(scan.since, span * HOUR_NS)
        hi = min(scan.until, (span + 1) * HOUR_NS)
        found: list[Row] = []
        for app in apps:
            for part, part_low, part_high in text_index.parts(db, app, low, high):
                t = text_index.table(part)
                sql = (f"SELECT c.id, c.ref, c.n, c.meta, c.text FROM {t} CROSS JOIN chunks "
                       f"AS c ON c.id = {t}.rowid WHERE {' AND '.join(where).format(t=t)}")
                args = (match, max(low, part_low), min(high, part_high), lo, hi)
                for cid, ref, count, meta, text in db.execute(sql, args):
                    if in_sql or ref in refs:
                        found += [r for r in scan.rows(cid, ref, count, meta, text)
                                  if lo <= r[0] < hi]
                    if len(found) > 2 * (n - len(out)) + 10_000:  # keep only what may answer
                        found = _best(found, n - len(out), backwards)
        out += _best(found, n - len(out), backwards)
        if len(out) >= n:
            break
    return out


def _best(rows: list[Row], k: int, backwards: bool) -> list[Row]:
    """The first `k` of `rows` in time order (the last `k`, backwards), in that order."""
    return heapq.nlargest(k, rows) if backwards else heapq.nsmallest(k, rows)


def newer(db: sqlite3.Connection, q: LogQuery, flt: LineFilter, at: Position, batch: int
          ) -> list[LogLine]:
    """The lines stored since `at` that the query keeps (for follow; tasks that appeared
    since are included), in time order within what was read; `at` moves past them."""
    scan = _Scan(q, flt)
    where = ["c.id > ?", "t.task = ?" if q.task is not None else "t.app = ?"]
    if q.previous:
        where.append("t.ended IS NOT NULL")
    db.execute("BEGIN")
    try:  # one snapshot: the last id looked at is the last of what was read
        found = db.execute(
            "SELECT c.id, c.ref, c.n, c.meta, c.text, t.task, t.app, t.version, t.node "
            "FROM chunks AS c CROSS JOIN tasks AS t ON t.ref = c.ref "
            f"WHERE {' AND '.join(where)} ORDER BY c.id LIMIT ?",
            (at.last_id, q.task if q.task is not None else q.app, batch)).fetchall()
        if len(found) == batch:
            last = found[-1][0]
        else:
            top = db.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0]
            last = max(at.last_id, top)
    finally:
        db.execute("COMMIT")
    at.last_id = last
    marks = at.marks
    lines: list[tuple[Row, LogLine]] = []
    for cid, ref, count, meta, text, task, app, version, node in found:
        fresh = []
        for r in decode(cid, ref, count, meta, text):
            key = (ref, r[4])
            mark = marks.get(key)
            if mark is None or (r[0], r[5]) > mark:
                fresh.append(r)
        for r in fresh:
            key = (ref, r[4])
            marks[key] = max(marks.get(key, (r[0], r[5])), (r[0], r[5]))
        lines += [(r, as_line(r, task, app, version, node)) for r in scan.kept(fresh)]
    lines.sort(key=lambda x: x[0][:3])
    return [ln for _, ln in lines]
