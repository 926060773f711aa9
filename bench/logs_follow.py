"""Follow latency: from a line written by a task to the line arriving at a client of
`/v1/logs?follow=1` (server-sent events).

Usage: python bench/logs_follow.py [--lines 400] [--interval-ms 50] [--instances 1]

Against a fresh `kade up`, an app of `kade/busybox` writes a line every `--interval-ms`; a
client follows the app's lines. A line's moment of writing is its stamp (Docker's, taken when
the engine read it from the container's stdout; the exec driver's capture stamps its own);
its arrival is `time.time()` when the event is read. Both are this machine's wall clock.
Prints p50, p95 and the slowest over `--lines` lines (the first second is left out: the
stream's history).

`--direct`: the API's part alone. Lines are appended straight into a log store (stamped
when appended, one durable append each) that a `/v1/logs` in this process serves; the figure
is append → client, without Docker and the capture's batching (it waits up to 100 ms for a
batch to gather, `kade.agent.logs.FLUSH_EVERY`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn
from _kade import running_kade, wait_for
from fastapi import FastAPI
from tests.integration.harness import free_port

from kade.api.closing import closing_event
from kade.api.logs import logs_router
from kade.logs.record import LogLine
from kade.logs.store import LogStore


def report(delays: list[float], what: str) -> None:
    delays.sort()
    p95 = delays[min(len(delays) - 1, int(len(delays) * 0.95))]
    print(f"follow latency over {len(delays)} lines ({what}): p50 "
          f"{statistics.median(delays):.1f} ms, p95 {p95:.1f} ms, max {delays[-1]:.1f} ms")


async def direct(n: int, pause: float) -> None:
    store = await LogStore(Path(tempfile.mkdtemp(prefix="kade-bench-logs-"))).open()
    app = FastAPI()
    app.include_router(logs_router(store))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
        await asyncio.sleep(0.02)
    delays: list[float] = []

    async def write() -> None:
        for i in range(n + 10):
            await store.append([LogLine(time.time_ns(), "/bench/direct", "bench_direct.1",
                                        "v1", "n1", "stdout", f"tick {i}", 0)])
            await asyncio.sleep(pause)

    async with httpx.AsyncClient(timeout=60) as client, client.stream(
            "GET", f"http://127.0.0.1:{port}/v1/logs",
            params={"app": "/bench/direct", "follow": "1", "tail": "0"}) as response:
        writer = asyncio.create_task(write())
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "line":
                delays.append((time.time() - json.loads(line[6:])["time"]) * 1000)
                if len(delays) >= n:
                    break
        writer.cancel()
    closing_event(app).set()
    server.should_exit = True
    await serving
    await store.close()
    report(delays, f"appended to the store every {pause * 1000:.0f} ms, served in process")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--interval-ms", type=int, default=50)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--direct", action="store_true")
    args = parser.parse_args()
    pause = args.interval_ms / 1000
    if args.direct:
        asyncio.run(direct(args.lines, pause))
        return
    with running_kade("logs-follow") as kade:
        kade.deploy({"id": "/bench/ticker", "instances": args.instances, "cpus": 0.1,
                     "mem": 16, "container": {"docker": {"image": "kade/busybox:latest"}},
                     "cmd": f"i=0; while true; do echo tick $i; i=$((i+1)); sleep {pause}; "
                            "done"})
        wait_for(lambda: len(kade.running_tasks("/bench/ticker")) == args.instances, 90,
                 "running tasks")
        wait_for(lambda: kade.get("/v1/logs", app="/bench/ticker", tail=1), 60, "a first line")
        delays: list[float] = []
        opened = time.time()
        with httpx.stream("GET", f"http://{kade.addr}/v1/logs", headers=kade.auth,
                          params={"app": "/bench/ticker", "follow": "1", "tail": "0"},
                          timeout=60) as response:
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "line":
                    arrived = time.time()
                    stamp = json.loads(line[6:])["time"]
                    if stamp > opened + 1.0:
                        delays.append((arrived - stamp) * 1000)
                    if len(delays) >= args.lines:
                        break
        report(delays, f"{args.instances} task(s) of kade up, a line every "
                       f"{args.interval_ms} ms each")


if __name__ == "__main__":
    main()
