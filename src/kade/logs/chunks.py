"""Chunks: how the log store keeps lines. One chunk holds up to `MAX_LINES` lines of one task
(both streams) from one append, sorted by time, spanning at most `MAX_SPAN` of time.

A chunk is one row (its text: the lines joined by newlines; its meta: each line's time, seq
and stream packed) and one document of the full-text index: a batch of a thousand lines
costs a few dozen rows and index documents instead of a thousand of each, which is most of
the cost of appending. A query decodes the chunks of its range and filters their lines.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from kade.logs.record import STREAMS, LogLine

MAX_LINES = 64  # lines of one chunk
MAX_BYTES = 256 * 1024  # text of one chunk (one line may be longer: it is alone)
MAX_SPAN = 600 * 10**9  # ns of time one chunk spans

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


def decode(cid: int, ref: int, n: int, meta: bytes, text: str) -> list[Row]:
    numbers = array("q")
    numbers.frombytes(meta[:16 * n])
    streams = meta[16 * n:]
    lines = text.split("\n")
    return [(numbers[i], cid, i, ref, streams[i], numbers[n + i], lines[i]) for i in range(n)]


def as_line(row: Row, task: str, app: str, version: str, node: str) -> LogLine:
    return LogLine(row[0], app, task, version, node, STREAMS[row[4]], row[6], row[5])
