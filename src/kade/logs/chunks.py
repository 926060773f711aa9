"""Chunks: how the log store keeps lines. One chunk holds up to `MAX_LINES` lines of one task
(both streams) from one append, sorted by time, spanning at most `MAX_SPAN` of time.

A chunk is one row (its text: the lines joined by newlines; its meta: each line's time, seq
and stream packed) and one document of the full-text index: a batch of a thousand lines
costs a few dozen rows and index documents instead of a thousand of each, which is most of
the cost of appending. A query decodes the chunks of its range and filters their lines.

A task that writes little makes chunks of a line or two; `compact` (on the store's timer)
merges a task's small chunks into full ones, stored again under new ids (a follow knows the
lines it has seen by their stream's (time, seq)). Merging on every append instead would
re-index a growing chunk again and again: measured, it tripled the cost at 1,000 lines/s.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from kade.logs.record import MAX_LINE, STREAMS, LogLine
from kade.sqlite_db import IdSpans

MAX_LINES = 64  # lines of one chunk
MAX_BYTES = 256 * 1024  # text of one chunk (one line may be longer: it is alone)
MAX_SPAN = 600 * 10**9  # ns of time one chunk spans
SPANS = IdSpans("spans", 3600 * 10**9)  # chunk ids per hour of line time
COMPACT_BATCH = 5_000  # small chunks read by one step of `compact`
CUT_MARK = " [kade: line cut, {} bytes]"
LINE_OVERHEAD = 48  # bytes counted per line beside its text (its share of rows and indexes)

# a line as read back: (time, chunk id, index in chunk, task ref, stream, seq, text); the
# first three order lines the same way everywhere
Row = tuple[int, int, int, int, int, int, str]
# a line being stored: (time, stream, seq, text, accounted bytes)
Entry = tuple[int, int, int, str, int]


def split(entries: list[Entry]) -> Iterable[list[Entry]]:
    """`entries` of one task sorted by time, cut into chunks."""
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    chunk: list[Entry] = []
    size = 0
    for e in entries:
        if chunk and (len(chunk) >= MAX_LINES or size + len(e[3]) > MAX_BYTES
                      or e[0] - chunk[0][0] > MAX_SPAN):
            yield chunk
            chunk, size = [], 0
        chunk.append(e)
        size += len(e[3]) + 1
    if chunk:
        yield chunk


def encode(chunk: list[Entry]) -> tuple[bytes, str]:
    """(meta, text) of a chunk."""
    meta = array("q", [e[0] for e in chunk])
    meta.extend(e[2] for e in chunk)
    return meta.tobytes() + bytes(e[1] for e in chunk), "\n".join(e[3] for e in chunk)


def size_of(text: str) -> int:
    """The bytes a line is accounted for (retention)."""
    return (len(text) if text.isascii() else len(text.encode())) + LINE_OVERHEAD


def entries(n: int, meta: bytes, text: str) -> list[Entry]:
    """A stored chunk's lines as they were given to `encode`."""
    return [(r[0], r[4], r[5], r[6], size_of(r[6])) for r in decode(0, 0, n, meta, text)]


def decode(cid: int, ref: int, n: int, meta: bytes, text: str,
           only: Iterable[int] | None = None) -> list[Row]:
    """The chunk's lines (or those at the indexes `only`)."""
    numbers = array("q")
    numbers.frombytes(meta[:16 * n])
    streams = meta[16 * n:]
    lines = text.split("\n")
    return [(numbers[i], cid, i, ref, streams[i], numbers[n + i], lines[i])
            for i in (range(n) if only is None else only)]


def as_line(row: Row, task: str, app: str, version: str, node: str) -> LogLine:
    return LogLine(row[0], app, task, version, node, STREAMS[row[4]], row[6], row[5])


ChunkRow = tuple[int, int, int, int, int, int, bytes, str]  # the columns of `chunks`


