"""End-to-end discovery figures with real containers: how fast a task is found, and forgotten.

Usage: python bench/e2e_propagation.py [--tasks 20] [--kills 10] [--poll-ms 2]

Against a fresh `kade up`, an app of `kade/site:1` behind a route; each task serves its own
port at `/id`, so a request through the router tells which task answered.

(a) Found: the app is scaled up by one, `--tasks` times. From the moment the agent wrote the
    task's healthy status (`updated_at` of its `task_status_updated` event), until its
    endpoint is first seen: in the event stream itself, in DNS (SRV of
    `web-bench.service.consul` over UDP with EDNS0), in the Consul health API (`?passing`,
    polled, and a blocking query held with `?index=`), in the router's table (admin
    `/table`), and in the answer to a request through the router (once the table shows
    it, one request per server at once, again until one is answered by the new task).
(b) Forgotten: a running container is `docker kill`ed, `--kills` times. From the container's
    death (Docker's `die` event, the engine's clock), until its endpoint is gone from DNS,
    the Consul API and the router's table; meanwhile requests go through the router without
    pause, and every one that does not answer 200 is counted.

Surfaces are polled every `--poll-ms` (a figure is the time of the first answer that shows
the change, so it includes up to one poll period and the poll's own round trip). Times are
wall-clock times of this machine: the agent's, the engine's and ours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rdatatype
import httpx
from _kade import Follower, Kade, Stamped, docker_events, kade_events, wait_for

APP = "/bench/web"
SERVICE = "web-bench"
HOST = "e2e.localhost"
FOUND = ("event", "dns", "consul", "consul-blocking", "router-table", "routed")
GONE = ("dns", "consul", "consul-blocking", "router-table")


@contextlib.contextmanager
def kade_up(name: str) -> Iterator[Kade]:
    """A `kade up` in a temporary data dir, removed afterwards with all it started.

    Its host ports are taken below Linux's ephemeral range (32768-60999), as kade's default
    range is: tasks on the host network bind them, and a port that some client connection
    (the load, the router's upstream connections) holds as its local port makes the task's
    bind fail ("exited with code 1"), the task is replaced, and the figures measure that.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"kade-bench-{name}-"))
    kade = Kade(tmp / "kade")
    low = 20000 + (os.getpid() % 120) * 100
    kade.port_range = f"{low}-{low + 99}"
    try:
        yield kade.start()
    finally:
        kade.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def web_app(instances: int) -> dict[str, Any]:
    # 0.09 cpus: 21 tasks fit the 2 cores a node offers here.
    return {
        "id": APP, "instances": instances, "cpus": 0.09, "mem": 16,
        "container": {"docker": {"image": "kade/site:1"}},
        "cmd": "echo -n $PORT0 > /var/www/id && exec httpd -f -p $PORT0 -h /var/www",
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1,
                          "timeoutSeconds": 2, "gracePeriodSeconds": 10,
                          "maxConsecutiveFailures": 3}],
        "routes": [{"rule": f"Host(`{HOST}`)"}],
        "taskKillGracePeriodSeconds": 2,
    }


Fetch = Callable[[], Awaitable[set[int]]]


