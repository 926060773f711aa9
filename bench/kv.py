"""KV API and template rendering figures.

    .venv/bin/python bench/kv.py [--requests 2000] [--renders 2000] [--watchers 1000]

Serves the Consul KV API (FastAPI + uvicorn, SqliteStore in a temp dir) on 127.0.0.1 in a
thread and drives it from this process with one keep-alive httpx client, so the figures are
per-request latencies of one client, not the server's saturation throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from kade.api.consul_kv import kv_router
from kade.store import SqliteStore
from kade.templates import InlineTemplate, ServiceEndpoint, render
from kade.templates.render import _compile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self.main()), daemon=True)

    async def main(self) -> None:
        store = SqliteStore(self.data_dir)
        try:
            app = FastAPI()
            app.include_router(kv_router(store))
            self.server = uvicorn.Server(uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                timeout_graceful_shutdown=2))
            await self.server.serve()
        finally:
            await store.close()

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(200):
            if self.server is not None and self.server.started:
                return self
            self.thread.join(0.05)
        raise SystemExit("server did not start")

    def __exit__(self, *_: object) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(10)


def timed(n: int, fn: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def report(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{name:<34} {len(ms) / sum(samples):>9.0f}/s  p50 {statistics.median(ms):6.2f} ms"
          f"  p99 {p99:6.2f} ms")


def bench_api(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp)) as srv, \
            httpx.Client(base_url=f"http://127.0.0.1:{srv.port}") as c:
        report("PUT /v1/kv/<key>", timed(n, lambda i: c.put(f"/v1/kv/b/k{i % 100}",
                                                            content=b"value")))
        report("GET /v1/kv/<key>", timed(n, lambda i: c.get(f"/v1/kv/b/k{i % 100}")))
        report("GET /v1/kv/b/?recurse (100 keys)", timed(n // 4, lambda i: c.get(
            "/v1/kv/b/", params={"recurse": ""})))
        ops = [{"KV": {"Verb": "set", "Key": f"t/k{j}",
                       "Value": base64.b64encode(b"v").decode()}} for j in range(64)]
        report("PUT /v1/txn (64 sets)", timed(n // 10, lambda i: c.put("/v1/txn", json=ops)))

        # Blocking query: the time from a write to the held GET answering.
        wakes = []
        with ThreadPoolExecutor(1) as pool, httpx.Client(
                base_url=f"http://127.0.0.1:{srv.port}", timeout=60) as waiter:

            def held(index: str) -> float:
                waiter.get("/v1/kv/w", params={"index": index, "wait": "30s"})
                return time.perf_counter()

            for i in range(min(n // 10, 200)):
                fut = pool.submit(held, c.get("/v1/kv/w").headers["X-Consul-Index"])
                time.sleep(0.005)  # let the query reach the server and block
                t = time.perf_counter()
                c.put("/v1/kv/w", content=str(i).encode())
                wakes.append(fut.result() - t)
        report("blocking GET: write -> answer", wakes)


def _serve_in_child(ports: multiprocessing.Queue[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp))
        ports.put(srv.port)
        asyncio.run(srv.main())


def bench_watchers(count: int) -> None:
    """`count` blocking GETs held on one key, woken by one PUT: the time until all answered.

    The server runs in a process of its own and the watchers are plain sockets, so the figure
    is the server's, not a Python HTTP client's in the same process."""
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    child = multiprocessing.Process(target=_serve_in_child, args=(ports,), daemon=True)
    child.start()
    try:
        port = ports.get(timeout=30)
        asyncio.run(_watchers(port, count))
    finally:
        child.terminate()
        child.join(10)


async def _held_get(port: int, path: str) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    answered = time.perf_counter()
    writer.close()
    return answered


async def _watchers(port: int, count: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        for _ in range(100):  # the child is still starting
            try:
                await c.put("/v1/kv/watched", content=b"0")
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.1)
        index = (await c.get("/v1/kv/watched")).headers["X-Consul-Index"]
        path = f"/v1/kv/watched?index={index}&wait=60s"
        watchers = [asyncio.create_task(_held_get(port, path)) for _ in range(count)]
        await asyncio.sleep(3 + count / 250)  # every query reaches the server and blocks
        early = sum(1 for w in watchers if w.done())
        start = time.perf_counter()
        await c.put("/v1/kv/watched", content=b"1")
        answered = await asyncio.gather(*watchers)
        waits = sorted((t - start) * 1000 for t in answered)
        print(f"{count} blocked GETs woken by one PUT: all answered after {waits[-1]:.0f} ms "
              f"(p50 {waits[len(waits) // 2]:.0f} ms; {early} answered before the PUT)")


def bench_render(n: int) -> None:
    talk = InlineTemplate("/p.yml", '---\n{{ tree "config/mijndomein" | explode | toYAML }}\n')
    kv = {f"config/mijndomein/s{i}/k{j}": f"value {i}.{j}".encode()
          for i in range(10) for j in range(10)}
    kv.update({f"other/k{i}": b"x" for i in range(1000)})
    report("render talk template (100 keys)", timed(n, lambda i: render(talk, kv=kv)))
    upstreams = InlineTemplate("/nginx.conf", (
        "{{ range $name := split \",\" \"web,api,auth\" }}upstream {{ $name }} {\n"
        "{{- range service $name }}\n  server {{ .Address }}:{{ .Port }};{{ end }}\n}\n"
        "{{ end }}"))
    services = {s: [ServiceEndpoint(s, f"{s}-{i}", f"10.0.0.{i}", 31000 + i)
                    for i in range(20)] for s in ("web", "api", "auth")}
    report("render upstreams (3 x 20 endpoints)",
           timed(n, lambda i: render(upstreams, kv={}, services=services)))

    def uncached(i: int) -> None:
        _compile.cache_clear()
        render(talk, kv=kv)

    report("translate + compile + render", timed(max(1, n // 10), uncached))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--renders", type=int, default=2000)
    p.add_argument("--watchers", type=int, default=1000)
    args = p.parse_args()
    bench_api(args.requests)
    bench_watchers(args.watchers)
    bench_render(args.renders)


if __name__ == "__main__":
    main()
