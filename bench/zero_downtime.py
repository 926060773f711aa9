"""Zero downtime figures: constant load through kade's router during rolling updates.

Usage: python bench/zero_downtime.py [--instances 10] [--duration 20] [--rounds 2]
                                     [--max-over 0.2] [--connections 32]

Against a fresh `kade up`, an app of `--instances` × `kade/site:1` behind the route
Host(`zd.localhost`) (HTTP check on /health every second). Each round runs
`wrk -t2 -c<connections> -d<duration>s --latency` through the router twice: once with nothing
happening (steady), then once while the app is rolled to the other image (`kade/site:2`, then
back to `kade/site:1`, ...), the update starting 1 s into the run. A request fails when wrk
sees a socket error (connect, read, write, timeout after 2 s) or a status other than 2xx/3xx.
The update's own duration is printed: it must fit in the run, or the run is reported as too
short. After each update the router must answer with the new version, and no container of
the old version may be left.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
from _kade import Kade, running_kade, wait_for

APP = "/bench/zd"
HOST = "zd.localhost"
IMAGES = ("kade/site:1", "kade/site:2")


def zd_app(image: str, instances: int, max_over: float) -> dict[str, Any]:
    return {
        "id": APP, "instances": instances, "cpus": 0.1, "mem": 16,
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


def update(kade: Kade, image: str, instances: int, max_over: float) -> tuple[float, float]:
    """Roll the app to `image`; the deployment's start and end (server clock) once done."""
    version = kade.deploy(zd_app(image, instances, max_over))["version"]
    dep = wait_for(lambda: (d := deployment_of(kade, version)) and d["status"] != "running"
                   and d, 120, f"the deployment to {image}")
    if dep["status"] != "succeeded":
        raise RuntimeError(f"the deployment to {image} ended {dep['status']}: {dep}")
    wait_for(lambda: not kade.containers_of_old_version(APP), 60, "old containers removed")
    return parse_iso(dep["startedAt"]), parse_iso(dep["finishedAt"])


def serves(kade: Kade, version: str) -> bool:
    r = httpx.get(f"http://127.0.0.1:{kade.http_port}/", headers={"Host": HOST}, timeout=2)
    return r.status_code == 200 and version in r.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--duration", type=int, default=20, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="updates (alternating images)")
    parser.add_argument("--max-over", type=float, default=0.2,
                        help="upgradeStrategy.maximumOverCapacity")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    results: list[tuple[str, WrkResult, float, float]] = []
    with running_kade("zd") as kade:
        kade.deploy(zd_app(IMAGES[0], args.instances, args.max_over))
        kade.wait_healthy(APP, args.instances, timeout=120)
        wait_for(lambda: serves(kade, "version 1"), 30, "the route to serve")
        wrk(kade.http_port, 2, args.connections)  # warm-up: connections, pools, caches
        for i in range(args.rounds):
            image = IMAGES[(i + 1) % 2]
            steady = wrk(kade.http_port, args.duration, args.connections)
            results.append((f"steady on {IMAGES[i % 2]}", steady, 0.0, 0.0))
            print(f"  steady         {steady.row()}", flush=True)
            with ThreadPoolExecutor(1) as pool:
                load_start = time.time()
                loader = pool.submit(wrk, kade.http_port, args.duration, args.connections)
                time.sleep(1)
                started, finished = update(kade, image, args.instances, args.max_over)
                result = loader.result(args.duration + 60)
            results.append((f"update to {image}", result, started, finished))
            fits = finished <= load_start + args.duration - 0.5
            print(f"  update ({finished - started:4.1f} s) {result.row()}"
                  + ("" if fits else "  THE UPDATE OUTLASTED THE RUN: raise --duration"),
                  flush=True)
            wait_for(partial(serves, kade, f"version {image[-1]}"), 10, "the new version")
    print(f"{args.instances} instances, wrk -t2 -c{args.connections} -d{args.duration}s, "
          f"maximumOverCapacity {args.max_over:g}:")
    for name, r, started, finished in results:
        took = f" (update {finished - started:.1f} s)" if started else ""
        print(f"  {name + took:34s} {r.row()}")
    total = sum(r.requests for name, r, *_ in results if name.startswith("update"))
    failed = sum(r.failed for name, r, *_ in results if name.startswith("update"))
    print(f"during updates: {total} requests, {failed} failed")


if __name__ == "__main__":
    main()
