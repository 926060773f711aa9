"""A store mirror ("informer"): the records under a few prefixes, kept current from one watch.

The scheduler, the deployer, the catalog and the agent each act on what the store holds. They
all need the same thing: typed maps of the records under some prefixes, a snapshot first, then
every change after it, once and in order, a fresh snapshot when the watch falls behind the
history the store keeps, and one policy for a record that cannot be read. It is written once,
here, against the `Store` protocol only, so that it works the same on SQLite and on etcd.

**One revision.** `Store.range` reads one prefix at the revision it returns. On a store whose
every call is a round trip (etcd), other writers go on between two reads, so several prefixes
are read at several revisions. The mirror reads each prefix, watches from the *oldest* of
those revisions, and applies to each prefix only the events after its own read. Once the watch
has passed the *newest* read's revision, the staged tables are exactly the store at one
revision, and only then are they handed to the owner. (Watching from the newest revision
instead would lose what changed, between the reads, under the prefixes read first.)

**One watch.** Several prefixes are followed through one watch of the whole keyspace, kept to
them here: a transaction that writes a task and its status arrives as one batch, and the
mirror's revision is the store's, so an owner that wrote at revision R can wait until its view
includes R (`wait_for`). A mirror of one prefix watches that prefix only; its revision moves
with the changes under it.

**Bad records.** Every record is read through `Source.decode` (for models `kade.model.decode`:
logged once, quarantined). A key holding one is absent from its table's `items` and listed in
`bad` with the reason; its mod_revision stays in `mods`, so that a guarded write may still
replace or delete it.

**Stopping.** `run` ends when the owner sets the closing event, is cancelled, or the store
closes; on `Compacted` it reloads and hands the owner a batch marked `reload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar, cast

from pydantic import BaseModel

from kade.model import Unreadable, decode
from kade.store.base import Compacted, Entry, Event, Store

log = logging.getLogger("kade.store.mirror")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Source(Generic[T]):
    """One prefix a mirror keeps: how its records are read, and what they are called."""

    prefix: str
    decode: Callable[[Entry], T | Unreadable]
    # A key → its name in the table; by default the key without the prefix.
    name: Callable[[str], str] | None = None

    def name_of(self, key: str) -> str:
        return key[len(self.prefix):] if self.name is None else self.name(key)


def records(prefix: str, cls: type[M], name: Callable[[str], str] | None = None) -> Source[M]:
    """The records of `cls` under `prefix`, read with the one bad-record policy."""
    return Source(prefix, lambda entry: decode(entry, cls), name)


class Change(NamedTuple):
    """A key of a mirrored prefix changed. `old` and `new` are records (None: absent, or
    unreadable); `bad` says why the key's new record cannot be read. (A tuple: a snapshot
    makes one per key, and a tuple is made three times faster than a frozen dataclass.)"""

    prefix: str
    key: str
    name: str
    old: Any
    new: Any
    bad: Unreadable | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes applied together: the tables are now the store at `revision`. A `reload` batch
    comes from a snapshot (the first one, or a new one after falling behind the history):
    its changes are what differs from the tables before it."""

    revision: int
    changes: tuple[Change, ...]
    reload: bool = False

    def of(self, source: Source[Any]) -> list[Change]:
        return [c for c in self.changes if c.prefix == source.prefix]