class Surfaces:
    """One fetch per surface, each returning the host ports it lists right now."""

    def __init__(self, kade: Kade, http: httpx.AsyncClient) -> None:
        self.kade = kade
        self.http = http
        self.consul_index = "0"
        self.servers = 1  # requests per `routed` poll: one per server, to reach them all

    async def dns(self) -> set[int]:
        # EDNS0 with room for every endpoint: a plain 512-byte UDP answer is cut short.
        query = dns.message.make_query(f"{SERVICE}.service.consul", "SRV", use_edns=0,
                                       payload=4096)
        answer = await dns.asyncquery.udp(query, "127.0.0.1", port=self.kade.dns_port,
                                          timeout=0.5)
        if answer.flags & dns.flags.TC:
            raise ValueError("truncated DNS answer")
        return {rr.port for rrset in answer.answer if rrset.rdtype == dns.rdatatype.SRV
                for rr in rrset}

    async def consul(self) -> set[int]:
        r = await self.http.get(f"http://{self.kade.addr}/v1/health/service/{SERVICE}",
                                params={"passing": "1"})
        return {int(e["Service"]["Port"]) for e in r.json()}

    async def consul_blocking(self) -> set[int]:
        """Held by the server until the answer changes (what consul-template does)."""
        r = await self.http.get(f"http://{self.kade.addr}/v1/health/service/{SERVICE}",
                                params={"passing": "1", "index": self.consul_index,
                                        "wait": "30s"}, timeout=40)
        self.consul_index = r.headers.get("X-Consul-Index", self.consul_index)
        return {int(e["Service"]["Port"]) for e in r.json()}

    async def router_table(self) -> set[int]:
        r = await self.http.get(f"http://127.0.0.1:{self.kade.router_admin_port}/table")
        services = r.json()["table"].get("services", {})
        return {int(s["url"].rsplit(":", 1)[1]) for s in services.get(SERVICE, {})
                .get("servers", [])}

    async def routed(self) -> set[int]:
        answers = await asyncio.gather(*(self._one() for _ in range(self.servers)))
        return {p for p in answers if p is not None}

    async def _one(self) -> int | None:
        r = await self.http.get(f"http://127.0.0.1:{self.kade.http_port}/id",
                                headers={"Host": HOST})
        return int(r.text) if r.status_code == 200 and r.text.isdigit() else None

    def by_name(self) -> dict[str, Fetch]:
        """The surfaces that are polled."""
        return {"dns": self.dns, "consul": self.consul, "consul-blocking": self.consul_blocking,
                "router-table": self.router_table}


async def first_time(fetch: Fetch, holds: Callable[[set[int]], bool], deadline: float,
                     poll: float) -> float | None:
    """The wall-clock time of the first answer of `fetch` for which `holds` is true."""
    while time.monotonic() < deadline:
        try:
            ports = await fetch()
        except (httpx.HTTPError, OSError, TimeoutError, ValueError, KeyError):
            await asyncio.sleep(poll)
            continue
        if holds(ports):
            return time.time()
        await asyncio.sleep(poll)
    return None


def healthy_event(events: Follower, task_id: str, timeout: float) -> Stamped:
    def match(e: Stamped) -> bool:
        value = e.data.get("value") or {}
        return (e.name == "task_status_updated" and value.get("task_id") == task_id
                and value.get("health") == "healthy")

    return events.wait(match, timeout, f"{task_id} healthy")


def port_to_task(kade: Kade) -> dict[int, str]:
    return {t["ports"][0]: t["id"] for t in kade.app(APP)["tasks"]
            if t["desired"] == "run" and t["ports"]}


# -- (a) found -------------------------------------------------------------------------------

async def one_more(kade: Kade, known: set[int], instances: int, poll: float
                   ) -> dict[str, tuple[int, float]]:
    """Scale to `instances`; per surface, the new port and when it was first seen."""
    async with httpx.AsyncClient(timeout=2, headers=kade.auth) as http:
        return await _one_more(kade, http, known, instances, poll)


async def _one_more(kade: Kade, http: httpx.AsyncClient, known: set[int], instances: int,
                    poll: float) -> dict[str, tuple[int, float]]:
    surfaces = Surfaces(kade, http)
    surfaces.servers = len(known) + 1
    await surfaces.consul_blocking()  # the index to block on, before anything changes
    seen: dict[str, tuple[int, float]] = {}
    deadline = time.monotonic() + 60

    async def watch(name: str, fetch: Fetch) -> None:
        new: set[int] = set()

        def holds(ports: set[int]) -> bool:
            new.update(ports - known)
            return bool(new)

        at = await first_time(fetch, holds, deadline, 0 if name == "consul-blocking" else poll)
        if at is None:
            return
        port = min(new)
        seen[name] = (port, at)
        if name == "router-table":
            # The router routes by the table it shows; requests confirm it, sent only now
            # because polling with one request per server would load the machine.
            at = await first_time(surfaces.routed, lambda ports: port in ports, deadline, 0)
            if at is not None:
                seen["routed"] = (port, at)

    async with asyncio.TaskGroup() as tg:
        for name, fetch in surfaces.by_name().items():
            tg.create_task(watch(name, fetch))
        await asyncio.to_thread(kade.client.post, f"/v1/apps{APP}/scale",
                                {"instances": instances})
    return seen


