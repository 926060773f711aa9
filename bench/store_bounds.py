"""Memory and disk of the KV API under big values: does anything grow without bound?

Usage: python bench/store_bounds.py [--writes 1500] [--size 524288]

Serves the Consul KV API over the store kade opens (`open_store`, its default limits) in a
process of its own, then `PUT`s `--writes` values of `--size` bytes: first all to one key
(history: the watch ring and the change log), then each to a new key (the KV budget).
Prints the server's resident memory (VmRSS, and its peak VmHWM) and the size of the data
dir's files before and after, and the status codes the PUTs got.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from kade.api.consul_kv import kv_router
from kade.store import open_store

MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(data_dir: Path, port: int) -> None:
    async def main() -> None:
        store = await open_store(data_dir)
        try:
            app = FastAPI()
            app.include_router(kv_router(store))
            server = uvicorn.Server(uvicorn.Config(
                app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
            await server.serve()
        finally:
            await store.close()

    asyncio.run(main())


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def disk(data_dir: Path) -> str:
    sizes = {p.name: p.stat().st_size for p in sorted(data_dir.iterdir()) if p.is_file()}
    parts = ", ".join(f"{name} {size / MIB:.1f}" for name, size in sizes.items() if size)
    return f"{sum(sizes.values()) / MIB:,.1f} MiB ({parts})"


def memory(pid: int) -> str:
    return (f"RSS {status_kib(pid, 'VmRSS') / 1024:,.0f} MiB "
            f"(peak {status_kib(pid, 'VmHWM') / 1024:,.0f} MiB)")


def run(data_dir: Path, writes: int, size: int) -> None:
    port = free_port()
    child = multiprocessing.Process(target=serve, args=(data_dir, port), daemon=True)
    child.start()
    assert child.pid is not None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            for _ in range(200):
                try:
                    c.put("/v1/kv/bench/warmup", content=b"x")
                    break
                except httpx.ConnectError:
                    time.sleep(0.05)
            print(f"start:                      {memory(child.pid)}, disk {disk(data_dir)}")
            for label, key in (("one key", lambda i: "bench/one"),
                               ("a new key each", lambda i: f"bench/many/{i:05d}")):
                codes: collections.Counter[int] = collections.Counter()
                start = time.perf_counter()
                for i in range(writes):
                    value = os.urandom(16) + b"v" * (size - 16)
                    codes[c.put(f"/v1/kv/{key(i)}", content=value).status_code] += 1
                took = time.perf_counter() - start
                answers = ", ".join(f"{n} x {code}" for code, n in sorted(codes.items()))
                print(f"{writes:,} x {size // 1024} KiB, {label + ':':16}{memory(child.pid)}, "
                      f"disk {disk(data_dir)}; {answers}; {took:.0f} s")
    finally:
        child.terminate()
        child.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=1500)
    parser.add_argument("--size", type=int, default=512 * 1024)
    parser.add_argument("--dir", type=Path, help="data dir (default: a fresh temporary one)")
    args = parser.parse_args()
    if args.dir:
        run(args.dir, args.writes, args.size)
        return
    with tempfile.TemporaryDirectory(prefix="kade-bench-bounds-") as tmp:
        run(Path(tmp), args.writes, args.size)


if __name__ == "__main__":
    main()
