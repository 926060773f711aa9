"""The SQLite file of the store: its tables, and how it is opened.

`kv` holds the live keys, `log` the change history (a row per event, with the previous
entry, so a watch resuming from the log sees what a live one sees), `tomb` and `reaped` the
deletes that prefix_revision() must count, `meta` the revision and the compaction point,
`leased` the keys written under a lease (deleted at the next open: leases live in memory).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from kade.store.base import StoreError
from kade.store.keys import key_range
from kade.store.limits import Quota, Usage

WAL_LIMIT = 16 * 1024 * 1024  # the WAL file is truncated to this after a checkpoint
INCREMENTAL = 2  # PRAGMA auto_vacuum

log = logging.getLogger(__name__)

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS leased (key TEXT PRIMARY KEY, lease INTEGER NOT NULL);
"""


def prepare(db: sqlite3.Connection, data_dir: Path) -> bool:
    """Durable writes (WAL, synchronous=FULL), the tables, and incremental auto-vacuum on a
    new file. Returns whether the file predates auto-vacuum: `convert()` it, best after
    compaction so that less is rewritten."""
    (vacuum,) = db.execute("PRAGMA auto_vacuum").fetchone()
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    if not pages:  # a new file takes the setting before its first table
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    (mode,) = db.execute("PRAGMA journal_mode=WAL").fetchone()
    if mode != "wal":
        raise StoreError(f"{data_dir}: SQLite cannot use WAL mode here ({mode})")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}").fetchall()
    db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
    return bool(pages) and vacuum != INCREMENTAL


def convert(db: sqlite3.Connection, data_dir: Path) -> None:
    """Rewrite a file of an older kade once, so that space freed by compaction can be given
    back to the file system (incremental auto-vacuum)."""
    log.info("%s: rewriting state.db once, so that space freed by compaction can be given "
             "back (incremental auto-vacuum)", data_dir)
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("VACUUM")


def measure(db: sqlite3.Connection, quota: Quota) -> Usage:
    """What `quota` counts in the file now: keys under its prefix and their bytes."""
    where, args = key_range("key", quota.prefix)
    keys, size = db.execute(
        "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0) "
        f"FROM kv WHERE {where}",
        args,
    ).fetchone()
    return Usage(keys, size)


def give_back_space(db: sqlite3.Connection, threshold: int) -> bool:
    """Return free pages to the file system once they are more than `threshold` bytes and a
    quarter of the file. SQLite reuses free pages anyway: this only shrinks the file after a
    burst of big values. True when it did."""
    (free,) = db.execute("PRAGMA freelist_count").fetchone()
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    if free * page_size < threshold or free * 4 < pages:
        return False
    db.executescript("PRAGMA incremental_vacuum;")  # steps until done, unlike execute()
    return True
