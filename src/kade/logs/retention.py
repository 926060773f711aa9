"""Retention of the log store: one bounded step at a time, on the write connection.

Lines go by whole chunks (`kade.logs.chunks`: up to 64 lines of one task, from one append).
Each app's chunks whose newest line is older than its age go, then its oldest while it
holds more than its bytes
(down to 99% of them, so the next few appends do not each remove a few lines), then the
node's oldest, whatever their app, while the node holds more than its cap. Ages are the
lines' own stamps. A step removes at most `STEP_LINES` lines, so appends (on the same writer
thread) wait for one step, never for the whole clean-up.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from kade.logs.record import Retention

STEP_LINES = 20_000  # lines removed in one transaction
HOUR_NS = 3600 * 10**9


@dataclass(frozen=True)
class Rules:
    defaults: Retention  # both fields set
    node_max_bytes: int
    now: float  # seconds


@dataclass
class Step:
    removed: int = 0
    bytes: int = 0
    more: bool = False  # the step stopped at its bound: take another
    forgotten: list[str] = field(default_factory=list)  # tasks whose record went


def step(db: sqlite3.Connection, rules: Rules) -> Step:
    st = Step()
    overrides = {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT app, max_bytes, max_age FROM retention")}
    apps = db.execute("SELECT app, sum(bytes) FROM tasks GROUP BY app").fetchall()
    for app, held in apps:
        max_bytes, max_age = overrides.get(app, (None, None))
        max_bytes = max_bytes if max_bytes is not None else rules.defaults.max_bytes
        max_age = max_age if max_age is not None else rules.defaults.max_age
        assert max_bytes is not None and max_age is not None
        cutoff = int((rules.now - max_age) * 1e9)
        old = [r[0] for r in db.execute(
            "SELECT ref FROM tasks WHERE app = ? AND lines > 0 AND first < ?", (app, cutoff))]
        for ref in old:
            n, b, complete = _delete(db, ref, "last < ?", (cutoff,), STEP_LINES - st.removed)
            st.removed += n
            st.bytes += b
            held -= b
            if not complete:
                st.more = True
                return st
        if held > max_bytes:
            refs = [r[0] for r in db.execute(
                "SELECT ref FROM tasks WHERE app = ? AND lines > 0", (app,))]
            _oldest(db, refs, held - max_bytes + max_bytes // 100, st)
            if st.more:
                return st
        gone = db.execute("SELECT task FROM tasks WHERE app = ? AND lines = 0 "
                          "AND ended IS NOT NULL AND ended < ?", (app, cutoff)).fetchall()
        if gone:
            db.execute("DELETE FROM streams WHERE ref IN (SELECT ref FROM tasks WHERE app = ? "
                       "AND lines = 0 AND ended IS NOT NULL AND ended < ?)", (app, cutoff))
            db.execute("DELETE FROM tasks WHERE app = ? AND lines = 0 AND ended IS NOT NULL "
                       "AND ended < ?", (app, cutoff))
            st.forgotten += [g[0] for g in gone]
    total = db.execute("SELECT coalesce(sum(bytes), 0) FROM tasks").fetchone()[0]
    if total > rules.node_max_bytes:
        refs = [r[0] for r in db.execute("SELECT ref FROM tasks WHERE lines > 0")]
        _oldest(db, refs, total - rules.node_max_bytes + rules.node_max_bytes // 100, st)
    first = db.execute("SELECT min(first) FROM tasks WHERE lines > 0").fetchone()[0]
    if first is not None:
        db.execute("DELETE FROM spans WHERE span < ?", (first // HOUR_NS,))
    return st


def _delete(db: sqlite3.Connection, ref: int, where: str, args: tuple[int, ...],
            limit: int) -> tuple[int, int, bool]:
    """Remove a task's chunks (oldest first, at most `limit` lines' worth, at least one);
    (lines, bytes) removed and whether every chunk `where` chose went."""
    gone = db.execute(
        f"SELECT id, n, bytes FROM chunks WHERE ref = ? AND {where} ORDER BY last, id",
        (ref, *args)).fetchall()
    ids: list[tuple[int]] = []
    n = b = 0
    for id_, count, size in gone:
        if ids and n + count > limit:
            break
        ids.append((id_,))
        n += count
        b += size
    if ids:
        db.executemany("DELETE FROM chunks WHERE id = ?", ids)
        db.execute("UPDATE tasks SET lines = lines - ?, bytes = bytes - ?, "
                   "first = (SELECT min(first) FROM chunks WHERE ref = ?) WHERE ref = ?",
                   (n, b, ref, ref))
    return n, b, len(ids) == len(gone)


def _oldest(db: sqlite3.Connection, refs: Iterable[int], excess: int, st: Step) -> None:
    """Remove the oldest chunks of the tasks `refs`, by their newest line across them,
    until `excess` bytes are gone (or the step's bound is reached)."""
    cursors = [db.execute("SELECT last, id, ref, n, bytes FROM chunks WHERE ref = ? "
                          "ORDER BY last, id", (ref,)) for ref in refs]
    upto: dict[int, tuple[int, int]] = {}
    taken = 0
    try:
        merged: Iterator[tuple[int, int, int, int, int]] = heapq.merge(*cursors)
        for last, id_, ref, count, size in merged:
            excess -= size
            upto[ref] = (last, id_)
            taken += count
            if excess <= 0 or st.removed + taken >= STEP_LINES:
                break
    finally:
        for c in cursors:
            c.close()
    for ref, (last, id_) in upto.items():
        n, b, _ = _delete(db, ref, "(last < ? OR (last = ? AND id <= ?))", (last, last, id_),
                          2**62)
        st.removed += n
        st.bytes += b
    if excess > 0 and st.removed >= STEP_LINES:
        st.more = True
