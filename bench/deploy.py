"""Seconds from `kade deploy` of 10 instances to all 10 healthy, against plain `docker run`.

Usage: python bench/deploy.py [--runs 3] [--instances 10] [--cpus 0.1]

kade: `kade deploy -f app.json` of `kade/site:1` (busybox httpd, HTTP check on /health every
second) against a fresh `kade up`. Moments are kade's own clock: the deployment's start (the
API accepting the app) and end, and each task's status turning `running` (container started)
and `healthy`, as followed on `/v1/events` (no polling, so nothing is rounded to an interval).
Docker: `docker run -d --network host -e PORT0=<port> kade/site:1` in a loop, then every
container polled (10 ms) until it answers HTTP 200. The two alternate, in the same run.
Everything started here is removed here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from _kade import (
    Follower,
    Kade,
    Stamped,
    free_port,
    kade_events,
    running_kade,
    site_app,
    summary,
    wait_for,
)

KADE_BIN = str(Path(sys.executable).parent / "kade")


def kade_once(kade: Kade, events: Follower, app_id: str, instances: int, cpus: float,
              tmp: Path) -> dict[str, float]:
    """One `kade deploy` of a new app, followed until every instance is healthy."""
    path = tmp / (app_id.strip("/").replace("/", "_") + ".json")
    path.write_text(json.dumps(site_app(app_id, instances, cpus=cpus)))
    start = time.time()
    out = subprocess.run([KADE_BIN, "deploy", "-f", str(path)], capture_output=True,
                         text=True, timeout=180, env={**os.environ, **kade.cli_env})
    cli_end = time.time()
    if out.returncode != 0:
        raise RuntimeError(f"kade deploy failed: {out.stdout}{out.stderr}")
    key = app_id.strip("/")
    running: dict[str, float] = {}
    healthy: dict[str, float] = {}

    def note(e: Stamped) -> bool:
        # Server-side times: when the agent wrote the status, not when it reached us.
        value = e.data.get("value") or {}
        if e.name == "task_status_updated" and value.get("app_id") == app_id:
            if value["state"] == "running":
                running.setdefault(value["task_id"], value["updated_at"])
            if value["health"] == "healthy":
                healthy.setdefault(value["task_id"], value["updated_at"])
        return len(healthy) >= instances

    events.wait(lambda e: e.at >= start and note(e), 30, f"{instances} healthy tasks")
    app = kade.app(app_id)
    assert app["tasksHealthy"] == instances, app
    [dep] = [d for d in kade.get("/v1/deployments", app=key, all="true")["deployments"]
             if d["version"] == app["version"]]
    assert dep["status"] == "succeeded", dep
    written = parse_iso(dep["startedAt"])  # the API's clock when it accepted the app
    finished = parse_iso(dep["finishedAt"])
    return {
        "cli": cli_end - start,
        "api_to_healthy": max(healthy.values()) - written,
        "api_to_running": max(running.values()) - written,
        "api_to_first_healthy": min(healthy.values()) - written,
        "api_to_succeeded": finished - written,
        "cli_start_to_api": written - start,
        "succeeded_to_cli_exit": cli_end - finished,
        "running_to_healthy": statistics.median(healthy[t] - running[t] for t in healthy),
    }


def parse_iso(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def remove_app(kade: Kade, app_id: str) -> None:
    kade.client.delete("/v1/apps/" + app_id.strip("/"))
    wait_for(lambda: not kade.containers(all_=True), 60, f"{app_id} removed")


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def docker_once(instances: int) -> dict[str, float]:
    label = f"kade-bench=deploy-{uuid.uuid4().hex[:8]}"
    ports = [free_port() for _ in range(instances)]
    try:
        start = time.time()
        for port in ports:
            subprocess.run(["docker", "run", "-d", "--network", "host", "--label", label,
                            "-e", f"PORT0={port}", "kade/site:1"],
                           check=True, capture_output=True, timeout=60)
        launched = time.time()
        pending = set(ports)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for port in sorted(pending):
                if answers(port):
                    pending.discard(port)
            if pending:
                time.sleep(0.01)
        if pending:
            raise RuntimeError(f"containers on ports {sorted(pending)} never answered")
        return {"all_200": time.time() - start, "runs_returned": launched - start}
    finally:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--cpus", type=float, default=0.1,
                        help="the kade app's cpus (a hard quota; the docker loop has none)")
    args = parser.parse_args()
    n = args.instances
    kade_runs: list[dict[str, float]] = []
    docker_runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="kade-bench-deploy-") as tmp, \
            running_kade("deploy") as kade:
        events = kade_events(kade)
        try:
            for i in range(args.runs):
                app_id = f"/bench/deploy{i}"
                kade_runs.append(kade_once(kade, events, app_id, n, args.cpus, Path(tmp)))
                remove_app(kade, app_id)
                docker_runs.append(docker_once(n))
                print(f"run {i + 1}: kade {kade_runs[-1]['api_to_healthy']:.2f} s, "
                      f"docker {docker_runs[-1]['all_200']:.2f} s", flush=True)
        finally:
            events.close()

    def col(runs: list[dict[str, float]], key: str) -> list[float]:
        return [r[key] for r in runs]

    print(f"\n{n} instances of kade/site:1 (kade app: cpus {args.cpus:g}), {args.runs} runs each")
    print(f"kade: API write -> all {n} healthy:        {summary(col(kade_runs, 'api_to_healthy'))}")
    print(f"kade: API write -> all {n} running:        {summary(col(kade_runs, 'api_to_running'))}")
    print(f"kade: API write -> first healthy:        "
          f"{summary(col(kade_runs, 'api_to_first_healthy'))}")
    print(f"kade: a task's running -> healthy (median of {n}): "
          f"{summary(col(kade_runs, 'running_to_healthy'))}")
    print(f"kade: `kade deploy` start -> API write:  {summary(col(kade_runs, 'cli_start_to_api'))}")
    print(f"kade: API write -> deployment succeeded: "
          f"{summary(col(kade_runs, 'api_to_succeeded'))}")
    print(f"kade: deployment done -> command exits: "
          f"{summary(col(kade_runs, 'succeeded_to_cli_exit'))}")
    print(f"kade: `kade deploy` command, whole:      {summary(col(kade_runs, 'cli'))}")
    print(f"docker: run loop -> all {n} answer 200:    {summary(col(docker_runs, 'all_200'))}")
    print(f"docker: the {n} `docker run -d` alone:    {summary(col(docker_runs, 'runs_returned'))}")


if __name__ == "__main__":
    main()
