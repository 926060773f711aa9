"""Zero downtime figures: constant load through kade's router during rolling updates.

Usage: python bench/zero_downtime.py [--instances 10] [--duration 20] [--rounds 2]
                                     [--max-over 0.2] [--connections 32] [--cpus 0.1]

Against a fresh `kade up`, an app of `--instances` × `kade/site:1` behind the route
Host(`zd.localhost`) (HTTP check on /health every second). Each round loads the router for
`--duration` s twice: once with nothing happening (steady), then while the app is rolled to
the other image (`kade/site:2`, then back to `kade/site:1`, ...), the update starting 1 s in.

The load is `wrk -t2 -c<connections> --latency`: a request fails when wrk sees a socket
error (connect, read, write, or no answer in 2 s) or a status other than 2xx/3xx. Next to
it a probe (two keep-alive connections, one request after another) keeps each request's
start time, latency and outcome, so that the figures of the update's own window (from the
deploy until the last old container is gone) can be cut out of the run. After each update
the router must answer with the new version and no container of the old one may be left.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from _kade import Follower, Kade, kade_events, wait_for
from e2e_propagation import kade_up

APP = "/bench/zd"
HOST = "zd.localhost"
IMAGES = ("kade/site:1", "kade/site:2")


def zd_app(image: str, instances: int, max_over: float, cpus: float) -> dict[str, Any]:
    return {
        "id": APP, "instances": instances, "cpus": cpus, "mem": 16,
        "container": {"docker": {"image": image}},
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1,
                          "timeoutSeconds": 2, "gracePeriodSeconds": 10,
                          "maxConsecutiveFailures": 3}],
        "routes": [{"rule": f"Host(`{HOST}`)"}],
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": max_over},
        "taskKillGracePeriodSeconds": 5,
    }


@dataclass
class WrkResult:
    requests: int
    seconds: float
    socket_errors: dict[str, int]
    non_2xx: int
    percentiles: dict[str, float]  # "50%" → seconds
    max: float

    @property
    def failed(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx

    def row(self) -> str:
        p = self.percentiles
        return (f"{self.requests:8d} requests {self.failed:4d} failed  "
                f"{self.requests / self.seconds:7.0f} req/s  p50 {p['50%'] * 1e3:6.2f} ms  "
                f"p90 {p['90%'] * 1e3:6.2f} ms  p99 {p['99%'] * 1e3:6.2f} ms  "
                f"max {self.max * 1e3:7.1f} ms"
                + (f"  {self.socket_errors}" if any(self.socket_errors.values()) else "")
                + (f"  non-2xx/3xx {self.non_2xx}" if self.non_2xx else ""))

@dataclass
class Probe:
    """A few keep-alive connections sending one request after another next to wrk, keeping
    every request's start time and latency, so that the update's own window can be cut out."""

    port: int
    seconds: float
    connections: int = 2
    samples: list[tuple[float, float, bool]] = field(default_factory=list)  # start, s, ok

    def run(self) -> Probe:
        asyncio.run(self._all())
        return self

    async def _all(self) -> None:
        deadline = time.monotonic() + self.seconds
        await asyncio.gather(*(self._one(deadline) for _ in range(self.connections)))

    async def _one(self, deadline: float) -> None:
        request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while time.monotonic() < deadline:
            start, t0 = time.time(), time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                assert reader is not None
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                ok = head.startswith(b"HTTP/1.1 200")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError):
                ok = False
                if writer is not None:
                    writer.close()
                reader = writer = None
            self.samples.append((start, time.perf_counter() - t0, ok))
        if writer is not None:
            writer.close()

    def window(self, start: float, end: float) -> str:
        """Requests started in [start, end]: how many, failed, p50/p99/max latency."""
        inside = [(s, ok) for at, s, ok in self.samples if start <= at <= end]
        if not inside:
            return "no requests"
        ms = sorted(s * 1e3 for s, _ in inside)
        p99 = ms[min(len(ms) - 1, len(ms) * 99 // 100)]
        return (f"{len(ms):6d} requests {sum(not ok for _, ok in inside):3d} failed  "
                f"p50 {ms[len(ms) // 2]:6.2f} ms  p99 {p99:6.2f} ms  max {ms[-1]:7.1f} ms")


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(out: str) -> WrkResult:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    if total is None or latency is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                             (int(n) for n in errors.groups()), strict=True)) if errors else {}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS[total.group(3)],
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        percentiles={m.group(1): _seconds(m.group(2))
                     for m in re.finditer(r"^\s+(\d+%)\s+(\S+)$", out, re.MULTILINE)},
        max=_seconds(latency.group(1)),
    )


def wrk(port: int, seconds: int, connections: int) -> WrkResult:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
           "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=seconds + 30).stdout
    return parse_wrk(out)


def parse_iso(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def deployment_of(kade: Kade, version: str) -> dict[str, Any] | None:
    deps = kade.get("/v1/deployments", app=APP.strip("/"), all="true")["deployments"]
    return next((d for d in deps if d["version"] == version), None)


def update(kade: Kade, app: dict[str, Any]) -> tuple[float, float]:
    """Roll the app to `app`; the deployment's start and end (server clock) once done."""
    image = app["container"]["docker"]["image"]
    version = kade.deploy(app)["version"]
    dep = wait_for(lambda: (d := deployment_of(kade, version)) and d["status"] != "running"
                   and d, 120, f"the deployment to {image}")
    if dep["status"] != "succeeded":
        raise RuntimeError(f"the deployment to {image} ended {dep['status']}: {dep}")
    wait_for(lambda: not kade.containers_of_old_version(APP), 60, "old containers removed")
    return parse_iso(dep["startedAt"]), parse_iso(dep["finishedAt"])


