"""Resident memory of `kade up` and of its router, idle with 0 and with 50 tasks.

Usage: python bench/memory.py [--apps 5] [--instances 10] [--settle 10]

A fresh `kade up` (docker driver) is left idle, then runs `--apps` apps of `--instances`
tasks of `kade/busybox:latest` (`exec sleep 100000`, cpus 0.01, mem 8, no ports, no health
checks). Each time, after `--settle` seconds of quiet, VmRSS is read from /proc/<pid>/status
five times a second apart; the median is printed, with the peak (VmHWM) so far.
Everything started here is removed here.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _kade import Kade, rss_kib, running_kade, wait_for

from kade.cli.router_proc import running_pid


def busybox_app(app_id: str, instances: int) -> dict[str, object]:
    return {"id": app_id, "instances": instances, "cpus": 0.01, "mem": 8,
            "cmd": "exec sleep 100000", "portDefinitions": [],
            "container": {"docker": {"image": "kade/busybox:latest"}}}


def hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def measure(label: str, pids: dict[str, int], settle: float) -> dict[str, int]:
    time.sleep(settle)
    samples: dict[str, list[int]] = {name: [] for name in pids}
    for _ in range(5):
        for name, pid in pids.items():
            samples[name].append(rss_kib(pid))
        time.sleep(1)
    out = {name: int(statistics.median(values)) for name, values in samples.items()}
    for name, pid in pids.items():
        print(f"{label:10s} {name:8s} VmRSS {out[name] / 1024:6.1f} MiB "
              f"(samples {min(samples[name]) / 1024:.1f}-{max(samples[name]) / 1024:.1f}; "
              f"peak so far {hwm_kib(pid) / 1024:.1f} MiB)", flush=True)
    return out


def running_count(kade: Kade) -> int:
    tasks = kade.get("/v1/tasks")["tasks"]
    return sum(1 for t in tasks if t.get("state") == "TASK_RUNNING")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    total = args.apps * args.instances
    with running_kade("memory") as kade:
        assert kade.proc is not None
        router = wait_for(lambda: running_pid(kade.data_dir / "router"), 30, "the router")
        pids = {"kade up": kade.proc.pid, "router": int(router)}
        idle = measure("0 tasks", pids, args.settle)
        started = time.monotonic()
        for i in range(args.apps):
            kade.deploy(busybox_app(f"/bench/mem{i}", args.instances))
        wait_for(lambda: running_count(kade) == total, 300, f"{total} running tasks")
        print(f"{total} tasks running after {time.monotonic() - started:.1f} s", flush=True)
        busy = measure(f"{total} tasks", pids, args.settle)
        for name in pids:
            grew = busy[name] - idle[name]
            print(f"{name}: +{grew / 1024:.1f} MiB with {total} tasks "
                  f"({grew / total:.0f} KiB per task)")


if __name__ == "__main__":
    main()
