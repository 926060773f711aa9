"""The embedded store, as the components built on it see it."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kade.store import (
    CasFailed,
    Compacted,
    Compare,
    Delete,
    Entry,
    Event,
    Put,
    SqliteStore,
    StoreError,
    open_store,
)
from kade.store.history import Ring, read_log

pytestmark = pytest.mark.timeout(120)

WRITER = Path(__file__).with_name("store_writer.py")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "data")
    yield s
    await s.close()


async def next_batch(watch: AsyncIterator[list[Event]], timeout: float = 10) -> list[Event]:
    return await asyncio.wait_for(anext(watch), timeout)


def summary(events: list[Event]) -> list[tuple[int, str, str, bytes | None]]:
    return [(e.revision, e.kind, e.key, e.entry.value if e.entry else None) for e in events]


# -- reads and writes ------------------------------------------------------------------------


async def test_put_get_range_delete(store: SqliteStore) -> None:
    assert await store.revision() == 0
    assert await store.get("app/web") is None
    assert await store.range("") == ([], 0)

    await store.put("app/web", b"spec 1")
    await store.put("app/api", b"spec 2")
    await store.put("apple", b"fruit")
    await store.put("app/ünïcode/☃", b"\x00\xff")

    web = await store.get("app/web")
    assert web is not None and web.value == b"spec 1"
    entries, rev = await store.range("app/")
    assert [e.key for e in entries] == ["app/api", "app/web", "app/ünïcode/☃"]
    assert rev == 4
    assert (await store.get("app/ünïcode/☃")) is not None

    assert await store.delete("app/web") == 5
    assert await store.get("app/web") is None
    assert [e.key for e in (await store.range("app"))[0]] == ["app/api", "app/ünïcode/☃", "apple"]


async def test_revisions_follow_etcd(store: SqliteStore) -> None:
    assert await store.put("k", b"a") == 1
    assert await store.put("other", b"x") == 2
    assert await store.put("k", b"b") == 3
    k = await store.get("k")
    assert k is not None
    assert (k.create_revision, k.mod_revision, k.version) == (1, 3, 2)

    assert await store.delete("k") == 4
    assert await store.delete("k") == 4  # nothing deleted: no new revision
    assert await store.delete("nothing/", prefix=True) == 4
    assert await store.revision() == 4

    assert await store.put("k", b"c") == 5  # re-created: a new life
    k = await store.get("k")
    assert k is not None
    assert (k.create_revision, k.mod_revision, k.version) == (5, 5, 1)


async def test_revision_never_goes_back_after_deleting_everything(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    await s.put("a", b"1")
    await s.put("b", b"2")
    await s.delete("", prefix=True)
    assert await s.revision() == 3
    await s.close()
    s = SqliteStore(tmp_path)
    assert await s.revision() == 3
    assert await s.put("a", b"again") == 4
    await s.close()


async def test_put_with_expect_is_compare_and_swap(store: SqliteStore) -> None:
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
    assert await store.delete("leader", expect=rev2) == rev2 + 1
    assert await store.get("leader") is None


async def test_keys_and_values_are_checked(store: SqliteStore) -> None:
    with pytest.raises(ValueError):
        await store.put("", b"x")
    with pytest.raises(TypeError):
        await store.put("k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.put("\ud800", b"x")
    with pytest.raises(ValueError):
        await store.delete("k", expect=1, prefix=True)
    assert await store.revision() == 0


# -- transactions ----------------------------------------------------------------------------


async def test_txn_success_and_failure_branches(store: SqliteStore) -> None:
    await store.put("cfg/a", b"1")
    a = await store.get("cfg/a")
    assert a is not None

    ok = await store.txn(
        [Compare("cfg/a", a.mod_revision), Compare("cfg/b", 0)],
        [Put("cfg/a", b"2"), Put("cfg/b", b"new"), Delete("cfg/c")],
        [Put("cfg/failed", b"yes")],
    )
    assert ok.succeeded and ok.revision == 2  # several ops, one revision
    assert summary(list(ok.events)) == [(2, "put", "cfg/a", b"2"), (2, "put", "cfg/b", b"new")]

    lost = await store.txn(
        [Compare("cfg/a", a.mod_revision)],  # stale now
        [Put("cfg/a", b"3")],
        [Put("cfg/failed", b"yes")],
    )
    assert not lost.succeeded and lost.revision == 3
    entry = await store.get("cfg/a")
    assert entry is not None and entry.value == b"2"
    assert await store.get("cfg/failed") is not None

    nothing = await store.txn([Compare("cfg/a", 1)], [Put("x", b"")])
    assert not nothing.succeeded and nothing.revision == 3 and nothing.events == ()


async def test_txn_replaces_a_subtree_in_one_revision(store: SqliteStore) -> None:
    await store.put("tree/old", b"1")
    result = await store.txn([], [Delete("tree/", prefix=True), Put("tree/new", b"2")])
    assert result.revision == 2
    entries, _ = await store.range("tree/")
    assert [(e.key, e.create_revision) for e in entries] == [("tree/new", 2)]


async def test_txn_is_atomic_when_an_op_fails_midway(store: SqliteStore) -> None:
    await store.put("a", b"before")
    released = memoryview(b"payload")
    released.release()  # reading it fails, after the first op was applied
    with pytest.raises(ValueError):
        await store.txn([], [Put("a", b"after"), Delete("a"), Put("b", released)])  # type: ignore[arg-type]
    entry = await store.get("a")
    assert entry is not None and entry.value == b"before"
    assert await store.get("b") is None
    assert await store.revision() == 1
    assert await store.put("b", b"ok") == 2  # the store is still usable


# -- prefix delete and prefix revision -------------------------------------------------------


async def test_prefix_delete_is_one_revision(store: SqliteStore) -> None:
    for key in ("svc/web/1", "svc/web/2", "svc/webmail/1", "svc/api/1"):
        await store.put(key, b"x")
    watch = store.watch("svc/", 4)
    rev = await store.delete("svc/web/", prefix=True)
    assert rev == 5
    assert [e.key for e in (await store.range("svc/"))[0]] == ["svc/api/1", "svc/webmail/1"]
    batch = await next_batch(watch)
    assert [(e.revision, e.kind, e.key) for e in batch] == [
        (5, "delete", "svc/web/1"),
        (5, "delete", "svc/web/2"),
    ]
    assert batch[0].prev is not None and batch[0].prev.value == b"x"
    await watch.aclose()  # type: ignore[attr-defined]


async def test_prefix_revision_counts_deletes_and_survives_restart(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    assert await s.prefix_revision("kv/") == 0
    await s.put("kv/a", b"1")  # 1
    await s.put("other", b"1")  # 2
    assert await s.prefix_revision("kv/") == 1
    assert await s.prefix_revision("") == 2
    await s.put("kv/b", b"1")  # 3
    await s.delete("kv/b")  # 4
    await s.put("other", b"2")  # 5
    assert await s.prefix_revision("kv/") == 4
    assert await s.prefix_revision("kv/a") == 1
    assert await s.prefix_revision("kv/b") == 4
    assert await s.prefix_revision("other") == 5
    assert await s.prefix_revision("nothing") == 0
    await s.close()

    s = SqliteStore(tmp_path)
    assert await s.prefix_revision("kv/") == 4
    assert await s.prefix_revision("kv/b") == 4
    assert await s.prefix_revision("kv/a") == 1
    await s.put("kv/b", b"back")
    assert await s.prefix_revision("kv/") == 6
    await s.close()


async def test_prefix_revision_stays_monotonic_after_compaction(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path, history=5)
    await s.put("jobs/x/1", b"")
    await s.delete("jobs/x/1")  # 2: a tombstone that compaction will fold away
    for i in range(20):
        await s.put(f"noise/{i}", b"")
    assert await s.prefix_revision("jobs/") == 2
    assert await s.prefix_revision("jobs/x/1") >= 2
    await s.close()
    s = SqliteStore(tmp_path, history=5)
    assert await s.prefix_revision("jobs/") == 2
    assert await s.prefix_revision("noise/") == 22
    await s.close()


# -- watches ---------------------------------------------------------------------------------


async def test_watch_replays_then_streams_live_in_order(store: SqliteStore) -> None:
    await store.put("app/a", b"1")  # 1
    await store.put("node/n1", b"up")  # 2
    await store.put("app/b", b"2")  # 3
    watch = store.watch("app/", 0)
    replay = await next_batch(watch)
    assert summary(replay) == [(1, "put", "app/a", b"1"), (3, "put", "app/b", b"2")]

    pending = asyncio.ensure_future(next_batch(watch))
    await asyncio.sleep(0.01)
    assert not pending.done()
    await store.put("node/n2", b"up")  # 4: not ours
    await asyncio.sleep(0.01)
    assert not pending.done()
    await store.put("app/a", b"1b")  # 5
    assert summary(await pending) == [(5, "put", "app/a", b"1b")]

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


async def test_watch_batches_hold_whole_revisions(store: SqliteStore) -> None:
    watch = store.watch("", 0)
    pending = asyncio.ensure_future(next_batch(watch))
    await asyncio.sleep(0.01)
    await store.txn([], [Put(f"t/{i}", b"") for i in range(100)])
    batch = await pending
    assert len(batch) == 100 and {e.revision for e in batch} == {1}
    await watch.aclose()  # type: ignore[attr-defined]


async def test_watch_from_the_log_matches_memory(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    await s.put("a/1", b"x")
    await s.txn([], [Put("a/2", b"y"), Put("b", b"z")])
    await s.put("a/1", b"x2")
    await s.delete("a/", prefix=True)
    from_memory: list[Event] = []
    watch = s.watch("a/", 0)
    while len(from_memory) < 5:
        from_memory += await next_batch(watch)
    await watch.aclose()  # type: ignore[attr-defined]
    await s.close()

    s = SqliteStore(tmp_path)  # nothing in memory now: read from the change log
    from_log: list[Event] = []
    watch = s.watch("a/", 0)
    while len(from_log) < 5:
        from_log += await next_batch(watch)
    assert from_log == from_memory
    await watch.aclose()  # type: ignore[attr-defined]
    await s.close()


async def test_slow_watcher_that_falls_behind_memory_misses_nothing(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path, ring=3)
    watch = s.watch("k/", 0)
    await s.put("k/0", b"0")
    first = await next_batch(watch)
    for i in range(1, 40):
        await s.put(f"k/{i}", str(i).encode())
    events = list(first)
    while len(events) < 40:
        events += await next_batch(watch)
    assert [e.key for e in events] == [f"k/{i}" for i in range(40)]
    assert [e.revision for e in events] == list(range(1, 41))
    await watch.aclose()  # type: ignore[attr-defined]
    await s.close()


async def test_watch_before_compacted_history_raises(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path, history=10)
    for i in range(30):
        await s.put(f"k/{i}", b"")
    with pytest.raises(Compacted) as info:
        await next_batch(s.watch("k/", 0))
    assert info.value.revision == 0 and info.value.compacted >= 20
    kept = s.watch("k/", 20)
    events = await next_batch(kept)
    assert [e.revision for e in events] == list(range(21, 31))
    await kept.aclose()  # type: ignore[attr-defined]
    await s.close()
    s = SqliteStore(tmp_path, history=10)  # compaction point is durable
    with pytest.raises(Compacted):
        await next_batch(s.watch("", 5))
    await s.close()


async def test_watcher_overtaken_by_compaction_is_told(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path, history=5)
    watch = s.watch("k/", 0)
    await s.put("k/0", b"")
    assert [e.revision for e in await next_batch(watch)] == [1]
    for i in range(30):  # the watcher does not read meanwhile
        await s.put(f"k/{i}", b"")
    with pytest.raises(Compacted) as info:
        await next_batch(watch)
    assert info.value.revision == 1
    await s.close()


async def test_watchers_end_when_the_store_closes(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)

    async def consume() -> int:
        count = 0
        async for batch in s.watch("x/", 0):
            count += len(batch)
        return count

    tasks = [asyncio.ensure_future(consume()) for _ in range(3)]
    await asyncio.sleep(0.01)
    await s.put("x/1", b"")
    await asyncio.sleep(0.01)
    await s.close()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 10) == [1, 1, 1]
    with pytest.raises(StoreError):
        await s.get("x/1")


# -- wait (blocking queries) -----------------------------------------------------------------


async def test_wait_wakes_on_change_under_prefix(store: SqliteStore) -> None:
    await store.put("kv/a", b"1")
    # Already past `after`: answers at once.
    assert await store.wait("kv/", 0, 60) == 1

    waiter = asyncio.ensure_future(store.wait("kv/", 1, 60))
    await asyncio.sleep(0.01)
    await store.put("other", b"x")
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await store.delete("kv/a")
    assert await asyncio.wait_for(waiter, 10) == 3


async def test_wait_returns_at_timeout(store: SqliteStore) -> None:
    await store.put("kv/a", b"1")
    assert await store.wait("kv/", 1, 0.05) == 1
    assert await store.wait("empty/", 0, 0.05) == 0


async def test_a_thousand_waiters_wake_on_one_write(store: SqliteStore) -> None:
    await store.put("svc/web", b"1")
    same = [asyncio.ensure_future(store.wait("svc/", 1, 60)) for _ in range(500)]
    each = [asyncio.ensure_future(store.wait("svc/web"[: 1 + i % 7], 1, 60)) for i in range(250)]
    root = [asyncio.ensure_future(store.wait("", 1, 60)) for _ in range(250)]
    untouched = asyncio.ensure_future(store.wait("svc/api", 0, 60))
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in same + each + root)
    rev = await store.put("svc/web", b"2")
    results = await asyncio.wait_for(asyncio.gather(*same, *each, *root), 10)
    assert set(results[:500]) == {rev}
    assert set(results) == {rev}
    assert not untouched.done()
    untouched.cancel()


async def test_cancelled_waiters_do_not_disturb_others(store: SqliteStore) -> None:
    a = asyncio.ensure_future(store.wait("p/", 0, 60))
    b = asyncio.ensure_future(store.wait("p/", 0, 60))
    await asyncio.sleep(0.01)
    a.cancel()
    await asyncio.sleep(0.01)
    await store.put("p/x", b"")
    assert await asyncio.wait_for(b, 10) == 1


# -- the data directory ----------------------------------------------------------------------


async def test_restart_keeps_data_and_revision(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "new" / "dir")
    await s.put("a", b"1")
    await s.put("a", b"2")
    await s.put("b", b"3")
    await s.close()
    assert (tmp_path / "new" / "dir" / "state.db").exists()

    s = await open_store(tmp_path / "new" / "dir")
    assert await s.revision() == 3
    a = await s.get("a")
    assert a is not None and (a.value, a.create_revision, a.mod_revision, a.version) == (
        b"2",
        1,
        2,
        2,
    )
    assert await s.put("c", b"4") == 4
    await s.close()


async def test_one_process_owns_the_data_dir(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path)
    with pytest.raises(StoreError, match=f"data dir {tmp_path} is in use by another kade process"):
        SqliteStore(tmp_path)
    await first.put("k", b"v")
    await first.close()
    second = SqliteStore(tmp_path)  # released on close
    assert await second.revision() == 1
    await second.close()


def _read_acks(proc: subprocess.Popen[str], want: int, deadline: float) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while len(lines) < want and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    return lines


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    env: dict[str, Any] = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(tmp_path), "1000000"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = _read_acks(proc, 300, time.monotonic() + 60)
        assert len(lines) == 300, "the writer did not start writing"
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    acked = [line.split() for line in lines + rest.splitlines() if line != "ready"]
    assert len(acked) < 1_000_000, "the writer finished before it was killed"

    async def check() -> None:
        s = SqliteStore(tmp_path)  # the lock died with the process
        for revision, key in acked:
            entry = await s.get(key)
            assert entry is not None, f"acknowledged {key} at {revision} was lost"
            assert entry.mod_revision == int(revision)
        assert await s.revision() >= int(acked[-1][0])
        await s.close()

    asyncio.run(check())


# -- edges of key ranges ---------------------------------------------------------------------


async def test_prefixes_at_the_edges_of_unicode(store: SqliteStore) -> None:
    keys = ["a", "a\ud7ff", "a\ud7ffz", "a\ue000", "a\U0010ffff", "a\U0010ffffb", "b", "\U0010ffff"]
    for key in keys:
        await store.put(key, b"")

    async def under(prefix: str) -> list[str]:
        return [e.key for e in (await store.range(prefix))[0]]

    assert await under("a\ud7ff") == ["a\ud7ff", "a\ud7ffz"]
    assert await under("a\U0010ffff") == ["a\U0010ffff", "a\U0010ffffb"]
    assert await under("\U0010ffff") == ["\U0010ffff"]
    assert await under("a") == sorted(keys)[:6]
    assert await store.prefix_revision("a\ud7ff") == 3
    assert await store.delete("a\U0010ffff", prefix=True) == 9
    assert await under("a") == ["a", "a\ud7ff", "a\ud7ffz", "a\ue000"]


async def test_big_prefix_delete_wakes_exactly_the_right_waiters(store: SqliteStore) -> None:
    await store.txn([], [Put(f"tasks/{app}/{i:04d}", b"") for app in "abc" for i in range(500)])
    rev = await store.revision()
    hit = ["tasks/b/", "tasks/b/0499", "tasks/", "", "t", "tasks/b/00"]
    missed = ["tasks/a/", "tasks/c/0000", "tasks/bb", "tasks/b/0500", "x"]
    for p in hit + missed:  # cache every answer before the write
        await store.prefix_revision(p)
    waits = {p: asyncio.ensure_future(store.wait(p, rev, 60)) for p in hit + missed}
    await asyncio.sleep(0.01)
    deleted = await store.delete("tasks/b/", prefix=True)
    done = await asyncio.wait_for(asyncio.gather(*(waits[p] for p in hit)), 10)
    assert done == [deleted] * len(hit)
    await asyncio.sleep(0.01)
    assert not any(waits[p].done() for p in missed)
    assert await store.prefix_revision("tasks/a/") == rev
    for p in missed:
        waits[p].cancel()


# -- bounds of history -----------------------------------------------------------------------


def _events(rev: int, size: int, count: int = 1) -> list[Event]:
    return [Event(rev, "put", f"k/{i}", Entry(f"k/{i}", b"v" * size, rev, rev, 1))
            for i in range(count)]


def test_the_ring_keeps_revisions_within_count_and_bytes() -> None:
    ring = Ring(1, revisions=5, budget=10_000)
    for rev in range(1, 4):
        ring.add(rev, _events(rev, 100))
    assert (len(ring), ring.start) == (3, 1)
    assert [e.revision for e in ring.since("k/", 0, 3)] == [1, 2, 3]
    for rev in range(4, 9):
        ring.add(rev, _events(rev, 100))
    assert (len(ring), ring.start) == (5, 4)  # the count binds
    assert not ring.holds_after(2) and ring.holds_after(3)
    ring.add(9, _events(9, 4_000, count=2))
    assert ring.bytes <= 10_000 and ring.start == 7  # the bytes bind
    ring.add(10, _events(10, 20_000))  # larger than the budget: not held at all
    assert (len(ring), ring.bytes, ring.start) == (0, 0, 11)
    assert ring.holds_after(10) and not ring.holds_after(9)
    ring.add(11, _events(11, 10))
    ring.forget_through(11)
    assert (len(ring), ring.start) == (0, 12)


async def test_watchers_miss_nothing_when_big_values_pass_the_ring(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path, ring_bytes=20_000)
    watch = s.watch("k/", 0)
    await s.put("k/0", b"0")
    events = list(await next_batch(watch))
    for i in range(1, 30):  # the watcher does not read meanwhile
        await s.put(f"k/{i}", str(i).encode() * 3_000)
    while len(events) < 30:
        events += await next_batch(watch)
    assert [e.key for e in events] == [f"k/{i}" for i in range(30)]
    assert [len(e.entry.value) for e in events if e.entry][1:3] == [3_000, 3_000]
    await watch.aclose()  # type: ignore[attr-defined]
    await s.close()


async def test_the_log_is_bounded_by_bytes_and_the_file_with_it(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path, history_bytes=50_000)
    for _ in range(500):  # 5 MB of history: a new 5 KB value, and the one it replaced
        await s.put("big", os.urandom(5_000))
    with pytest.raises(Compacted) as info:
        await next_batch(s.watch("", 0))
    assert info.value.compacted > 490  # 4 or 5 revisions of 10 KB kept
    recent = s.watch("", 496)
    assert [e.revision for e in await next_batch(recent)] == list(range(497, 501))
    await recent.aclose()  # type: ignore[attr-defined]
    await s.close()
    assert (tmp_path / "state.db").stat().st_size < 500_000  # freed pages were reused


async def test_the_log_is_read_in_pages_of_whole_revisions(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    for rev in range(1, 5):
        await s.txn([], [Put(f"p/{rev}/{i}", b"x" * 1_000) for i in range(3)])
    await s.close()
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        events, end = read_log(db, "p/", 0, 4, page_bytes=1)
        assert ([e.revision for e in events], end) == ([1, 1, 1], 1)
        events, end = read_log(db, "p/", 1, 4, page_bytes=5_000)
        assert ([e.revision for e in events], end) == ([2, 2, 2, 3, 3, 3], 3)
        events, end = read_log(db, "p/", 3, 4)
        assert ([e.revision for e in events], end) == ([4, 4, 4], 4)
    finally:
        db.close()


def _auto_vacuum(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA auto_vacuum").fetchone()[0])
    finally:
        db.close()


async def test_space_freed_by_compaction_goes_back_to_the_file_system(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path, quotas=[])
    for i in range(40):
        await s.put(f"blob/{i}", os.urandom(1024 * 1024))
    await s.delete("blob/", prefix=True)
    full = (tmp_path / "state.db").stat().st_size
    s.compact(await s.revision())
    await s.close()
    assert (tmp_path / "state.db").stat().st_size < full // 4
    assert _auto_vacuum(tmp_path / "state.db") == 2  # incremental


async def test_a_file_of_an_older_kade_is_converted_once(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    await s.put("k", b"v")
    await s.close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("PRAGMA auto_vacuum=NONE")
    db.execute("VACUUM")
    db.close()
    assert _auto_vacuum(tmp_path / "state.db") == 0
    s = SqliteStore(tmp_path)
    k = await s.get("k")
    assert k is not None and k.value == b"v" and await s.revision() == 1
    await s.close()
    assert _auto_vacuum(tmp_path / "state.db") == 2
