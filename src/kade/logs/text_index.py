"""The log store's full-text index: FTS5 tables per app, each over a range of chunk ids,
dropped whole once none of its chunks is left.

Removing a document from an FTS5 index means tokenizing its text again (a contentless table
of SQLite 3.40 cannot forget a row otherwise): measured, that made retention cost more than
appending (5.7% of a core per 10k lines/s removed). So chunks that go — by retention, or
merged by compaction — stay in their part of the index as stale entries (a query joins the
index to the chunks: a stale entry finds no chunk), and a part goes as a whole, for
nothing, when no chunk of its app is left in its id range. An app's lines go oldest first,
so its parts go in order; a part holds at most `PART_LINES` lines.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

PART_LINES = 500_000  # lines indexed in one part before the app's next part starts
SCHEMA = """
CREATE TABLE IF NOT EXISTS text_parts (
    part INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    low INTEGER NOT NULL,
    high INTEGER NOT NULL,
    lines INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS text_parts_app ON text_parts(app, low);
"""


def table(part: int) -> str:
    return f"text_{int(part)}"


class TextIndex:
    """The writer's side: which part each app indexes into now."""

    def __init__(self) -> None:
        self._current: dict[str, tuple[int, int]] = {}  # app → part, lines indexed

    def load(self, db: sqlite3.Connection) -> None:
        self._current = {}
        for part, app, lines in db.execute(
                "SELECT part, app, lines FROM text_parts ORDER BY part"):
            self._current[app] = (part, lines)

    def highest_id(self, db: sqlite3.Connection) -> int:
        """The highest chunk id ever indexed (ids are never given twice: a stale entry must
        not match a new chunk)."""
        return int(db.execute("SELECT coalesce(max(high), 0) FROM text_parts").fetchone()[0])

    def add(self, db: sqlite3.Connection, app: str, docs: list[tuple[int, int, str]]) -> None:
        """Index chunks of `app` given as (id, lines, text)."""
        if not docs:
            return
        current = self._current.get(app)
        if current is None or current[1] >= PART_LINES:
            cur = db.execute("INSERT INTO text_parts (app, low, high, lines) "
                             "VALUES (?, ?, ?, 0)", (app, docs[0][0], docs[0][0]))
            part = cur.lastrowid
            assert part is not None
            db.execute(f"CREATE VIRTUAL TABLE {table(part)} USING fts5(text, content='', "
                       "detail=none, tokenize='unicode61 remove_diacritics 0')")
            current = (part, 0)
        part, lines = current
        db.executemany(f"INSERT INTO {table(part)} (rowid, text) VALUES (?, ?)",
                       [(d[0], d[2]) for d in docs])
        added = sum(d[1] for d in docs)
        db.execute("UPDATE text_parts SET low = min(low, ?), high = max(high, ?), "
                   "lines = lines + ? WHERE part = ?",
                   (min(d[0] for d in docs), max(d[0] for d in docs), added, part))
        self._current[app] = (part, lines + added)

    def drop_dead(self, db: sqlite3.Connection, apps: Iterable[str]) -> int:
        """Drop the parts of `apps` with no chunk of theirs left (the one being filled too:
        the app's next lines start a new one). Parts dropped."""
        dropped = 0
        for app in apps:
            parts = db.execute("SELECT part, low, high FROM text_parts WHERE app = ? "
                               "ORDER BY low", (app,)).fetchall()
            refs = [r[0] for r in db.execute("SELECT ref FROM tasks WHERE app = ?", (app,))]
            for part, low, high in parts:
                if any(db.execute("SELECT 1 FROM chunks WHERE ref = ? AND id BETWEEN ? AND ? "
                                  "LIMIT 1", (ref, low, high)).fetchone() for ref in refs):
                    break  # the app's later parts hold newer lines: they stay too
                db.execute(f"DROP TABLE {table(part)}")
                db.execute("DELETE FROM text_parts WHERE part = ?", (part,))
                if self._current.get(app, (0, 0))[0] == part:
                    del self._current[app]
                dropped += 1
        return dropped


def parts(db: sqlite3.Connection, app: str, low: int, high: int) -> list[tuple[int, int, int]]:
    """(part, low, high) of the app's parts that index chunk ids in [low, high]."""
    return db.execute("SELECT part, low, high FROM text_parts WHERE app = ? AND high >= ? "
                      "AND low <= ? ORDER BY low", (app, low, high)).fetchall()
