"""The embedded SQLite store: what only it does (files, restarts, its history). What every
backend does is in test_store_protocol.py."""

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
    Compacted,
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


# -- prefix delete and prefix revision -------------------------------------------------------


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
