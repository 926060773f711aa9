"""Start-to-serving and stop times of the Docker and exec drivers, with busybox httpd.

Prints the median and worst of N rounds for: `start()` returning, first HTTP 200 after
start was called, `stop()` with a 10 s grace (SIGTERM must reach the app: with init it
does, and stop returns long before the grace), `remove()`, and an exec driver exit reaching
`events()` after a SIGKILL.

    .venv/bin/python bench/drivers.py [rounds]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from kade.drivers import DockerDriver, ExecDriver, LaunchSpec
from kade.spec import parse_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(app: dict[str, object], port: int) -> LaunchSpec:
    spec = parse_app({"id": "/bench/drv", "cpus": 0.1, "mem": 32, **app}).app
    return LaunchSpec(task_id=f"bench_drv.{uuid.uuid4().hex[:12]}", app=spec, version="v1",
                      spec_hash="h", node="bench", host="127.0.0.1", host_ports=[port],
                      env={"PORT0": str(port)})


async def first_200(client: httpx.AsyncClient, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.002)
    raise RuntimeError("no answer within 30 s")


def report(name: str, samples: dict[str, list[float]]) -> None:
    for what, values in samples.items():
        ms = [v * 1000 for v in values]
        print(f"{name:7} {what:28} median {statistics.median(ms):7.1f} ms"
              f"   max {max(ms):7.1f} ms   (n={len(ms)})")


async def bench_docker(rounds: int) -> None:
    driver = DockerDriver(publish_ip="127.0.0.1")
    samples: dict[str, list[float]] = {"start() returns": [], "first HTTP 200": [],
                                       "stop(grace=10)": [], "remove()": []}
    async with httpx.AsyncClient(timeout=1) as client:
        for _ in range(rounds):
            port = free_port()
            spec = launch({"container": {"docker": {"image": "kade/site:1"}}}, port)
            t0 = time.perf_counter()
            w = await driver.start(spec, lambda _: None)
            samples["start() returns"].append(time.perf_counter() - t0)
            try:
                await first_200(client, port)
                samples["first HTTP 200"].append(time.perf_counter() - t0)
                t1 = time.perf_counter()
                await driver.stop(w.id, 10)
                samples["stop(grace=10)"].append(time.perf_counter() - t1)
            finally:
                t2 = time.perf_counter()
                await driver.remove(w.id)
                samples["remove()"].append(time.perf_counter() - t2)
    await driver.close()
    report("docker", samples)


async def bench_exec(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        driver = ExecDriver(Path(tmp))
        samples: dict[str, list[float]] = {"start() returns": [], "first HTTP 200": [],
                                           "stop(grace=10)": [], "SIGKILL → exited event": []}
        www = Path(tmp) / "www"
        www.mkdir()
        (www / "health").write_text("ok\n")
        exits: asyncio.Queue[str] = asyncio.Queue()

        async def follow() -> None:
            async for ev in driver.events():
                if ev.kind == "exited":
                    exits.put_nowait(ev.id)
        follower = asyncio.create_task(follow())
        await asyncio.sleep(0)
        async with httpx.AsyncClient(timeout=1) as client:
            for _ in range(rounds):
                port = free_port()
                spec = launch({"cmd": f"exec busybox httpd -f -p 127.0.0.1:$PORT0 -h {www}"},
                              port)
                t0 = time.perf_counter()
                w = await driver.start(spec, lambda _: None)
                samples["start() returns"].append(time.perf_counter() - t0)
                await first_200(client, port)
                samples["first HTTP 200"].append(time.perf_counter() - t0)
                t1 = time.perf_counter()
                await driver.stop(w.id, 10)
                samples["stop(grace=10)"].append(time.perf_counter() - t1)
                await driver.remove(w.id)

                w = await driver.start(launch({"cmd": "exec sleep 60"}, 0), lambda _: None)
                t3 = time.perf_counter()
                os.kill(int(w.id.split(":")[1]), signal.SIGKILL)
                while await exits.get() != w.id:
                    pass
                samples["SIGKILL → exited event"].append(time.perf_counter() - t3)
                await driver.remove(w.id)
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await driver.close()
    report("exec", samples)


async def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    await bench_docker(rounds)
    await bench_exec(rounds)


if __name__ == "__main__":
    asyncio.run(main())