class Table(Generic[T]):
    """The current records of one prefix, by name."""

    def __init__(self, source: Source[T]) -> None:
        self.source = source
        self.items: dict[str, T] = {}
        self.bad: dict[str, Unreadable] = {}  # quarantined: present in the store, unreadable
        self.mods: dict[str, int] = {}  # mod_revision of every key present, readable or not
        self._keys: dict[str, str] = {}  # name -> key

    def mod(self, name: str) -> int:
        """The mod_revision of `name`'s key, 0 when absent (a compare-and-swap guard)."""
        return self.mods.get(name, 0)

    def apply(self, event: Event) -> Change | None:
        name = self.source.name_of(event.key)
        old = self.items.get(name)
        if event.kind == "delete" or event.entry is None:
            if name not in self.mods:
                return None
            del self.mods[name]
            del self._keys[name]
            self.items.pop(name, None)
            self.bad.pop(name, None)
            return Change(self.source.prefix, event.key, name, old, None)
        return self.put(event.entry, old)

    def put(self, entry: Entry, old: T | None = None) -> Change:
        name, record = self.load(entry)
        if isinstance(record, Unreadable):
            return Change(self.source.prefix, entry.key, name, old, None, record)
        return Change(self.source.prefix, entry.key, name, old, record)

    def load(self, entry: Entry) -> tuple[str, T | Unreadable]:
        """Take `entry` in; its name and its record (or why it cannot be read)."""
        name = self.source.name_of(entry.key)
        self.mods[name] = entry.mod_revision
        self._keys[name] = entry.key
        record = self.source.decode(entry)
        if isinstance(record, Unreadable):
            self.items.pop(name, None)
            self.bad[name] = record
        else:
            self.items[name] = record
            self.bad.pop(name, None)
        return name, record

    def replace_with(self, fresh: Table[T]) -> list[Change]:
        """Become `fresh` in place (owners may hold this table); the keys that differ, in the
        order of `fresh` (the store's key order), then those that are gone."""
        prefix, mods, items = self.source.prefix, self.mods, self.items
        changes = [
            Change(prefix, key, name, items.get(name), fresh.items.get(name),
                   fresh.bad.get(name))
            for name, key in fresh._keys.items()
            if mods.get(name) != fresh.mods[name]
        ]
        changes += [Change(prefix, key, name, items.get(name), None)
                    for name, key in self._keys.items() if name not in fresh.mods]
        self.items.clear()
        self.items.update(fresh.items)
        self.bad.clear()
        self.bad.update(fresh.bad)
        self.mods.clear()
        self.mods.update(fresh.mods)
        self._keys.clear()
        self._keys.update(fresh._keys)
        return changes


