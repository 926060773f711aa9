"""Figures of kade's metrics: the collector's cost, storage per task per day, range-query
latency, and how long an alert takes from the crossing to a webhook.

Usage: python bench/metrics.py [--tasks 50,200] [--passes 6] [--series 50]

Collector: N real containers (busybox, sleeping) are measured by the collector every pass;
its CPU time per pass (the collection threads' own, as kade publishes it) is divided by the
10 s interval: the share of one core it costs at that interval.
Storage: a day of one task's samples (its 11 series every 10 s), closed into chunks, and the
database's bytes divided by the tasks. Queries: 24 h range queries over 50 series (`rate`
by task, step 60 s), 20 runs, median and slowest. Alert latency: a rule with `for: 0` over
a series that crosses its level; the time from the crossing sample's append to the
webhook's receipt, evaluating every second as kade's loop would at `--alert-interval`.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kade.alerts.manager import Alerting  # noqa: E402
from kade.alerts.notify import Dispatcher, Timing, send  # noqa: E402
from kade.metrics.collector import INTERVAL, TASK_METRICS, Collector, Target  # noqa: E402
from kade.metrics.promql import range_query  # noqa: E402
from kade.metrics.tsdb import TSDB  # noqa: E402
from kade.spec.alerts import AlertRule  # noqa: E402
from kade.store.sqlite import SqliteStore  # noqa: E402
from kade.templates.isolate import TemplateWorkers  # noqa: E402

LABEL = f"kade.bench=metrics-{uuid.uuid4().hex[:8]}"


def containers(n: int) -> list[int]:
    ids = []
    for _ in range(n):
        ids.append(subprocess.run(
            ["docker", "run", "-d", "--rm", "--label", LABEL, "--memory", "32m",
             "kade/busybox", "sleep", "3600"], check=True, capture_output=True,
            text=True).stdout.strip())
    pids = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", *ids], check=True,
                          capture_output=True, text=True).stdout.split()
    return [int(p) for p in pids]


def remove_containers() -> None:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


async def collector_cost(pids: list[int], passes: int, root: Path) -> tuple[float, float]:
    db = TSDB(root).open()
    targets = [Target({"app": f"/bench/a{i % 10}", "task": f"t{i}", "node": "n1"}, pid=p)
               for i, p in enumerate(pids)]
    collector = Collector(db, lambda: targets, node="n1")
    await collector.collect()  # warm: files opened once, series created
    spent0 = collector._spent
    walls = []
    for _ in range(passes):
        started = time.monotonic()
        await collector.collect()
        walls.append(time.monotonic() - started)
    cpu = (collector._spent - spent0) / passes
    db.close()
    return cpu, statistics.median(walls)


def storage_per_task_day(root: Path, tasks: int = 20) -> float:
    """A day of what the collector writes for `tasks` tasks, with values that move as real
    ones do: CPU in nanoseconds of varying load, memory in pages that change now and then,
    network counters in bytes, a fixed limit, block I/O and OOM kills mostly still."""
    rnd = random.Random(7)
    day = 86_400
    start = int(time.time()) - day - 3600
    clock = [float(start)]
    db = TSDB(root, clock=lambda: clock[0]).open()
    state = [{"cpu": 0.0, "mem": 50e6 + rnd.randint(0, 100) * 4096.0, "rx": 0.0, "tx": 0.0,
              "rxp": 0.0, "txp": 0.0, "rd": 0.0, "wr": 0.0} for _ in range(tasks)]
    for i in range(day // 10):
        t = (start + i * 10) * 1000 + rnd.randint(-3, 3)
        clock[0] = start + i * 10
        samples = []
        for task, st in enumerate(state):
            st["cpu"] += rnd.randint(0, 80_000_000) / 1e9
            if rnd.random() < 0.2:
                st["mem"] += rnd.randint(-50, 60) * 4096
            got = rnd.randint(0, 40)
            st["rxp"] += got
            st["txp"] += got
            st["rx"] += got * rnd.randint(60, 1500)
            st["tx"] += got * rnd.randint(60, 1500)
            if rnd.random() < 0.01:
                st["wr"] += 4096 * rnd.randint(1, 8)
            values = {"cpu_seconds": st["cpu"], "memory": st["mem"] + 2e6,
                      "working_set": st["mem"], "memory_limit": 268435456.0, "oom_kills": 0.0,
                      "io_read": st["rd"], "io_write": st["wr"], "rx_bytes": st["rx"],
                      "tx_bytes": st["tx"], "rx_packets": st["rxp"], "tx_packets": st["txp"]}
            labels = {"app": f"/bench/a{task % 5}", "task": f"t{task}", "node": "n1"}
            samples += [({**labels, "__name__": name}, t, values[field])
                        for name, field, _, _ in TASK_METRICS]
        db.append(samples)
        if i % 180 == 0:
            db.flush()
    db.flush(force=True)
    db.close()
    size = sum(f.stat().st_size for f in root.iterdir() if f.is_file())
    return size / tasks


def query_latency(root: Path, series: int, runs: int) -> tuple[float, float]:
    day = 86_400
    now = time.time()
    start = int(now) - day
    clock = [float(start)]
    db = TSDB(root, clock=lambda: clock[0]).open()
    for i in range(day // 10):
        t = (start + i * 10) * 1000
        clock[0] = start + i * 10  # the store closes hours as they end, as on a node
        db.append([({"__name__": "kade_task_cpu_seconds_total", "task": f"t{s}",
                     "app": f"/bench/a{s % 5}"}, t, i * 0.01 * (s + 1)) for s in range(series)])
        if i % 6 == 0:
            db.flush()  # a node flushes every minute
    clock[0] = now
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        got = range_query(db, "sum by (task) (rate(kade_task_cpu_seconds_total[5m]))",
                          start * 1000, int(now * 1000), 60_000)
        took.append(time.perf_counter() - started)
        assert len(got.series) == series
    db.close()
    return statistics.median(took), max(took)


async def alert_latency(root: Path, interval: float, rounds: int) -> list[float]:
    received: list[float] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append(time.time())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    store = SqliteStore(root / "store")
    for r in range(rounds):  # a rule a round: each round's alert is a new group
        rule = AlertRule.model_validate({"name": f"Crossed{r}",
                                         "expr": f'level{{round="{r}"}} > 10'})
        await store.put(f"alertrules/Crossed{r}", rule.model_dump_json(by_alias=True).encode())
    db = TSDB(root / "metrics").open()
    workers = TemplateWorkers()
    alerting = Alerting(store, db, workers, builtin=False,
                        dispatcher=Dispatcher(webhooks=[url], timing=Timing()))
    mirror = asyncio.create_task(alerting.mirror.run())
    await alerting.mirror.ready()
    import httpx
    latencies = []
    async with httpx.AsyncClient() as client:
        for r in range(rounds):
            low = time.time()
            db.append([({"__name__": "level", "round": str(r)}, int(low * 1000), 1.0)])
            await asyncio.sleep(interval * 2)
            crossing = time.time()
            db.append([({"__name__": "level", "round": str(r)}, int(crossing * 1000), 20.0)])
            before = len(received)
            while len(received) == before:
                # kade's loop evaluates every `interval`: the crossing waits for the next one
                next_eval = crossing + interval - ((crossing - low) % interval)
                await asyncio.sleep(max(next_eval - time.time(), 0))
                for n in await alerting.evaluate_once(time.time()):
                    await send(client, n)
                await asyncio.sleep(0.01)
            latencies.append(received[-1] - crossing)
    mirror.cancel()
    workers.close()
    db.close()
    await store.close()
    server.shutdown()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="50,200")
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--alert-interval", type=float, default=10.0)
    parser.add_argument("--alert-rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            started = 0
            pids: list[int] = []
            for n in (int(x) for x in args.tasks.split(",")):
                pids += containers(n - started)
                started = n
                cpu, wall = asyncio.run(collector_cost(pids, args.passes, root / f"c{n}"))
                print(f"collector, {n} tasks: {cpu * 1000:.1f} ms CPU per pass "
                      f"({cpu / INTERVAL * 100:.2f}% of one core at a {INTERVAL:g} s interval), "
                      f"{wall * 1000:.0f} ms wall per pass")
        finally:
            remove_containers()
        per_task = storage_per_task_day(root / "storage")
        print(f"storage: {per_task / 1024:.0f} KiB per task per day (11 series every 10 s, "
              f"chunks + 1-minute rollups)")
        p50, worst = query_latency(root / "query", args.series, 20)
        print(f"range query, 24 h of {args.series} series, step 60 s: p50 {p50 * 1000:.0f} ms, "
              f"slowest {worst * 1000:.0f} ms")
        took = asyncio.run(alert_latency(root / "alert", args.alert_interval,
                                         args.alert_rounds))
        print(f"alert latency, crossing to webhook (interval {args.alert_interval:g} s, for 0): "
              + ", ".join(f"{t:.2f} s" for t in took))


if __name__ == "__main__":
    main()
