"""Seconds from `docker kill` of one of 3 healthy tasks to a healthy replacement.

Usage: python bench/heal.py [--reps 5] [--cpus 0.1]

A fresh `kade up` runs 3 instances of `kade/site:1` (HTTP check on /health every second).
Each repetition kills one container with `docker kill` and follows both event streams:
Docker's (the `die` of the victim, the `start` of the replacement, engine timestamps) and
kade's `/v1/events` (the victim's status leaving `running`, the replacement task's creation
and its status turning `healthy`, kade's timestamps). Run twice: with Marathon's default
launch backoff (`backoffSeconds` 1: a relaunch after a failure waits 1 s) and with
`backoffSeconds` 0. Everything started here is removed here.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from typing import Any

from _kade import Follower, Kade, docker_events, kade_events, running_kade, site_app, wait_for

TIMEOUT = 60.0


def no_failures_counted(kade: Kade, app_id: str) -> bool:
    """True once the app's consecutive-failure count is back to 0 (backoff cleared)."""
    queue = kade.app(app_id).get("queue") or {}
    return int(queue.get("consecutiveFailures") or 0) == 0


def heal_once(kade: Kade, events: Follower, docker: Follower, app_id: str
              ) -> dict[str, float]:
    """One kill of a healthy task, and the moments of its replacement."""
    wait_for(lambda: no_failures_counted(kade, app_id), TIMEOUT, "the failure count reset")
    tasks = kade.wait_healthy(app_id, 3)
    before = {t["id"] for t in tasks}
    victim = tasks[0]
    victim_id, container = victim["id"], victim["containerId"]
    kill_at = time.time()
    subprocess.run(["docker", "kill", container], check=True, capture_output=True, timeout=30)

    die = docker.wait(lambda e: e.name == "die" and e.data.get("id") == container,
                      TIMEOUT, "the victim's die").at

    def status(e: Any) -> dict[str, Any]:
        value = e.data.get("value") or {}
        return value if e.name == "task_status_updated" else {}

    gone = events.wait(lambda e: e.at >= kill_at and status(e).get("task_id") == victim_id
                       and status(e).get("state") != "running", TIMEOUT,
                       "the victim reported not running")
    placed = events.wait(lambda e: e.at >= kill_at and e.name == "task_updated"
                         and (e.data.get("value") or {}).get("app_id") == app_id
                         and e.data["key"] not in before, TIMEOUT, "a replacement placed")
    new_id = placed.data["key"]
    healthy = events.wait(lambda e: status(e).get("task_id") == new_id
                          and status(e).get("health") == "healthy", TIMEOUT,
                          "the replacement healthy")

    def replacement(action: str) -> float:
        return docker.wait(
            lambda e: e.name == action
            and e.data.get("Actor", {}).get("Attributes", {}).get("kade.task-id") == new_id,
            TIMEOUT, f"the replacement's container: {action}").at

    created, started = replacement("create"), replacement("start")
    healthy_at = float(healthy.data["value"]["updated_at"])
    kade.wait_healthy(app_id, 3)
    return {
        "kill_to_healthy": healthy_at - kill_at,
        "kill_to_die": die - kill_at,
        "die_to_not_running": float(gone.data["value"]["updated_at"]) - die,
        "die_to_placed": float(placed.data["value"]["created_at"]) - die,
        "die_to_created": created - die,
        "created_to_started": started - created,
        "started_to_healthy": healthy_at - started,
    }


FIGURES = [
    ("kill_to_healthy", "`docker kill` -> replacement healthy"),
    ("kill_to_die", "`docker kill` -> Docker's die event"),
    ("die_to_not_running", "die -> kade reports the task not running"),
    ("die_to_placed", "die -> replacement task placed"),
    ("die_to_created", "die -> replacement container created"),
    ("created_to_started", "created -> started (Docker)"),
    ("started_to_healthy", "replacement started -> healthy"),
]


def report(title: str, runs: list[dict[str, float]]) -> None:
    print(f"\n{title} ({len(runs)} kills)")
    for key, label in FIGURES:
        values = [r[key] for r in runs]
        listed = " ".join(f"{v:.3f}" for v in values)
        print(f"  {label:44s} median {statistics.median(values):.3f} s, "
              f"max {max(values):.3f} s  ({listed})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cpus", type=float, default=0.1, help="the app's cpus (a hard quota)")
    args = parser.parse_args()
    variants = [("default launch backoff (backoffSeconds 1)", "/bench/heal", {}),
                ("backoffSeconds 0", "/bench/heal-nobackoff", {"backoffSeconds": 0})]
    print(f"3 instances of kade/site:1, cpus {args.cpus:g}")
    with running_kade("heal") as kade:
        events = kade_events(kade)
        docker = docker_events(time.time(), f"label=kade.node={kade.node}")
        try:
            for title, app_id, extra in variants:
                kade.deploy(site_app(app_id, 3, cpus=args.cpus, **extra))
                kade.wait_healthy(app_id, 3)
                runs = []
                for i in range(args.reps):
                    runs.append(heal_once(kade, events, docker, app_id))
                    print(f"{app_id} kill {i + 1}: healthy again after "
                          f"{runs[-1]['kill_to_healthy']:.2f} s", flush=True)
                report(title, runs)
                kade.client.delete("/v1/apps/" + app_id.strip("/"))
                wait_for(lambda: not kade.containers(all_=True), TIMEOUT, "containers removed")
        finally:
            events.close()
            docker.close()


if __name__ == "__main__":
    main()