def found(kade: Kade, events: Follower, rounds: int, poll: float) -> dict[str, list[float]]:
    delays: dict[str, list[float]] = {name: [] for name in FOUND}
    known = set(port_to_task(kade))
    for i in range(rounds):
        instances = len(known) + 1
        started = time.time()
        seen = asyncio.run(one_more(kade, known, instances, poll))
        ports = {port for port, _ in seen.values()}
        if len(ports) != 1 or set(seen) != set(FOUND) - {"event"}:
            waiting = [(t["id"], t["state"], t["message"]) for t in kade.app(APP)["tasks"]
                       if not t["healthy"]]
            raise RuntimeError(f"round {i}: surfaces disagree or missed the task: {seen}; "
                               f"tasks not healthy: {waiting}")
        [port] = ports
        task_id = port_to_task(kade)[port]
        event = healthy_event(events, task_id, 30)
        healthy_at = event.data["value"]["updated_at"]
        if event.at < started:
            raise RuntimeError(f"round {i}: {task_id} was healthy before the scale")
        delays["event"].append(event.at - healthy_at)
        for name, (_, at) in seen.items():
            delays[name].append(at - healthy_at)
        known.add(port)
        print(f"  task {instances:2d}: " + "  ".join(
            f"{name} {delays[name][-1] * 1e3:.1f}" for name in FOUND) + " ms", flush=True)
    return delays


# -- (b) forgotten ---------------------------------------------------------------------------

Killed = tuple[float, dict[str, float], dict[str, int]]


async def one_kill(kade: Kade, port: int, container: str, poll: float) -> Killed:
    """Kill `container`; when each surface stopped listing `port`, and the load's outcomes."""
    async with httpx.AsyncClient(timeout=5, headers=kade.auth) as http:
        return await _one_kill(kade, http, port, container, poll)


async def _one_kill(kade: Kade, http: httpx.AsyncClient, port: int, container: str,
                    poll: float) -> Killed:
    surfaces = Surfaces(kade, http)
    await surfaces.consul_blocking()
    fetches = surfaces.by_name()
    gone: dict[str, float] = {}
    outcomes: dict[str, int] = {"requests": 0, "failed": 0}
    deadline = time.monotonic() + 60
    stop = asyncio.Event()

    async def watch(name: str) -> None:
        at = await first_time(fetches[name], lambda ports: port not in ports, deadline,
                              0 if name == "consul-blocking" else poll)
        if at is not None:
            gone[name] = at

    async def load() -> None:
        """Requests one after another through the router, as a visitor would send them."""
        while not stop.is_set() and time.monotonic() < deadline:
            outcomes["requests"] += 1
            try:
                r = await http.get(f"http://127.0.0.1:{kade.http_port}/id",
                                   headers={"Host": HOST})
                failure = "" if r.status_code == 200 else f"HTTP {r.status_code} {r.text[:60]!r}"
            except httpx.HTTPError as e:
                failure = f"{type(e).__name__}: {e}"
            if failure:
                outcomes["failed"] += 1
                outcomes[failure] = outcomes.get(failure, 0) + 1

    async with asyncio.TaskGroup() as tg:
        loader = tg.create_task(load())
        await asyncio.sleep(0.2)  # traffic flows before the kill
        watchers = [tg.create_task(watch(name)) for name in GONE]
        killed_at = time.time()
        await asyncio.to_thread(subprocess.run, ["docker", "kill", container],
                                capture_output=True, check=True)
        await asyncio.gather(*watchers)
        await asyncio.sleep(0.2)  # and keeps flowing after the removal
        stop.set()
        await loader
    return killed_at, gone, outcomes


