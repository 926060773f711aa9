"""Discovery figures: how fast a task's health change reaches readers of the catalog.

Usage: python bench/propagation.py [--apps 1000] [--tasks 10] [--rounds 200]

Loads apps × tasks running tasks (100 nodes) into a fresh SQLite store, follows it with a
CatalogView, serves the Consul API (uvicorn) and DNS on 127.0.0.1, then flips one task's
health again and again and measures, from the write:
- until the view's change callback ran (what the router and DNS react to);
- until a client blocked on /v1/health/service/<name>?index= received the new answer;
- until thousands of blocked waiters were all woken;
and the cost of a full build and of DNS queries.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import httpx
import uvicorn
from fastapi import FastAPI

from kade import model
from kade.api.consul_catalog import catalog_router
from kade.catalog import Catalog, CatalogView, build_catalog
from kade.dns import DnsServer
from kade.model import Node, Task, TaskStatus
from kade.spec import AppSpec, parse_app
from kade.store import Put, SqliteStore


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def summary(samples: list[float]) -> str:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return f"p50 {ms(statistics.median(samples))}, p99 {ms(p99)}, max {ms(samples[-1])}"


@dataclass
class Records:
    nodes: list[Node] = field(default_factory=list)
    apps: list[AppSpec] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    statuses: list[TaskStatus] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def puts(self) -> list[Put]:
        return (
            [Put(model.node_key(n.name), n.dump()) for n in self.nodes]
            + [Put(model.app_key(a.id), a.model_dump_json(by_alias=True).encode())
               for a in self.apps]
            + [Put(model.task_key(t.id), t.dump()) for t in self.tasks]
            + [Put(model.status_key(s.task_id), s.dump()) for s in self.statuses]
        )


def records(apps: int, tasks: int) -> Records:
    r = Records()
    r.nodes = [Node(name=f"n{i}", address=f"10.0.{i // 250}.{i % 250 + 1}", cpus=64,
                    mem=1 << 16) for i in range(100)]
    for a in range(apps):
        app_id = f"/team{a % 20}/app{a}"
        r.apps.append(parse_app({"id": app_id, "cmd": "x", "healthChecks": [{"path": "/"}],
                                 "labels": {"kade.service.tags": "v1,web"}}).app)
        r.names.append(f"app{a}-team{a % 20}")
        for t in range(tasks):
            tid = f"{model.task_id_prefix(app_id)}.{t}"
            node = r.nodes[(a * tasks + t) % len(r.nodes)]
            r.tasks.append(Task(id=tid, app_id=app_id, version="v", spec_hash="h",
                                node=node.name, host=node.address, host_ports=[31000 + t],
                                created_at=0))
            r.statuses.append(status(tid, app_id, node.name, True))
    return r


def status(tid: str, app_id: str, node: str, healthy: bool) -> TaskStatus:
    return TaskStatus(task_id=tid, app_id=app_id, node=node, state="running",
                      health="healthy" if healthy else "unhealthy", updated_at=time.time())


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # proto=IPPROTO_TCP explicitly: asyncio only turns Nagle off (TCP_NODELAY) on such sockets,
    # and with Nagle on every keep-alive answer waits ~40 ms for a delayed ACK.
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


async def run(data_dir: Path, apps: int, tasks: int, rounds: int) -> None:
    r = records(apps, tasks)
    puts, names = r.puts(), r.names
    print(f"catalog: {apps:,} apps x {tasks} tasks = {apps * tasks:,} tasks on 100 nodes")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        build_catalog(r.apps, r.tasks, r.statuses, r.nodes)
        times.append(time.perf_counter() - start)
    print(f"full build_catalog:                      best {ms(min(times))}")

    store = SqliteStore(data_dir)
    for i in range(0, len(puts), 2000):
        await store.txn([], puts[i:i + 2000])
    view = CatalogView(store)
    start = time.perf_counter()
    async with view.running():
        print(f"view: initial load of the store:         {ms(time.perf_counter() - start)}")
        changed = asyncio.Event()
        view.on_change(lambda _c, _s: changed.set())
        app_id, tid, node = "/team0/app0", "team0_app0.0", "n0"
        service = names[0]

        healthy = True

        async def flip() -> None:
            """Turn the task's health over: every write changes what readers see."""
            nonlocal healthy
            healthy = not healthy
            await store.put(model.status_key(tid), status(tid, app_id, node, healthy).dump())

        # 1. write → change callback
        samples = []
        for _ in range(rounds):
            changed.clear()
            start = time.perf_counter()
            await flip()
            await changed.wait()
            samples.append(time.perf_counter() - start)
        print(f"write → view change callback:            {summary(samples)}")

        # 2. write → blocked HTTP client answered
        api = FastAPI()
        api.include_router(catalog_router(view, node_name="n0"))
        sock = free_socket()
        server = uvicorn.Server(uvicorn.Config(api, log_level="warning", lifespan="off",
                                               ws="none", timeout_graceful_shutdown=1))
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/health/service/{service}"
        samples = []
        with httpx.Client(timeout=30) as http:
            index = (await asyncio.to_thread(http.get, url)).headers["X-Consul-Index"]
            for _ in range(min(rounds, 100)):
                got: dict[str, float] = {}

                def poll(idx: str = index, got: dict[str, float] = got) -> None:
                    r = http.get(url, params={"index": idx, "wait": "30s", "passing": "1"})
                    got["at"] = time.perf_counter()
                    got["index"] = float(r.headers["X-Consul-Index"])

                thread = threading.Thread(target=poll)
                thread.start()
                await asyncio.sleep(0.02)  # let the request block
                start = time.perf_counter()
                await flip()
                await asyncio.to_thread(thread.join)
                samples.append(got["at"] - start)
                index = str(int(got["index"]))
        print(f"write → blocked /v1/health query answers: {summary(samples)}")
        server.should_exit = True
        await serving
        sock.close()

        # 3. write → thousands of waiters woken
        for count in (1_000, 10_000):
            idx = view.service_index(service)
            waiters = [asyncio.ensure_future(view.wait(service, idx, 60)) for _ in range(count)]
            await asyncio.sleep(0.2)
            start = time.perf_counter()
            await flip()
            await asyncio.gather(*waiters)
            print(f"write → {count:,} blocked waiters all woken: "
                  f"{ms(time.perf_counter() - start)}")

        # 4. DNS queries from one client, sequential
        if not healthy:
            await flip()
        await view.sync()
        async with DnsServer(view, "127.0.0.1:0") as dns_server:
            port = dns_server.port
            for qtype in ("A", "SRV"):
                q = dns.message.make_query(f"{service}.service.consul", qtype)

                def ask(q: dns.message.Message = q, n: int = 2000) -> list[float]:
                    out = []
                    for _ in range(n):
                        start = time.perf_counter()
                        dns.query.udp(q, "127.0.0.1", port=port, timeout=5)
                        out.append(time.perf_counter() - start)
                    return out

                samples = await asyncio.to_thread(ask)
                print(f"DNS {qtype:<3} over UDP, one client:           "
                      f"{len(samples) / sum(samples):,.0f}/s, {summary(samples)}")
        cat: Catalog = view.catalog
        assert len(cat.services) == apps
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.dir or Path(tmp), args.apps, args.tasks, args.rounds))


if __name__ == "__main__":
    main()