def syn_retransmits() -> int:
    """SYNs this host sent again (TcpExt.TCPSynRetrans, the whole host, not only ours).

    busybox httpd listens with a backlog of 9: when its accept queue is full a SYN is
    dropped and the router sends it again after 1 s, which would show as a 1 s tail.
    """
    header, values = [line.split() for line in
                      Path("/proc/net/netstat").read_text().splitlines()[:2]]
    return int(dict(zip(header, values, strict=True))["TCPSynRetrans"])


def task_failures(events: Follower, since: float) -> list[str]:
    """Tasks that failed on their own (not stopped by the update) since `since`."""
    return [f"{e.data['value']['task_id']}: {e.data['value']['message']}"
            for e in events.since(since) if e.name == "task_status_updated"
            and (e.data.get("value") or {}).get("state") in ("failed", "lost")]


def serves(kade: Kade, version: str) -> bool:
    r = httpx.get(f"http://127.0.0.1:{kade.http_port}/", headers={"Host": HOST}, timeout=2)
    return r.status_code == 200 and version in r.text


def loaded(kade: Kade, args: argparse.Namespace, during: Callable[[], Any] | None = None
           ) -> tuple[WrkResult, Probe, int]:
    """wrk and the probe for `args.duration` s; `during` runs 1 s in. SYNs sent again."""
    syns = syn_retransmits()
    with ThreadPoolExecutor(2) as pool:
        load = pool.submit(wrk, kade.http_port, args.duration, args.connections)
        probe = pool.submit(Probe(kade.http_port, args.duration).run)
        if during is not None:
            time.sleep(1)
            during()
        result = load.result(args.duration + 60), probe.result(args.duration + 60)
    return *result, syn_retransmits() - syns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--duration", type=int, default=20, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="updates (alternating images)")
    parser.add_argument("--max-over", type=float, default=0.2,
                        help="upgradeStrategy.maximumOverCapacity")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cpus", type=float, default=0.1, help="each instance's cpus")
    args = parser.parse_args()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    with kade_up("zd") as kade:
        events = kade_events(kade)
        try:
            kade.deploy(zd_app(IMAGES[0], args.instances, args.max_over, args.cpus))
            kade.wait_healthy(APP, args.instances, timeout=120)
            wait_for(lambda: serves(kade, "version 1"), 30, "the route to serve")
            wrk(kade.http_port, 2, args.connections)  # warm-up: connections, pools, caches
            for i in range(args.rounds):
                image = IMAGES[(i + 1) % 2]
                steady, probe, syns = loaded(kade, args)
                say(f"steady on {IMAGES[i % 2]}, {args.duration} s ({syns} SYNs sent again)")
                say(f"  wrk    {steady.row()}")
                say(f"  probe  {probe.window(0, float('inf'))}")
                window: list[float] = []

                def roll(image: str = image, window: list[float] = window) -> None:
                    window.append(time.time())
                    started, finished = update(
                        kade, zd_app(image, args.instances, args.max_over, args.cpus))
                    window.extend((time.time(), finished - started))

                result, probe, syns = loaded(kade, args, roll)
                begin, end, took = window
                say(f"update to {image}, {args.duration} s: deployment {took:.1f} s, old "
                    f"containers gone {end - begin:.1f} s after the deploy ({syns} SYNs sent "
                    "again)")
                if end > begin - 1 + args.duration - 0.5:
                    say("  THE UPDATE OUTLASTED THE RUN: raise --duration")
                for failure in task_failures(events, begin):
                    say(f"  a task failed on its own: {failure}")
                say(f"  wrk    {result.row()}")
                say(f"  probe  {probe.window(0, float('inf'))}")
                say(f"  probe, only the update's {end - begin:.1f} s: {probe.window(begin, end)}")
                wait_for(partial(serves, kade, f"version {image[-1]}"), 10, "the new version")
        finally:
            events.close()
    print(f"\n{args.instances} instances of {args.cpus:g} cpus, wrk -t2 -c{args.connections} "
          f"-d{args.duration}s, probe 2 connections, maximumOverCapacity {args.max_over:g}:")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
