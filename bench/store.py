"""Figures of the store, on SQLite and on etcd side by side: durable writes, compare-and-swap
transactions, reads, a range of 10,000 keys, watch latency, and waking many waiters.

Usage: python bench/store.py [--backend sqlite|etcd|both] [--puts N] [--dir DIR]
                             [--etcd URL[,URL...]]
The watchers figure is for 1,000 watchers on SQLite and 100 on etcd, where each is a stream of
its own (the mirror shares one among many readers).
Every put is durable before it returns: on SQLite one fsync of the WAL; on etcd a commit by a
quorum of members (each fsyncs its WAL). Without --etcd, a 3-member etcd cluster is started on
this machine (tests/etcd.py), so its three members share one disk.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kade.store import EtcdStore, Put, SqliteStore, Store, parse_endpoints  # noqa: E402

RANGE_KEYS = 10_000


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def line(label: str, figure: str) -> None:
    print(f"  {label + ':':34}{figure}")


async def measure(store: Store, puts: int, watchers_count: int) -> None:
    start = time.perf_counter()
    for i in range(puts):
        await store.put(f"bench/seq/{i:07d}", b"x" * 100)
    took = time.perf_counter() - start
    line("put, sequential, durable", f"{rate(puts, took)} ({took / puts * 1e3:.2f} ms each)")

    rev = await store.put("bench/cas", b"0")
    rounds = min(puts, 1_000)
    start = time.perf_counter()
    for i in range(rounds):
        rev = await store.put("bench/cas", str(i).encode(), expect=rev)
    took = time.perf_counter() - start
    line("CAS txn (put if unchanged)", f"{rate(rounds, took)} ({took / rounds * 1e3:.2f} ms each)")

    keys = [f"bench/seq/{random.randrange(puts):07d}" for _ in range(min(20_000, puts * 2))]
    start = time.perf_counter()
    for key in keys:
        await store.get(key)
    line("get", rate(len(keys), time.perf_counter() - start))

    for first in range(0, RANGE_KEYS, 1_000):
        await store.txn([], [Put(f"bench/range/{i:05d}", b"v" * 100)
                             for i in range(first, first + 1_000)])
    rounds = 10
    start = time.perf_counter()
    for _ in range(rounds):
        entries, _ = await store.range("bench/range/")
        assert len(entries) == RANGE_KEYS
    line(f"range of {RANGE_KEYS:,} keys", f"{(time.perf_counter() - start) / rounds * 1e3:.1f} ms")

    start = time.perf_counter()
    for i in range(5_000):
        await store.prefix_revision(f"bench/seq/{i % 50}")
    line("prefix_revision (cached)", rate(5_000, time.perf_counter() - start))

    # Watch latency: from just before a put until a watcher has its event.
    got: asyncio.Queue[float] = asyncio.Queue()

    async def follow(after: int) -> None:
        async for _ in store.watch("bench/lat/", after):
            got.put_nowait(time.perf_counter())

    watcher = asyncio.ensure_future(follow(await store.revision()))
    await asyncio.sleep(0.3)
    samples = []
    for i in range(200):
        sent = time.perf_counter()
        await store.put(f"bench/lat/{i}", b"1")
        samples.append((await asyncio.wait_for(got.get(), 10)) - sent)
    watcher.cancel()
    samples.sort()
    line("watch latency, put to event", f"median {statistics.median(samples) * 1e3:.2f} ms, "
         f"p99 {samples[int(len(samples) * 0.99)] * 1e3:.2f} ms")

    for label, prefixes in (
        ("same prefix", ["bench/wait/"] * 1000),
        ("1,000 prefixes", [f"bench/wait/{i}" for i in range(1000)]),
    ):
        after = await store.revision()
        waiters = [asyncio.ensure_future(store.wait(p, after, 60)) for p in prefixes]
        await asyncio.sleep(0.5)  # let every waiter block
        start = time.perf_counter()
        if label == "same prefix":
            await store.put("bench/wait/x", b"1")
        else:
            await store.txn([], [Put(p, b"v") for p in prefixes])
        wrote = time.perf_counter() - start
        await asyncio.gather(*waiters)
        took = time.perf_counter() - start
        line(f"1,000 wait() woken, {label}",
             f"{took * 1e3:.1f} ms (the write itself: {wrote * 1e3:.1f} ms)")

    async def first_event(after: int) -> None:
        async for _ in store.watch("bench/watch/", after):
            return

    after = await store.revision()
    watchers = [asyncio.ensure_future(first_event(after)) for _ in range(watchers_count)]
    await asyncio.sleep(1.0)
    start = time.perf_counter()
    await store.put("bench/watch/x", b"1")
    wrote = time.perf_counter() - start
    await asyncio.gather(*watchers)
    took = time.perf_counter() - start
    line(f"{watchers_count:,} watchers get one event",
         f"{took * 1e3:.1f} ms (the write itself: {wrote * 1e3:.1f} ms)")


async def run_sqlite(data_dir: Path, puts: int) -> None:
    print(f"SQLite ({data_dir})")
    store = SqliteStore(data_dir)
    try:
        await measure(store, puts, 1_000)
        before = await store.revision()
        start = time.perf_counter()
        store.compact(before - 1000)
        line(f"compact {before - 1000:,} revisions",
             f"{(time.perf_counter() - start) * 1e3:.1f} ms (blocks the loop once)")
    finally:
        await store.close()


async def run_etcd(endpoints: list[str], puts: int) -> None:
    print(f"etcd ({', '.join(endpoints)})")
    store = await EtcdStore(endpoints, namespace=f"bench-{random.randrange(1 << 30):x}/",
                            quotas=[]).connect()
    try:
        await measure(store, puts, 100)  # each watch is a stream of its own to etcd
        await store.delete("", prefix=True)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "etcd", "both"], default="both")
    parser.add_argument("--dir", type=Path, help="SQLite data dir (default: a fresh one)")
    parser.add_argument("--etcd", help="etcd endpoints (default: start a 3-member cluster)")
    parser.add_argument("--puts", type=int,
                        help="durable puts to time (default: 10,000 on SQLite, 2,000 on etcd)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kade-bench-store-") as tmp:
        if args.backend in ("sqlite", "both"):
            asyncio.run(run_sqlite(args.dir or Path(tmp) / "sqlite", args.puts or 10_000))
        if args.backend in ("etcd", "both"):
            if args.etcd:
                asyncio.run(run_etcd(parse_endpoints(args.etcd), args.puts or 2_000))
                return
            from tests.etcd import EtcdCluster

            cluster = EtcdCluster(Path(tmp) / "etcd")
            (Path(tmp) / "etcd").mkdir()
            try:
                cluster.start()
                asyncio.run(run_etcd(cluster.endpoints, args.puts or 2_000))
            finally:
                cluster.stop()


if __name__ == "__main__":
    main()
