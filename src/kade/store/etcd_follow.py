"""What an `EtcdStore` knows from following etcd: pure bookkeeping, fed event batches in
order by the store's one watch of its namespace (and by its own writes, which it sees first).

- `signals`: wakes `wait()`ers of a prefix, one future per prefix (`kade.store.keys`);
- prefix revisions: a cache of prefix_revision() answers, moved by every change under a
  cached prefix, so a blocking query that wakes costs no round trip to etcd;
- deletes: the last delete seen per directory, for deletes that leave no delete mark in etcd
  (keys of an ended lease, deleted by etcd itself); past `DELETES_KEPT` directories the
  oldest are folded into a floor that counts for every prefix (conservative, monotonic);
- usage: what each counted quota holds, so a write can be checked before it is sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from kade.store.base import Event
from kade.store.keys import Signals, parent_dir, prefixes_hit
from kade.store.limits import Quota, Usage, usage_delta

PREFIX_CACHE = 10_000  # prefix_revision answers kept
DELETES_KEPT = 10_000  # directories whose last delete is remembered


class Followed:
    def __init__(self, counted: Sequence[Quota]) -> None:
        self.signals = Signals()
        self.seen = 0  # the last revision handled
        self.counted = list(counted)
        self.usage = [Usage() for _ in self.counted]
        self._prefix_revs: dict[str, int] = {}
        self._deletes: dict[str, int] = {}
        self._deletes_floor = 0

    def cached(self, prefix: str) -> int | None:
        return self._prefix_revs.get(prefix)

    def remember(self, prefix: str, answer: int, read_at: int) -> None:
        """Cache an answer read at `read_at`; one older than what was handled is not kept
        (changes between the two would not be in it)."""
        if read_at < self.seen:
            return
        if len(self._prefix_revs) >= PREFIX_CACHE:
            del self._prefix_revs[next(iter(self._prefix_revs))]
        self._prefix_revs[prefix] = answer

    def changed(self, keys: Sequence[str], rev: int) -> None:
        for p in prefixes_hit(self._prefix_revs, keys):
            self._prefix_revs[p] = max(self._prefix_revs[p], rev)

    def seen_deletes(self, prefix: str) -> int:
        """The last delete seen in a directory under `prefix` or above it."""
        found = self._deletes_floor
        for d, rev in self._deletes.items():
            if rev > found and (d.startswith(prefix) or prefix.startswith(d)):
                found = rev
        return found

    def handle(self, batch: Sequence[Event]) -> None:
        """Take in a batch of the namespace's events (whole revisions, in order)."""
        for quota, usage in zip(self.counted, self.usage, strict=True):
            delta = usage_delta(quota.prefix, batch)
            usage.keys += delta.keys
            usage.bytes += delta.bytes
        for e in batch:
            if e.kind == "delete":
                d = parent_dir(e.key)
                self._deletes.pop(d, None)  # re-inserted: the dict's order is of last deletes
                self._deletes[d] = e.revision
        while len(self._deletes) > DELETES_KEPT:
            oldest = next(iter(self._deletes))
            self._deletes_floor = max(self._deletes_floor, self._deletes.pop(oldest))
        self.seen = max(self.seen, batch[-1].revision)
        for rev in sorted({e.revision for e in batch}):
            keys = [e.key for e in batch if e.revision == rev]
            self.changed(keys, rev)
            self.signals.notify(keys, rev)

    def restart(self, rev: int, usage: Sequence[Usage]) -> None:
        """Start again at `rev` after missing history: forget cached answers, count every
        prefix as changed at `rev`, and wake every waiter to ask again."""
        self.usage = list(usage)
        self._prefix_revs.clear()
        self._deletes_floor = max(self._deletes_floor, rev)
        self.seen = rev
        self.signals.fire_all(rev)
