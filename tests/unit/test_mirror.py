"""The store mirror on the real SQLite store: one snapshot at one revision however the reads
interleave with writers, every change after it once and in order, a reload after falling
behind the history, records that cannot be read quarantined."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from kade.model import Record
from kade.store import Delete, Put, SqliteStore, Store
from kade.store.mirror import Batch, Mirror, Source, Table, records
from tests.unit.interleaving_store import InterleavingStore

pytestmark = pytest.mark.timeout(30)


class Item(Record):
    n: int


A: Source[Item] = records("a/", Item)
B: Source[Item] = records("b/", Item, name=lambda key: "/" + key[len("b/"):])


def item(n: int) -> bytes:
    return Item(n=n).dump()


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store")
    yield s
    await s.close()


@asynccontextmanager
async def mirrored(store: Store, *sources: Source[Item]
                   ) -> AsyncIterator[tuple[Mirror, list[Batch]]]:
    mirror = Mirror(store, sources)
    batches: list[Batch] = []
    mirror.on_batch(batches.append)
    runner = asyncio.create_task(mirror.run())
    try:
        await asyncio.wait_for(mirror.ready(), 10)
        yield mirror, batches
    finally:
        runner.cancel()
        with suppress(asyncio.CancelledError):
            await runner


def numbers(table: Table[Item]) -> dict[str, int]:
    return {name: record.n for name, record in table.items.items()}


async def test_a_snapshot_of_several_prefixes_is_at_one_revision_however_writers_interleave(
    sqlite: SqliteStore,
) -> None:
    await sqlite.put("a/x", item(1))
    await sqlite.put("b/y", item(1))

    async def writer(prefix: str) -> None:
        # Right after `a/` was read, before `b/` is: the mirror must not lose this write.
        if prefix == "a/":
            await sqlite.put("a/x", item(2))
            await sqlite.put("a/new", item(3))
            await sqlite.put("c/other", item(0))  # not mirrored

    store = InterleavingStore(sqlite, writer)
    async with mirrored(store, A, B) as (mirror, batches):
        assert [rev for _, rev in store.ranges] == [2, 5]  # read at two revisions
        assert numbers(mirror.table(A)) == {"x": 2, "new": 3}
        assert numbers(mirror.table(B)) == {"/y": 1}
        [first] = batches
        assert first.reload and first.revision == mirror.revision == 5
        assert sorted((c.prefix, c.name, c.old, c.new.n) for c in first.changes) == [
            ("a/", "new", None, 3), ("a/", "x", None, 2), ("b/", "/y", None, 1)]


async def test_follows_every_change_once_in_order_a_transaction_as_one_batch(
    sqlite: SqliteStore,
) -> None:
    await sqlite.put("a/x", item(1))
    async with mirrored(InterleavingStore(sqlite), A, B) as (mirror, batches):
        revision = (await sqlite.txn([], [Put("a/x", item(2)), Put("b/y", item(7)),
                                          Put("c/z", item(0))])).revision
        assert await mirror.wait_for(revision, timeout=5)
        last = batches[-1]
        assert (last.revision, last.reload) == (revision, False)
        assert [(c.key, c.old, c.new) for c in last.changes] == [
            ("a/x", Item(n=1), Item(n=2)), ("b/y", None, Item(n=7))]
        assert [c.name for c in last.of(B)] == ["/y"]
        assert mirror.table(A).mod("x") == revision

        revision = await sqlite.delete("a/", prefix=True)
        await sqlite.put("c/z", item(1))  # moves the revision, changes nothing mirrored
        assert await mirror.wait_for(revision + 1, timeout=5)
        assert mirror.revision == revision + 1
        assert numbers(mirror.table(A)) == {} and mirror.table(A).mod("x") == 0
        assert [(c.key, c.new) for c in batches[-1].changes] == [("a/x", None)]
        assert len(batches) == 3  # the write outside the prefixes called nobody back


async def test_a_record_that_cannot_be_read_is_quarantined_and_its_revision_kept(
    sqlite: SqliteStore,
) -> None:
    await sqlite.put("a/good", item(1))
    bad_at = await sqlite.put("a/bad", b'{"n": "many"}')
    async with mirrored(sqlite, A) as (mirror, batches):
        table = mirror.table(A)
        assert numbers(table) == {"good": 1}
        assert table.bad["bad"].reason.startswith("n: ")
        assert table.mod("bad") == bad_at  # a guarded write may still replace it

        revision = await sqlite.put("a/good", b"{")
        assert await mirror.wait_for(revision, timeout=5)
        [change] = batches[-1].changes
        assert (change.old, change.new) == (Item(n=1), None)
        assert change.bad is not None and "good" in table.bad and "good" not in table.items

        revision = await sqlite.put("a/bad", item(5))
        assert await mirror.wait_for(revision, timeout=5)
        assert numbers(table) == {"bad": 5} and set(table.bad) == {"good"}


async def test_falling_behind_the_history_reloads_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = SqliteStore(tmp_path / "small", history=5, ring=1)
    try:
        await store.put("a/kept", item(1))
        await store.put("a/gone", item(1))
        async with mirrored(store, A, B) as (mirror, batches):
            # A burst with no pause for the mirror: its history is compacted away.
            for i in range(50):
                await store.put("b/busy", item(i))
            await store.delete("a/gone")
            revision = await store.put("a/new", item(2))
            assert await mirror.wait_for(revision, timeout=5)
            assert numbers(mirror.table(A)) == {"kept": 1, "new": 2}
            assert numbers(mirror.table(B)) == {"/busy": 49}
            reload = batches[-1]
            assert reload.reload and reload.revision == revision
            assert sorted((c.key, c.new) for c in reload.changes) == [
                ("a/gone", None), ("a/new", Item(n=2)), ("b/busy", Item(n=49))]
        assert "fell behind" in caplog.text
    finally:
        await store.close()


async def test_ends_when_the_owner_stops_it_or_the_store_closes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s")
    closing = asyncio.Event()
    mirror = Mirror(store, [A], closing=closing)
    runner = asyncio.create_task(mirror.run())
    await asyncio.wait_for(mirror.ready(), 5)
    closing.set()
    await asyncio.wait_for(runner, 5)  # returned, not cancelled

    other = Mirror(store, [A, B])
    runner = asyncio.create_task(other.run())
    await asyncio.wait_for(other.ready(), 5)
    await store.close()
    await asyncio.wait_for(runner, 5)


async def test_wait_for_gives_up_at_its_timeout(sqlite: SqliteStore) -> None:
    async with mirrored(sqlite, A) as (mirror, _):
        assert not await mirror.wait_for(mirror.revision + 1, timeout=0.01)


def test_prefixes_must_not_overlap(sqlite: SqliteStore) -> None:
    with pytest.raises(ValueError, match="overlap"):
        Mirror(sqlite, [A, records("a/b/", Item)])
    with pytest.raises(ValueError, match="at least one"):
        Mirror(sqlite, [])


async def test_a_prefix_emptied_before_the_first_read_is_mirrored_empty(
    sqlite: SqliteStore,
) -> None:
    await sqlite.txn([], [Put("a/x", item(1)), Delete("a/x")])
    async with mirrored(sqlite, A) as (mirror, batches):
        assert numbers(mirror.table(A)) == {} and batches[0].changes == ()


async def test_ready_says_so_when_the_mirror_stopped_before_loading(sqlite: SqliteStore) -> None:
    closing = asyncio.Event()
    closing.set()
    mirror = Mirror(sqlite, [A], closing=closing)
    await mirror.run()
    assert await mirror.ready() is False


async def test_history_lost_while_catching_up_to_one_revision_reloads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = SqliteStore(tmp_path / "small", history=5, ring=1)
    bursts = [2]

    async def writer(prefix: str) -> None:
        if prefix == "a/" and bursts[0]:  # the first two loads fall behind before they watch
            bursts[0] -= 1
            for i in range(20):
                await store.put("a/x", item(i))
    try:
        async with mirrored(InterleavingStore(store, writer), A, B) as (mirror, batches):
            assert numbers(mirror.table(A)) == {"x": 19}
            assert mirror.revision == await store.revision()
            assert [b.reload for b in batches] == [True]  # the owner saw one snapshot only
        assert caplog.text.count("fell behind") == 2
    finally:
        await store.close()


async def test_the_tables_equal_the_store_after_writers_raced_the_load_and_the_watch(
    sqlite: SqliteStore,
) -> None:
    """Writes between the reads and during the watch, puts, deletes and transactions over
    both prefixes and others: the tables end as a fresh read of the store."""
    step = [0]

    async def write() -> None:
        i = step[0] = step[0] + 1
        ops: list[Put | Delete] = [Put(f"a/{i % 7}", item(i)), Put(f"b/{i % 5}", item(i)),
                                   Put(f"c/{i % 3}", item(i))]
        if i % 4 == 0:
            ops.append(Delete(f"a/{(i + 3) % 7}"))
        if i % 6 == 0:
            ops.append(Put(f"b/{i % 5}", b"not json"))
        await sqlite.txn([], ops)

    async def between(_prefix: str) -> None:
        for _ in range(3):
            await write()

    async with mirrored(InterleavingStore(sqlite, between), A, B) as (mirror, _):
        for _ in range(40):
            await write()
            await asyncio.sleep(0)
        assert await mirror.wait_for(await sqlite.revision(), timeout=5)
        for source, table in ((A, mirror.table(A)), (B, mirror.table(B))):
            entries, _ = await sqlite.range(source.prefix)
            assert table.mods == {source.name_of(e.key): e.mod_revision for e in entries}
            good = {source.name_of(e.key): Item.load(e.value) for e in entries
                    if e.value != b"not json"}
            assert table.items == good
            assert set(table.bad) == set(table.mods) - set(good)


class SeesOnlySome:
    """A store as an agent sees it through the servers' store API: its watch carries only
    keys the agent may read; and a write it may not see lands between the mirror's reads."""

    def __init__(self, store: SqliteStore, visible: tuple[str, ...]) -> None:
        self.store = store
        self.visible = visible
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def range(self, prefix: str) -> object:
        found = await self.store.range(prefix)
        self.reads += 1
        if self.reads == 1:
            await self.store.put("tokens/t1", b"not for agents")
        return found

    async def watch(self, prefix: str, after: int) -> AsyncIterator[list[object]]:
        async for batch in self.store.watch(prefix, after):
            shown = [e for e in batch if e.key.startswith(self.visible)]
            if shown:
                yield shown


async def test_loads_when_what_was_written_between_its_reads_never_reaches_its_watch(
        sqlite: SqliteStore) -> None:
    await sqlite.put("a/x", item(1))
    store = SeesOnlySome(sqlite, ("a/", "b/"))
    async with mirrored(store, A, B) as (mirror, _):  # type: ignore[arg-type]
        assert numbers(mirror.table(A)) == {"x": 1}
        await sqlite.put("b/y", item(2))
        await asyncio.wait_for(mirror.wait_for(await sqlite.revision()), 10)
        assert numbers(mirror.table(B)) == {"/y": 2}
