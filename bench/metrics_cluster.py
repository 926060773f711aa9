"""Figures of metrics in a cluster: a 24-hour range query over 50 series on a server, half of
them on each of two nodes (real node listeners on loopback, signed requests, the binary
answer), beside the same query on one node's own store; and the size and decoding time of
that answer against JSON's.

Usage: python bench/metrics_cluster.py [--series 50] [--runs 20]

Each node's store holds a day of its series every 10 s, closed into hours as a node closes
them; the query is bench/metrics.py's (`sum by (task) (rate(...[5m]))`, step 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kade import model  # noqa: E402
from kade.api.node_api import ServerKeys, node_api  # noqa: E402
from kade.auth.assertions import ServerKey  # noqa: E402
from kade.fanout import NodeFanOut  # noqa: E402
from kade.logs.fanout import publish_key  # noqa: E402
from kade.logs.store import LogStore  # noqa: E402
from kade.metrics.promql import range_query  # noqa: E402
from kade.metrics.remote import NodeMetrics  # noqa: E402
from kade.metrics.tsdb import TSDB  # noqa: E402
from kade.metrics.wire import dump_series, load_series  # noqa: E402
from kade.store.sqlite import SqliteStore  # noqa: E402

QUERY = "sum by (task) (rate(kade_task_cpu_seconds_total[5m]))"
DAY = 86_400


def fill(root: Path, node: str, series: range, start: int, now: float) -> TSDB:
    clock = [float(start)]
    db = TSDB(root, clock=lambda: clock[0]).open()
    for i in range(DAY // 10):
        t = (start + i * 10) * 1000
        clock[0] = start + i * 10  # the store closes hours as they end, as on a node
        db.append([({"__name__": "kade_task_cpu_seconds_total", "task": f"t{s}",
                     "app": f"/bench/a{s % 5}", "node": node}, t, i * 0.01 * (s + 1))
                   for s in series])
        if i % 6 == 0:
            db.flush()
    clock[0] = now
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(runs: int, work: object) -> list[float]:
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        took.append(time.perf_counter() - started)
    return took


async def bench(root: Path, series: int, runs: int) -> None:
    now = time.time()
    start = int(now) - DAY
    half = series // 2
    dbs = {"n1": fill(root / "n1", "n1", range(half), start, now),
           "n2": fill(root / "n2", "n2", range(half, series), start, now)}
    both = fill(root / "one", "n1", range(series), start, now)
    store = SqliteStore(root / "store")
    key = ServerKey("s1")
    await publish_key(store, key, now)
    closing = asyncio.Event()
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    logs = []
    for name, db in dbs.items():
        port = free_port()
        log_store = await LogStore(root / name).open()
        logs.append(log_store)
        server = uvicorn.Server(uvicorn.Config(
            node_api(log_store, name, ServerKeys(store), closing, metrics=db),
            host="127.0.0.1", port=port, log_level="error", lifespan="off"))
        servers.append((server, asyncio.create_task(server.serve())))
        await store.put(model.node_key(name), model.Node(
            name=name, address="127.0.0.1", cpus=1, mem=1,
            api_url=f"http://127.0.0.1:{port}").dump())
    while not all(s.started for s, _ in servers):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    fanout = NodeFanOut(store, key, timeout=30)
    local = TSDB(root / "server").open()
    sources = NodeMetrics(fanout, local)
    low, high = start * 1000, int(now * 1000)

    cluster: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        source = await sources.for_query()
        got = await asyncio.to_thread(range_query, source, QUERY, low, high, 60_000)
        cluster.append(time.perf_counter() - started)
        assert len(got.series) == series and not source.warnings()
    alone = await asyncio.to_thread(timed, runs, lambda: range_query(
        both, QUERY, low, high, 60_000))
    print(f"range query, 24 h of {series} series, step 60 s: on a server over 2 nodes "
          f"p50 {statistics.median(cluster) * 1000:.0f} ms, slowest {max(cluster) * 1000:.0f}"
          f" ms; on one node's own store p50 {statistics.median(alone) * 1000:.0f} ms")

    arrays = both.select_arrays([], low - 300_000, high)
    data = dump_series(arrays)
    decode = statistics.median(timed(5, lambda: load_series(data)))
    text = json.dumps([{"metric": dict(labels), "values": [[int(t), repr(float(v))]
                                                           for t, v in zip(ts, vs, strict=True)]}
                       for labels, ts, vs in arrays]).encode()
    parse = statistics.median(timed(5, lambda: json.loads(text)))
    samples = sum(len(t) for _, t, _ in arrays)
    print(f"a node's answer, {series} series x {samples // series} samples: binary "
          f"{len(data) / 2**20:.1f} MiB, decoded in {decode * 1000:.0f} ms; as JSON "
          f"{len(text) / 2**20:.1f} MiB, parsed in {parse * 1000:.0f} ms")

    closing.set()
    for server, task in servers:
        server.should_exit = True
        await task
    await fanout.close()
    for log_store in logs:
        await log_store.close()
    for db in (*dbs.values(), both, local):
        db.close()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(Path(tmp), args.series, args.runs))


if __name__ == "__main__":
    main()