class Mirror:
    """Keeps a `Table` per source current; see the module docstring.

    The owner runs `run()` in a task it owns, reads `table(source)` between its awaits (the
    tables change only in the mirror's task, a batch at a time), and learns of changes from
    `on_batch` callbacks, which run in the mirror's task right after a batch is applied."""

    def __init__(self, store: Store, sources: Sequence[Source[Any]], *,
                 closing: asyncio.Event | None = None, name: str = "mirror") -> None:
        if not sources:
            raise ValueError("a mirror needs at least one prefix")
        prefixes = [s.prefix for s in sources]
        for a in prefixes:
            for b in prefixes:
                if a is not b and b.startswith(a):
                    raise ValueError(f"prefixes {a!r} and {b!r} overlap")
        self.store = store
        self.name = name
        self._closing = closing
        self._tables: dict[str, Table[Any]] = {s.prefix: Table(s) for s in sources}
        self._watch_prefix = prefixes[0] if len(prefixes) == 1 else ""
        self._callbacks: list[Callable[[Batch], None]] = []
        self._revision = 0
        self._loaded = asyncio.Event()
        self._stopped = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- for the owner ----------------------------------------------------------------------

    def table(self, source: Source[T]) -> Table[T]:
        return cast(Table[T], self._tables[source.prefix])

    def quarantined(self) -> dict[str, Unreadable]:
        """Every mirrored record that cannot be read, by key."""
        return {bad.key: bad for table in self._tables.values() for bad in table.bad.values()}

    @property
    def revision(self) -> int:
        """The store revision the tables are at (0 before the first snapshot)."""
        return self._revision

    def on_batch(self, callback: Callable[[Batch], None]) -> Callable[[], None]:
        """Call `callback(batch)` after each batch that changed something (and after every
        snapshot). Returns an unsubscribe function."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    async def ready(self) -> bool:
        """Until the first snapshot is in the tables (True), or the mirror stopped before it
        had one (False)."""
        if not self._loaded.is_set():
            loaded = asyncio.ensure_future(self._loaded.wait())
            stopped = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({loaded, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                loaded.cancel()
                stopped.cancel()
        return self._loaded.is_set()

    async def wait_for(self, revision: int, timeout: float | None = None) -> bool:
        """Until the tables include `revision` (read-your-writes for an owner that wrote);
        False at `timeout`. A mirror of one prefix reaches only the revisions of changes
        under it: wait there for a revision that wrote under it."""
        if self._revision >= revision:
            return True
        entry = (revision, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    # -- following the store -----------------------------------------------------------------

    async def run(self) -> None:
        """Mirror until the closing event is set, the task is cancelled or the store closes."""
        self._stopped.clear()
        try:
            while not self._stopping():
                try:
                    await self._session()
                    return
                except Compacted as e:
                    log.warning("%s fell behind the store's history (%s); reloading",
                                self.name, e)
        finally:
            self._stopped.set()

    def _stopping(self) -> bool:
        return self._closing is not None and self._closing.is_set()

    async def _session(self) -> None:
        staged: dict[str, Table[Any]] = {}
        read_at: dict[str, int] = {}
        for prefix, table in self._tables.items():
            entries, revision = await self.store.range(prefix)
            staged[prefix] = fresh = Table(table.source)
            read_at[prefix] = revision
            for entry in entries:
                fresh.load(entry)
        start, target = min(read_at.values()), max(read_at.values())
        seen = dict(read_at)  # per prefix: everything up to here is in the staged table
        live = False
        if start == target or await self._caught_up(seen):
            self._swap(staged, target)
            live = True
        watch = watch_until(self.store, self._watch_prefix, start, self._closing)
        async with contextlib.aclosing(watch):
            async for events in watch:
                if events is None:
                    continue
                revision = events[-1].revision
                changes = self._apply(self._tables if live else staged, events, read_at)
                if live:
                    self._advance(revision, changes)
                    continue
                for event in events:
                    if (ours := self._prefix_of(event.key)) is not None:
                        seen[ours] = max(seen[ours], event.revision)
                if revision >= target or await self._caught_up(seen):
                    self._swap(staged, max(revision, target))  # the store at one revision
                    live = True

    async def _caught_up(self, seen: dict[str, int]) -> bool:
        """Nothing changed under any prefix after what its table holds: the staged tables are
        the store now. (The watch passing the newest read tells the same, but a watch that
        only sees some keys — an agent's, through the servers — may not pass it soon.)"""
        for prefix, revision in seen.items():
            if await self.store.prefix_revision(prefix) > revision:
                return False
        return True

    def _apply(self, tables: dict[str, Table[Any]], events: Iterable[Event],
               read_at: dict[str, int]) -> list[Change]:
        changes: list[Change] = []
        for event in events:
            prefix = self._prefix_of(event.key)
            if prefix is None or event.revision <= read_at[prefix]:
                continue  # not ours, or already in what was read
            change = tables[prefix].apply(event)
            if change is not None:
                changes.append(change)
        return changes

    def _prefix_of(self, key: str) -> str | None:
        for prefix in self._tables:
            if key.startswith(prefix):
                return prefix
        return None

    def _swap(self, staged: dict[str, Table[Any]], revision: int) -> None:
        changes: list[Change] = []
        for prefix, table in self._tables.items():
            changes += table.replace_with(staged[prefix])
        self._advance(revision, changes, reload=True)

    def _advance(self, revision: int, changes: list[Change], *, reload: bool = False) -> None:
        self._revision = max(self._revision, revision)
        if changes or reload:
            batch = Batch(revision, tuple(changes), reload)
            for callback in list(self._callbacks):
                callback(batch)
        self._loaded.set()
        for wanted, fut in self._waiters:
            if wanted <= self._revision and not fut.done():
                fut.set_result(None)


async def watch_until(store: Store, prefix: str, after: int, closing: asyncio.Event | None,
                      idle: float | None = None) -> AsyncGenerator[list[Event] | None, None]:
    """`store.watch(prefix, after)` that ends when `closing` is set (or the store's watch
    ends), and yields None after `idle` seconds without a batch (an event stream's keepalive).

    The next batch is awaited in a task of its own across those wake-ups: cancelling a
    watch's `__anext__` would end the watch. Raises Compacted like the watch."""
    watch = store.watch(prefix, after).__aiter__()
    pending: asyncio.Task[list[Event]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(watch.__anext__())
            waits: set[asyncio.Future[Any]] = {pending}
            stop = None if closing is None else asyncio.ensure_future(closing.wait())
            if stop is not None:
                waits.add(stop)
            try:
                done, _ = await asyncio.wait(waits, timeout=idle,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                if stop is not None:
                    stop.cancel()
            if stop is not None and stop in done:
                return
            if not done:
                yield None
                continue
            try:
                batch = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield batch
    finally:
        if pending is not None:
            pending.cancel()
