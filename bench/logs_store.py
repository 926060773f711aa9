"""Figures of the node's log store: append cost, query latency over many stored lines, disk.

Usage: python bench/logs_store.py [--lines 10000000] [--hours 24] [--dir DIR] [--runs 20]

Lines are realistic: 40–300 bytes, about half plain text (access logs, messages) and half
JSON objects, from 10 tasks of 4 apps, with a few words of known frequency to search for.

1. Append: 300,000 lines in batches of 1,000 (what the capture sends at 10k lines/s), into
   a fresh store with synchronous=FULL and again with NORMAL; the process's CPU time
   (user+sys, every thread) while `append` (and, each minute of output, `compact`) runs,
   per 10,000 lines. Then 30,000 lines in batches of 10 (100 lines/s: about one line per
   task per append; compaction merges them).
2. Queries: the store is filled with `--lines` lines spread evenly over `--hours` hours, in
   batches of 20,000; then each query runs `--runs` times, each over another hour (or
   task), and p50/p95 are printed.
3. Disk: the database's bytes (after a WAL checkpoint) per million lines.
4. Retention: every app's age set to 90% of the hours stored; the time to remove the
   oldest tenth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kade.logs.record import LogLine, LogQuery, Retention, Stream  # noqa: E402
from kade.logs.retention import STEP_LINES  # noqa: E402
from kade.logs.store import LogStore  # noqa: E402

S = 10**9
HOUR = 3600 * S
T0 = 1_750_000_000 * S
TASKS = ([("/shop/web", f"shop_web.{i}") for i in range(4)]
         + [("/shop/api", f"shop_api.{i}") for i in range(3)]
         + [("/shop/worker", f"shop_worker.{i}") for i in range(2)]
         + [("/shop/db", "shop_db.0")])
WORDS = str.split(
    "order payment invoice customer cart checkout product stock shipment refund session "
    "token user account login logout cache query handler worker queue job batch retry "
    "upstream backend request response connection pool database index record update "
    "create delete render template config reload started finished processing accepted "
    "rejected pending completed scheduled delayed cancelled mail notify report export "
    "import sync lock unlock webhook callback")
PATHS = ["/", "/products", "/products/{}", "/cart", "/checkout", "/api/orders/{}",
         "/api/customers/{}", "/login", "/static/app.{}.js", "/health"]
RARE = "timeout"  # in ~1 line of 500
LEVELS = ["info"] * 12 + ["debug"] * 4 + ["warn"] * 2 + ["error"]


def make_text(r: random.Random) -> str:
    """One line, 40–300 bytes."""
    want = r.randint(40, 300)
    kind = r.random()
    if kind < 0.3:  # an access log
        path = r.choice(PATHS).format(r.randint(1, 99999))
        status = r.choice([200] * 20 + [201, 204, 301, 304, 404, 500, 502, 503])
        text = (f'10.0.{r.randint(0, 9)}.{r.randint(1, 254)} - - "{r.choice(["GET", "POST"])} '
                f'{path} HTTP/1.1" {status} {r.randint(100, 90000)} {r.random():.3f}s '
                f'"Mozilla/5.0 (X11; Linux x86_64)" req={r.getrandbits(48):012x}')
    elif kind < 0.8:  # a JSON object
        msg = " ".join(r.choices(WORDS, k=r.randint(3, 12)))
        if r.random() < 1 / 500:
            msg += f" {RARE}"
        obj = {"level": r.choice(LEVELS), "msg": msg, "order": r.randint(1, 10**6),
               "customer": f"c-{r.randint(1, 50000)}", "ms": round(r.random() * 250, 2)}
        text = json.dumps(obj)
    else:  # a plain message
        words = r.choices(WORDS, k=40)
        if r.random() < 1 / 500:
            words[r.randint(0, 5)] = RARE
        text = f"{r.choice(LEVELS).upper()} " + " ".join(words)
    if len(text) > want and not text.startswith("{"):
        text = text[:want]
    return text


class Lines:
    """Lines of `TASKS` at evenly spaced times; texts come from a pool (making them is not
    what is measured)."""

    def __init__(self, total: int, hours: float, seed: int = 1) -> None:
        self.r = random.Random(seed)
        self.pool = [make_text(self.r) for _ in range(100_000)]
        self.step = int(hours * HOUR / max(total, 1))
        self.n = 0

    def batch(self, size: int) -> list[LogLine]:
        out = []
        r, pool = self.r, self.pool
        for _ in range(size):
            app, task = TASKS[r.randrange(len(TASKS))]
            stream: Stream = "stderr" if r.random() < 0.1 else "stdout"
            out.append(LogLine(T0 + self.n * self.step, app, task, "v1", "n1", stream,
                               pool[r.randrange(len(pool))], 0))
            self.n += 1
        return out


async def append_cost(base: Path, synchronous: str, total: int = 300_000,
                      batch_size: int = 1000) -> None:
    """`total` lines in appends of `batch_size`, each 100 ms of the task's output."""
    store = await LogStore(base / f"append-{synchronous}-{batch_size}",
                           synchronous=synchronous).open()
    lines = Lines(total, total / batch_size / 36_000)
    cpu = wall = 0.0
    try:
        for i in range(total // batch_size):
            batch = lines.batch(batch_size)
            c, w = time.process_time(), time.perf_counter()
            await store.append(batch)
            if i % 600 == 599:  # a minute of output: the store's timer compacts
                await store.compact()
            cpu += time.process_time() - c
            wall += time.perf_counter() - w
    finally:
        await store.close()
    rate = batch_size * 10
    print(f"append {batch_size:,} lines per 100 ms ({rate:,} lines/s), "
          f"synchronous={synchronous}: {total / wall:,.0f} lines/s while appending; "
          f"CPU {cpu / total * 10_000:.3f} s per 10k lines "
          f"({cpu / total * rate * 100:.2f}% of a core at {rate:,} lines/s); "
          f"{wall / (total // batch_size) * 1000:.2f} ms per append")


async def fill(store: LogStore, total: int, hours: float) -> None:
    lines = Lines(total, hours, seed=2)
    start = time.perf_counter()
    done = 0
    while done < total:
        n = min(20_000, total - done)
        await store.append(lines.batch(n))
        done += n
        if done % 1_000_000 == 0:
            print(f"  filled {done:,} lines ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"filled {total:,} lines over {hours:g} hours in {time.perf_counter() - start:.0f} s")


async def timed(name: str, runs: int, make: Callable[[int], Awaitable[int]]) -> None:
    took, sizes = [], []
    for i in range(runs):
        start = time.perf_counter()
        sizes.append(await make(i))
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    p95 = took[min(len(took) - 1, int(len(took) * 0.95))]
    print(f"{name}: p50 {statistics.median(took):.1f} ms, p95 {p95:.1f} ms "
          f"(answers of {min(sizes):,}–{max(sizes):,} lines)")


async def queries(store: LogStore, hours: float, runs: int) -> None:
    r = random.Random(3)
    span = max(1, int(hours) - 1)

    def hour(i: int) -> tuple[int, int]:
        start = T0 + (r.randrange(span)) * HOUR
        return start, start + HOUR

    async def size(q: LogQuery) -> int:
        return len(await store.query(q))

    async def one_hour(i: int) -> int:
        since, until = hour(i)
        return await size(LogQuery(app="/shop/web", since=since, until=until))

    async def one_hour_tail(i: int) -> int:
        since, until = hour(i)
        return await size(LogQuery(app="/shop/web", since=since, until=until, tail=200))

    async def text_rare(i: int) -> int:
        since, until = hour(i)
        return await size(LogQuery(app="/shop/web", since=since, until=until, text=RARE))

    async def text_common(i: int) -> int:
        since, until = hour(i)
        return await size(LogQuery(app="/shop/web", since=since, until=until,
                                   text="payment refund"))

    async def where(i: int) -> int:
        since, until = hour(i)
        return await size(LogQuery(app="/shop/api", since=since, until=until,
                                   where=(("level", "=", "error"),)))

    async def grep(i: int) -> int:
        since, until = hour(i)
        return await size(LogQuery(app="/shop/web", since=since, until=until,
                                   grep=r'" 50[23] '))

    async def tail(i: int) -> int:
        return await size(LogQuery(task=TASKS[i % len(TASKS)][1], tail=200))

    await timed("1-hour time-bounded, one app (first 10,000 lines)", runs, one_hour)
    await timed("1-hour time-bounded, one app, tail 200", runs, one_hour_tail)
    await timed(f"1-hour full-text word '{RARE}' (1 line in ~500), one app", runs, text_rare)
    await timed("1-hour full-text 'payment refund' (both words), one app", runs, text_common)
    await timed("1-hour grep regex '\" 50[23] ', one app", runs, grep)
    await timed("1-hour where level=error (JSON), one app", runs, where)
    await timed("tail 200 of a task", runs, tail)


def disk(path: Path, total: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = sum(p.stat().st_size for p in path.parent.iterdir() if p.is_file())
    print(f"disk: {size / total * 1e6 / 1024**2:.0f} MiB per million lines "
          f"({size / 1024**2:,.0f} MiB for {total:,})")


async def retention(store: LogStore, hours: float) -> None:
    """The oldest tenth of the hours goes: the app's age bound set just under the store's
    span of time."""
    apps = {app for app, _ in TASKS}
    for app in apps:
        await store.set_retention(app, Retention(max_bytes=1024**4, max_age=hours * 0.9 * 3600))
    start, cpu = time.perf_counter(), time.process_time()
    removed = await store.enforce_retention()
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    steps = max(1, -(-removed // STEP_LINES))
    print(f"retention: {removed:,} lines removed in {took:.1f} s, CPU "
          f"{cpu / max(removed, 1) * 10_000:.3f} s per 10k lines; {steps} steps of at most "
          f"{STEP_LINES:,} lines, {took / steps * 1000:.0f} ms each: what an append may wait")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--skip-append", action="store_true")
    parser.add_argument("--reuse", type=Path, help="a store filled by an earlier run with the "
                        "same --lines and --hours (kept; retention is not run on it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
              f"SQLite {sqlite3.sqlite_version}")
        if not args.skip_append:
            await append_cost(base, "FULL")
            await append_cost(base, "NORMAL")
            await append_cost(base, "FULL", 30_000, 10)  # a quiet node: chunks fill slowly
        now = (T0 + int(args.hours * HOUR)) / S
        store = await LogStore(args.reuse or base / "query", clock=lambda: now).open()
        try:
            if args.reuse is None or not await store.tasks(app="/shop/web"):
                await fill(store, args.lines, args.hours)
            await queries(store, args.hours, args.runs)
            disk(store.path, args.lines)
            if args.reuse is None:
                await retention(store, args.hours)
        finally:
            await store.close()
        print(f"load at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
