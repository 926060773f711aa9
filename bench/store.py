"""Figures of the embedded store: durable writes, reads, ranges, and waking many waiters.

Usage: python bench/store.py [--dir DIR] [--puts N]
Every put is durable (WAL, synchronous=FULL) before it returns, so puts/s is bound by fsync.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from kade.store import Put, SqliteStore


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


async def run(data_dir: Path, puts: int) -> None:
    store = SqliteStore(data_dir)
    try:
        start = time.perf_counter()
        for i in range(puts):
            await store.put(f"bench/seq/{i:07d}", b"x" * 100)
        took = time.perf_counter() - start
        print(
            f"put, sequential, durable:      {rate(puts, took)} ({took / puts * 1e3:.2f} ms each)"
        )

        keys = [f"bench/seq/{random.randrange(puts):07d}" for _ in range(20_000)]
        start = time.perf_counter()
        for key in keys:
            await store.get(key)
        print(f"get:                           {rate(len(keys), time.perf_counter() - start)}")

        await store.txn([], [Put(f"bench/range/{i:04d}", b"v") for i in range(1000)])
        rounds = 100
        start = time.perf_counter()
        for _ in range(rounds):
            entries, _ = await store.range("bench/range/")
            assert len(entries) == 1000
        took = (time.perf_counter() - start) / rounds
        print(f"range of 1,000 keys:           {took * 1e3:.2f} ms")

        start = time.perf_counter()
        for i in range(20_000):
            await store.prefix_revision(f"bench/seq/{i % 50}")
        print(f"prefix_revision (cached):      {rate(20_000, time.perf_counter() - start)}")

        for label, prefixes in (
            ("same prefix", ["bench/wait/"] * 1000),
            ("1,000 prefixes", [f"bench/wait/{i}" for i in range(1000)]),
        ):
            after = await store.revision()
            waiters = [asyncio.ensure_future(store.wait(p, after, 60)) for p in prefixes]
            await asyncio.sleep(0.2)  # let every waiter block
            start = time.perf_counter()
            if label == "same prefix":
                await store.put("bench/wait/x", b"1")
            else:
                await store.txn([], [Put(p, b"v") for p in prefixes])
            wrote = time.perf_counter() - start
            await asyncio.gather(*waiters)
            took = time.perf_counter() - start
            print(
                f"1,000 wait() woken, {label + ':':16}{took * 1e3:.1f} ms"
                f" (the write itself: {wrote * 1e3:.1f} ms)"
            )

        async def first_event(after: int) -> None:
            async for _ in store.watch("bench/watch/", after):
                return

        after = await store.revision()
        watchers = [asyncio.ensure_future(first_event(after)) for _ in range(1000)]
        await asyncio.sleep(0.2)
        start = time.perf_counter()
        await store.put("bench/watch/x", b"1")
        wrote = time.perf_counter() - start
        await asyncio.gather(*watchers)
        took = time.perf_counter() - start
        print(
            f"1,000 watchers get one event:  {took * 1e3:.1f} ms"
            f" (the write itself: {wrote * 1e3:.1f} ms)"
        )

        before = await store.revision()
        start = time.perf_counter()
        store.compact(before - 1000)
        took = time.perf_counter() - start
        print(f"compact {before - 1000:,} revisions:  {took * 1e3:.1f} ms (blocks the loop once)")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, help="data dir (default: a fresh temporary one)")
    parser.add_argument("--puts", type=int, default=10_000)
    args = parser.parse_args()
    if args.dir:
        asyncio.run(run(args.dir, args.puts))
        return
    with tempfile.TemporaryDirectory(prefix="kade-bench-store-") as tmp:
        asyncio.run(run(Path(tmp), args.puts))


if __name__ == "__main__":
    main()
