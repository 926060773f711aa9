"""The history a watch reads: the newest revisions in memory (`Ring`), older ones from the
`log` table, both bounded by a count of revisions and by bytes (`kade.store.limits`)."""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

from kade.store.base import Entry, Event
from kade.store.keys import key_range
from kade.store.limits import ring_bytes

PAGE_BYTES = 16 * 1024 * 1024  # bytes of history read from the log per query, about


class Ring:
    """The events of the newest revisions, held for live watchers so that they never query
    SQLite; at most `revisions` of them and about `budget` bytes (a revision larger than the
    budget is not held at all: watchers read it from the log)."""

    def __init__(self, next_revision: int, revisions: int, budget: int) -> None:
        self.start = next_revision  # the oldest revision held (or the next one, when empty)
        self.bytes = 0
        self._revisions = max(1, revisions)
        self._budget = budget
        self._events: dict[int, list[Event]] = {}
        self._sizes: collections.deque[int] = collections.deque()  # oldest first

    def __len__(self) -> int:
        return len(self._events)

    def holds_after(self, revision: int) -> bool:
        """Whether every revision after `revision` (up to the newest) is held."""
        return revision + 1 >= self.start

    def add(self, revision: int, events: list[Event]) -> None:
        """Hold the newest revision's events (revisions come in order, one by one)."""
        if not self._events:
            self.start = revision
        self._events[revision] = events
        self._sizes.append(ring_bytes(events))
        self.bytes += self._sizes[-1]
        self._trim(len(self._events) - self._revisions)

    def forget_through(self, revision: int) -> None:
        """Forget revisions up to `revision` (compacted history)."""
        self._trim(revision + 1 - self.start)

    def since(self, prefix: str, after: int, current: int) -> list[Event]:
        """Events under `prefix` after `after` up to `current`; holds_after(after) must hold."""
        return [
            e
            for rev in range(after + 1, current + 1)
            for e in self._events[rev]
            if e.key.startswith(prefix)
        ]

    def _trim(self, drop: int) -> None:
        while self._events and (drop > 0 or self.bytes > self._budget):
            del self._events[self.start]
            self.bytes -= self._sizes.popleft()
            self.start += 1
            drop -= 1
        if not self._events:
            self.bytes = 0


def log_row(e: Event) -> tuple[Any, ...]:
    new, old = e.entry, e.prev
    return (
        e.revision,
        e.key,
        new.value if new else None,
        new.create_revision if new else None,
        new.version if new else None,
        old.value if old else None,
        old.create_revision if old else None,
        old.mod_revision if old else None,
        old.version if old else None,
    )


def _entry(key: str, value: Any, create: Any, mod: Any, version: Any) -> Entry | None:
    if create is None:
        return None
    return Entry(key, bytes(value), create, mod, version)


def read_log(
    db: sqlite3.Connection, prefix: str, after: int, end: int, page_bytes: int = PAGE_BYTES
) -> tuple[list[Event], int]:
    """Events under `prefix` after `after` up to `end` from the log, in whole revisions of
    about `page_bytes` at most (one revision at least), and the revision read up to."""
    where, args = key_range("key", prefix)
    rows = db.execute(
        "SELECT rev, key, value, create_rev, version, "
        "prev_value, prev_create, prev_mod, prev_version FROM log "
        f"WHERE rev > ? AND rev <= ? AND {where} ORDER BY rev, rowid",
        (after, end, *args),
    )
    events: list[Event] = []
    size = 0
    try:
        for rev, key, value, create, version, pv, pc, pm, pn in rows:
            if size >= page_bytes and rev != events[-1].revision:
                return events, events[-1].revision
            size += len(key) + len(value or b"") + len(pv or b"")
            entry = _entry(key, value, create, rev, version)
            prev = _entry(key, pv, pc, pm, pn)
            if entry is not None:
                events.append(Event(rev, "put", key, entry, prev))
            else:
                events.append(Event(rev, "delete", key, None, prev))
    finally:
        rows.close()
    return events, end