def forgotten(kade: Kade, rounds: int, poll: float
              ) -> tuple[dict[str, list[float]], dict[str, int]]:
    delays: dict[str, list[float]] = {name: [] for name in ("die", *GONE)}
    totals = {"requests": 0, "failed": 0}
    instances = kade.app(APP)["instances"]
    for i in range(rounds):
        tasks = kade.wait_healthy(APP, instances)
        victim = tasks[i % len(tasks)]
        port, container = victim["ports"][0], victim["containerId"]
        docker = docker_events(time.time(), f"container={container}", "event=die")
        try:
            killed_at, gone, outcomes = asyncio.run(one_kill(kade, port, container, poll))
            died = docker.wait(lambda e: e.name == "die", 10, "the die event").at
        finally:
            docker.close()
        if set(gone) != set(GONE):
            raise RuntimeError(f"kill {i}: not removed everywhere: {gone}")
        delays["die"].append(died - killed_at)
        for name, at in gone.items():
            delays[name].append(at - died)
        for key, n in outcomes.items():
            totals[key] = totals.get(key, 0) + n
        print(f"  kill {i + 1:2d}: die {delays['die'][-1] * 1e3:.1f} ms after the command; "
              + "  ".join(f"{name} {delays[name][-1] * 1e3:.1f}" for name in GONE)
              + f" ms; {outcomes.pop('requests')} requests, {outcomes.pop('failed')} failed"
              + (f" {outcomes}" if outcomes else ""), flush=True)
    return delays, totals


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(title: str, delays: dict[str, list[float]]) -> None:
    print(title)
    for name, values in delays.items():
        ms = [v * 1e3 for v in values]
        print(f"  {name:16s} p50 {statistics.median(ms):7.1f} ms  p99 {pct(ms, 0.99):7.1f} ms"
              f"  min {min(ms):6.1f}  max {max(ms):7.1f}  (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20, help="scale-ups to measure")
    parser.add_argument("--kills", type=int, default=10, help="containers to kill")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="pause between polls")
    args = parser.parse_args()
    poll = args.poll_ms / 1e3
    with kade_up("e2e") as kade:
        events = kade_events(kade)
        try:
            kade.deploy(web_app(1))
            kade.wait_healthy(APP, 1)
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{kade.http_port}/id",
                                       headers={"Host": HOST}, timeout=2).status_code == 200,
                     30, "the route to serve")
            print(f"(a) scale up one by one to {args.tasks + 1} tasks: ms from the healthy "
                  "status write until seen", flush=True)
            found_delays = found(kade, events, args.tasks, poll)
            print(f"(b) docker kill, {args.kills} times: ms from the die event until gone",
                  flush=True)
            gone_delays, totals = forgotten(kade, args.kills, poll)
        finally:
            events.close()
    report(f"(a) healthy status written -> endpoint visible, {args.tasks} tasks", found_delays)
    report(f"(b) container killed -> endpoint gone, {args.kills} kills", gone_delays)
    requests, failed = totals.pop("requests"), totals.pop("failed")
    print(f"(b) requests through the router during the kills: {requests}, failed {failed}"
          + (f": {totals}" if totals else ""))
    print(json.dumps({"found_ms": {k: [round(v * 1e3, 2) for v in vs]
                                   for k, vs in found_delays.items()},
                      "gone_ms": {k: [round(v * 1e3, 2) for v in vs]
                                  for k, vs in gone_delays.items()},
                      "requests": requests, "failed": failed, "failures": totals}))


if __name__ == "__main__":
    main()