def row(cid: int, ref: int, chunk: list[Entry]) -> ChunkRow:
    meta, text = encode(chunk)
    return (cid, ref, chunk[0][0], chunk[-1][0], len(chunk), sum(e[4] for e in chunk), meta,
            text)


def insert(db: sqlite3.Connection, rows: list[ChunkRow]) -> None:
    """Store chunks and their hours' id spans (a chunk spans less than an hour: its first
    and last line name every hour it is in). The full-text index is the caller's."""
    db.executemany("INSERT INTO chunks (id, ref, first, last, n, bytes, meta, text) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    SPANS.add(db, [(r[2], r[0]) for r in rows] + [(r[3], r[0]) for r in rows])


@dataclass(frozen=True)
class Compacted:
    merged: int  # chunks that went into bigger ones
    upto: int  # chunks up to this id were looked at
    next_id: int
    more: bool
    rows: list[ChunkRow]  # the chunks stored


def compact(db: sqlite3.Connection, after: int, next_id: int) -> Compacted:
    """Merge runs of a task's small chunks stored after chunk `after` (by first line)."""
    small = db.execute(
        "SELECT id, ref, first, last, n, meta, text FROM chunks WHERE id > ? AND n < ? "
        "ORDER BY id LIMIT ?", (after, MAX_LINES // 2, COMPACT_BATCH)).fetchall()
    if not small:
        return Compacted(0, max(after, next_id - 1), next_id, False, [])
    by_task: dict[int, list[tuple[int, int, int, int, bytes, str]]] = {}
    for cid, ref, first, last, n, meta, text in small:
        by_task.setdefault(ref, []).append((first, cid, last, n, meta, text))
    gone: list[tuple[int]] = []
    rows: list[ChunkRow] = []
    for ref, found in by_task.items():
        found.sort()
        run: list[tuple[int, int, int, int, bytes, str]] = []
        lines = size = 0
        for c in found + [(2**62, 0, 2**62, MAX_LINES, b"", "")]:  # the end closes the last
            if run and (lines + c[3] > MAX_LINES or c[2] - run[0][0] > MAX_SPAN
                        or size + len(c[5]) > MAX_BYTES):
                if len(run) > 1:
                    gone += [(r[1],) for r in run]
                    merged = [e for r in run for e in entries(r[3], r[4], r[5])]
                    for chunk in split(merged):
                        rows.append(row(next_id, ref, chunk))
                        next_id += 1
                run, lines, size = [], 0, 0
            run.append(c)
            lines += c[3]
            size += len(c[5])
    if gone:
        db.executemany("DELETE FROM chunks WHERE id = ?", gone)
        insert(db, rows)
    more = len(small) == COMPACT_BATCH
    upto = small[-1][0] if more else max(after, next_id - 1)
    return Compacted(len(gone), upto, next_id, more, rows)


def cut(line: str) -> tuple[str, int]:
    """The text stored for `line` and the bytes it had: at most MAX_LINE bytes of it, marked
    when cut; bytes that are not UTF-8 (decoded with surrogateescape) count as they were and
    are stored as U+FFFD."""
    if "\n" in line:  # a chunk's lines are joined by newlines
        line = line.replace("\n", "\\n")
    if line.isascii():
        if len(line) <= MAX_LINE:
            return line, len(line)
        return line[:MAX_LINE] + CUT_MARK.format(len(line)), len(line)
    try:
        raw = line.encode()
        text = line
    except UnicodeEncodeError:
        raw = line.encode("utf-8", "surrogateescape") if _escaped_only(line) \
            else line.encode("utf-8", "replace")
        text = raw.decode("utf-8", "replace")
    if len(raw) <= MAX_LINE:
        return text, len(raw)
    return raw[:MAX_LINE].decode("utf-8", "ignore") + CUT_MARK.format(len(raw)), len(raw)


def _escaped_only(line: str) -> bool:
    try:
        line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True
