"""The store protocol, as the components built on it see it: every test runs on both backends,
the embedded SQLite store and etcd (a real 3-member cluster, tests/etcd.py).

etcd's revisions are shared by everything in the cluster, so tests count from the revision
they start at (`r0`) rather than from 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kade.store import CasFailed, Compare, Delete, Event, Put, SqliteStore, Store, StoreError
from tests.etcd import store_on

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["sqlite", "etcd"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "etcd":
        async with store_on(request.getfixturevalue("etcd_cluster")) as etcd:
            yield etcd
        return
    s = SqliteStore(tmp_path / "data")
    yield s
    await s.close()


async def next_batch(watch: AsyncIterator[list[Event]], timeout: float = 10) -> list[Event]:
    return await asyncio.wait_for(anext(watch), timeout)


def summary(events: list[Event], r0: int = 0) -> list[tuple[int, str, str, bytes | None]]:
    """Events as (revision - r0, kind, key, value)."""
    return [(e.revision - r0, e.kind, e.key, e.entry.value if e.entry else None)
            for e in events]


# -- reads and writes ------------------------------------------------------------------------


async def test_put_get_range_delete(store: Store) -> None:
    r0 = await store.revision()
    assert await store.get("app/web") is None
    assert await store.range("") == ([], r0)

    await store.put("app/web", b"spec 1")
    await store.put("app/api", b"spec 2")
    await store.put("apple", b"fruit")
    await store.put("app/ünïcode/☃", b"\x00\xff")

    web = await store.get("app/web")
    assert web is not None and web.value == b"spec 1"
    entries, rev = await store.range("app/")
    assert [e.key for e in entries] == ["app/api", "app/web", "app/ünïcode/☃"]
    assert rev == r0 + 4
    assert (await store.get("app/ünïcode/☃")) is not None

    assert await store.delete("app/web") == r0 + 5
    assert await store.get("app/web") is None
    assert [e.key for e in (await store.range("app"))[0]] == ["app/api", "app/ünïcode/☃", "apple"]


async def test_revisions_follow_etcd(store: Store) -> None:
    r0 = await store.revision()
    assert await store.put("k", b"a") == r0 + 1
    assert await store.put("other", b"x") == r0 + 2
    assert await store.put("k", b"b") == r0 + 3
    k = await store.get("k")
    assert k is not None
    assert (k.create_revision, k.mod_revision, k.version) == (r0 + 1, r0 + 3, 2)

    assert await store.delete("k") == r0 + 4
    assert await store.delete("k") == r0 + 4  # nothing deleted: no new revision
    assert await store.delete("nothing/", prefix=True) == r0 + 4
    assert await store.revision() == r0 + 4

    assert await store.put("k", b"c") == r0 + 5  # re-created: a new life
    k = await store.get("k")
    assert k is not None
    assert (k.create_revision, k.mod_revision, k.version) == (r0 + 5, r0 + 5, 1)


async def test_put_with_expect_is_compare_and_swap(store: Store) -> None:
    rev = await store.put("leader", b"node-1", expect=0)  # create only
    with pytest.raises(CasFailed):
        await store.put("leader", b"node-2", expect=0)
    with pytest.raises(CasFailed):
        await store.put("leader", b"node-2", expect=rev + 10)
    rev2 = await store.put("leader", b"node-2", expect=rev)
    entry = await store.get("leader")
    assert entry is not None and entry.value == b"node-2" and entry.mod_revision == rev2
    assert await store.revision() == rev2  # failed attempts made no revision

    with pytest.raises(CasFailed):
        await store.delete("leader", expect=rev)
    assert await store.delete("absent", expect=0) == rev2  # nothing there, as expected
    with pytest.raises(CasFailed):
        await store.delete("absent", expect=rev2)
    assert await store.delete("leader", expect=rev2) == rev2 + 1
    assert await store.get("leader") is None


async def test_keys_and_values_are_checked(store: Store) -> None:
    r0 = await store.revision()
    with pytest.raises(ValueError):
        await store.put("", b"x")
    with pytest.raises(TypeError):
        await store.put("k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.put("\ud800", b"x")
    with pytest.raises(ValueError):
        await store.delete("k", expect=1, prefix=True)
    with pytest.raises(ValueError):
        await store.put("k", b"x", lease=-1)
    assert await store.revision() == r0


# -- transactions ----------------------------------------------------------------------------


async def test_txn_success_and_failure_branches(store: Store) -> None:
    r0 = await store.revision()
    await store.put("cfg/a", b"1")
    a = await store.get("cfg/a")
    assert a is not None

    ok = await store.txn(
        [Compare("cfg/a", a.mod_revision), Compare("cfg/b", 0)],
        [Put("cfg/a", b"2"), Put("cfg/b", b"new"), Delete("cfg/c")],
        [Put("cfg/failed", b"yes")],
    )
    assert ok.succeeded and ok.revision == r0 + 2  # several ops, one revision
    assert summary(list(ok.events), r0) == [(2, "put", "cfg/a", b"2"), (2, "put", "cfg/b", b"new")]
    assert ok.events[0].prev is not None and ok.events[0].prev.value == b"1"

    lost = await store.txn(
        [Compare("cfg/a", a.mod_revision)],  # stale now
        [Put("cfg/a", b"3")],
        [Put("cfg/failed", b"yes")],
    )
    assert not lost.succeeded and lost.revision == r0 + 3
    entry = await store.get("cfg/a")
    assert entry is not None and entry.value == b"2"
    assert await store.get("cfg/failed") is not None

    nothing = await store.txn([Compare("cfg/a", 1)], [Put("x", b"")])
    assert not nothing.succeeded and nothing.revision == r0 + 3 and nothing.events == ()


async def test_txn_replaces_a_subtree_in_one_revision(store: Store) -> None:
    r0 = await store.revision()
    await store.put("tree/old", b"1")
    await store.put("tree/kept", b"1")
    result = await store.txn([], [Delete("tree/", prefix=True), Put("tree/new", b"2"),
                                  Put("tree/kept", b"2")])
    assert result.revision == r0 + 3
    entries, _ = await store.range("tree/")
    assert [(e.key, e.value, e.mod_revision) for e in entries] == [
        ("tree/kept", b"2", r0 + 3), ("tree/new", b"2", r0 + 3)]
    assert ("delete", "tree/old") in [(e.kind, e.key) for e in result.events]


async def test_a_later_op_in_a_txn_wins(store: Store) -> None:
    await store.put("w/a", b"old")
    result = await store.txn([], [Put("w/a", b"1"), Put("w/a", b"2"), Put("w/b", b"1"),
                                  Delete("w/b")])
    a = await store.get("w/a")
    assert a is not None and a.value == b"2"
    assert await store.get("w/b") is None
    assert result.succeeded


async def test_txn_is_atomic_when_an_op_fails_midway(store: Store) -> None:
    r0 = await store.revision()
    await store.put("a", b"before")
    released = memoryview(b"payload")
    released.release()  # reading it fails, after the first op was applied
    with pytest.raises(ValueError):
        await store.txn([], [Put("a", b"after"), Delete("a"), Put("b", released)])  # type: ignore[arg-type]
    entry = await store.get("a")
    assert entry is not None and entry.value == b"before"
    assert await store.get("b") is None
    assert await store.revision() == r0 + 1
    assert await store.put("b", b"ok") == r0 + 2  # the store is still usable


# -- prefix delete and prefix revision -------------------------------------------------------


async def test_prefix_delete_is_one_revision(store: Store) -> None:
    r0 = await store.revision()
    for key in ("svc/web/1", "svc/web/2", "svc/webmail/1", "svc/api/1"):
        await store.put(key, b"x")
    watch = store.watch("svc/", r0 + 4)
    rev = await store.delete("svc/web/", prefix=True)
    assert rev == r0 + 5
    assert [e.key for e in (await store.range("svc/"))[0]] == ["svc/api/1", "svc/webmail/1"]
    batch = await next_batch(watch)
    assert [(e.revision - r0, e.kind, e.key) for e in batch] == [
        (5, "delete", "svc/web/1"),
        (5, "delete", "svc/web/2"),
    ]
    assert batch[0].prev is not None and batch[0].prev.value == b"x"
    await watch.aclose()  # type: ignore[attr-defined]


async def test_prefix_revision_counts_deletes(store: Store) -> None:
    r0 = await store.revision()
    assert await store.prefix_revision("kv/") == 0
    await store.put("kv/a", b"1")  # 1
    await store.put("other", b"1")  # 2
    assert await store.prefix_revision("kv/") == r0 + 1
    await store.put("kv/b", b"1")  # 3
    await store.delete("kv/b")  # 4
    await store.put("other", b"2")  # 5
    assert await store.prefix_revision("kv/") == r0 + 4
    assert await store.prefix_revision("kv/a") in (r0 + 1, r0 + 4)  # a sibling's delete may count
    assert await store.prefix_revision("kv/b") == r0 + 4
    assert await store.prefix_revision("other") == r0 + 5
    assert await store.prefix_revision("nothing") == 0
    await store.txn([], [Delete("kv/", prefix=True)])  # 6
    assert await store.prefix_revision("kv/a") == r0 + 6
    assert await store.prefix_revision("kv/") == r0 + 6
    assert await store.prefix_revision("other") == r0 + 5


# -- watches ---------------------------------------------------------------------------------


async def test_watch_replays_then_streams_live_in_order(store: Store) -> None:
    r0 = await store.revision()
    await store.put("app/a", b"1")  # 1
    await store.put("node/n1", b"up")  # 2
    await store.put("app/b", b"2")  # 3
    watch = store.watch("app/", r0)
    replay: list[Event] = []
    while len(replay) < 2:
        replay += await next_batch(watch)
    assert summary(replay, r0) == [(1, "put", "app/a", b"1"), (3, "put", "app/b", b"2")]

    pending = asyncio.ensure_future(next_batch(watch))
    await asyncio.sleep(0.05)
    assert not pending.done()
    await store.put("node/n2", b"up")  # 4: not ours
    await asyncio.sleep(0.05)
    assert not pending.done()
    await store.put("app/a", b"1b")  # 5
    assert summary(await pending, r0) == [(5, "put", "app/a", b"1b")]

    seen: list[tuple[int, str, str, bytes | None]] = []
    for i in range(50):
        await store.put(f"app/k{i % 7}", str(i).encode())
    await store.delete("app/", prefix=True)
    while len(seen) < 57:
        seen += summary(await next_batch(watch))
    revisions = [r for r, *_ in seen]
    assert revisions == sorted(revisions)
    assert [v for _, kind, _, v in seen[:50]] == [str(i).encode() for i in range(50)]
    assert {kind for _, kind, _, _ in seen[50:]} == {"delete"}
    await watch.aclose()  # type: ignore[attr-defined]


async def test_watch_batches_hold_whole_revisions(store: Store) -> None:
    r0 = await store.revision()
    watch = store.watch("t/", r0)
    pending = asyncio.ensure_future(next_batch(watch))
    await asyncio.sleep(0.05)
    await store.txn([], [Put(f"t/{i}", b"") for i in range(100)])
    batch = await pending
    assert len(batch) == 100 and {e.revision for e in batch} == {r0 + 1}
    await watch.aclose()  # type: ignore[attr-defined]


async def test_watchers_end_when_the_store_closes(store: Store) -> None:
    r0 = await store.revision()

    async def consume() -> int:
        count = 0
        async for batch in store.watch("x/", r0):
            count += len(batch)
        return count

    tasks = [asyncio.ensure_future(consume()) for _ in range(3)]
    await asyncio.sleep(0.05)
    await store.put("x/1", b"")
    await asyncio.sleep(0.2)
    await store.close()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 10) == [1, 1, 1]
    with pytest.raises(StoreError):
        await store.get("x/1")


# -- wait (blocking queries) -----------------------------------------------------------------


async def test_wait_wakes_on_change_under_prefix(store: Store) -> None:
    r1 = await store.put("kv/a", b"1")
    # Already past `after`: answers at once.
    assert await store.wait("kv/", 0, 60) == r1

    waiter = asyncio.ensure_future(store.wait("kv/", r1, 60))
    await asyncio.sleep(0.05)
    await store.put("other", b"x")
    await asyncio.sleep(0.05)
    assert not waiter.done()
    deleted = await store.delete("kv/a")
    assert await asyncio.wait_for(waiter, 10) == deleted


async def test_wait_wakes_when_a_lease_deletes_a_key(store: Store) -> None:
    lease = await store.grant(60)
    r1 = await store.put("nodes/n1", b"up", lease=lease)
    waiter = asyncio.ensure_future(store.wait("nodes/", r1, 60))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.revoke(lease)
    woke = await asyncio.wait_for(waiter, 10)
    assert woke > r1 and await store.get("nodes/n1") is None
    assert await store.prefix_revision("nodes/") == woke


async def test_wait_returns_at_timeout(store: Store) -> None:
    r1 = await store.put("kv/a", b"1")
    assert await store.wait("kv/", r1, 0.05) == r1
    assert await store.wait("empty/", 0, 0.05) == 0


async def test_a_thousand_waiters_wake_on_one_write(store: Store) -> None:
    r1 = await store.put("svc/web", b"1")
    same = [asyncio.ensure_future(store.wait("svc/", r1, 60)) for _ in range(500)]
    each = [asyncio.ensure_future(store.wait("svc/web"[: 1 + i % 7], r1, 60))
            for i in range(250)]
    untouched = asyncio.ensure_future(store.wait("svc/api", 0, 60))
    await asyncio.sleep(0.5)
    assert not any(t.done() for t in same + each)
    rev = await store.put("svc/web", b"2")
    results = await asyncio.wait_for(asyncio.gather(*same, *each), 30)
    assert set(results) == {rev}
    assert not untouched.done()
    untouched.cancel()


async def test_cancelled_waiters_do_not_disturb_others(store: Store) -> None:
    a = asyncio.ensure_future(store.wait("p/", 0, 60))
    b = asyncio.ensure_future(store.wait("p/", 0, 60))
    await asyncio.sleep(0.05)
    a.cancel()
    await asyncio.sleep(0.05)
    rev = await store.put("p/x", b"")
    assert await asyncio.wait_for(b, 10) == rev


# -- edges of key ranges ---------------------------------------------------------------------


async def test_prefixes_at_the_edges_of_unicode(store: Store) -> None:
    r0 = await store.revision()
    keys = ["a", "a\ud7ff", "a\ud7ffz", "a\ue000", "a\U0010ffff", "a\U0010ffffb", "b", "\U0010ffff"]
    for key in keys:
        await store.put(key, b"")

    async def under(prefix: str) -> list[str]:
        return [e.key for e in (await store.range(prefix))[0]]

    assert await under("a\ud7ff") == ["a\ud7ff", "a\ud7ffz"]
    assert await under("a\U0010ffff") == ["a\U0010ffff", "a\U0010ffffb"]
    assert await under("\U0010ffff") == ["\U0010ffff"]
    assert await under("a") == sorted(keys)[:6]
    assert await store.prefix_revision("a\ud7ff") == r0 + 3
    assert await store.delete("a\U0010ffff", prefix=True) == r0 + 9
    assert await under("a") == ["a", "a\ud7ff", "a\ud7ffz", "a\ue000"]


async def test_big_prefix_delete_wakes_exactly_the_right_waiters(store: Store) -> None:
    await store.txn([], [Put(f"tasks/{app}/{i:04d}", b"") for app in "abc" for i in range(500)])
    rev = await store.revision()
    hit = ["tasks/b/", "tasks/b/0499", "tasks/", "", "t", "tasks/b/00"]
    missed = ["tasks/a/", "tasks/c/0000", "tasks/bb", "tasks/b/0500", "x"]
    for p in hit + missed:
        await store.prefix_revision(p)
    waits = {p: asyncio.ensure_future(store.wait(p, rev, 60)) for p in hit + missed}
    await asyncio.sleep(0.2)
    deleted = await store.delete("tasks/b/", prefix=True)
    done = await asyncio.wait_for(asyncio.gather(*(waits[p] for p in hit)), 10)
    assert done == [deleted] * len(hit)
    await asyncio.sleep(0.05)
    assert not any(waits[p].done() for p in missed)
    assert await store.prefix_revision("tasks/a/") == rev
    for p in missed:
        waits[p].cancel()
