"""How long `GET /v1/nodes` takes to compute, and a zone's drain progress, at cluster sizes.

    .venv/bin/python bench/nodes.py [--nodes 100] [--tasks 10000] [--zones 3]

Builds one snapshot in memory (nodes in `--zones` zones, tasks spread over them, a drain on
every node of the first zone with some replacements starting elsewhere) and prints
milliseconds (best and median of several runs) for:
- the listing: every node as the API shows it, from the decoded records;
- a zone's progress: what each line of `kade node drain --attr az=1a` is computed from;
- through the API: `GET /v1/nodes` in process on the SQLite store (reading the records
  included), when --api is given.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kade import model
from kade.api.node_views import index_tasks, node_json
from kade.model import DrainSpec, Node, NodeControl, Task, TaskStatus
from kade.scheduler.sim import app_spec
from kade.spec import AppSpec

NOW = 1_800_000_000.0


def cluster(nodes: int, tasks: int, zones: int) -> tuple[
        list[Node], dict[str, NodeControl], list[Task], dict[str, TaskStatus],
        dict[str, AppSpec]]:
    names = [f"n{i:04d}" for i in range(nodes)]
    node_records = [Node(name=n, address="10.0.0.1", cpus=64, mem=262144,
                         attributes={"az": f"1{'abcdefgh'[i % zones]}"})
                    for i, n in enumerate(names)]
    checked = {"healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}
    count = max(tasks // 10, 1)
    apps = {f"/app{i}": app_spec(f"/app{i}", instances=tasks // count,
                                 **(checked if i % 2 == 0 else {})) for i in range(count)}
    app_ids = list(apps)
    task_list, statuses = [], {}
    for i in range(tasks):
        t = Task(id=f"t{i}", app_id=app_ids[i % len(app_ids)], version="v", spec_hash="h",
                 node=names[i % nodes], cpus=0.1, mem=64, host_ports=[31000 + i % 1000],
                 created_at=NOW - 100 if i % 50 else NOW + 1)
        task_list.append(t)
        starting = i % 50 == 0  # a replacement, not yet healthy
        statuses[t.id] = TaskStatus(task_id=t.id, app_id=t.app_id, node=t.node,
                                    state="starting" if starting else "running",
                                    health="unknown" if starting else "healthy",
                                    updated_at=NOW)
    drain = DrainSpec(started_at=NOW, deadline=NOW + 600, tasks_at_start=tasks // nodes)
    controls = {n.name: NodeControl(name=n.name, eligible=False, drain=drain)
                for n in node_records if n.attributes["az"] == "1a"}
    return node_records, controls, task_list, statuses, apps


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


async def through_api(nodes: list[Node], controls: dict[str, NodeControl], tasks: list[Task],
                      statuses: dict[str, TaskStatus], runs: int) -> tuple[float, float]:
    import httpx

    from kade.api.app import create_app
    from kade.auth import create_token
    from kade.store import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "store")
        try:
            for n in nodes:
                await store.put(model.node_key(n.name), n.dump())
            for c in controls.values():
                await store.put(model.nodectl_key(c.name), c.dump())
            for t in tasks:
                await store.put(model.task_key(t.id), t.dump())
                await store.put(model.status_key(t.id), statuses[t.id].dump())
            token, _ = await create_token(store, role="read", now=time.time())
            app = create_app(store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1",
                                         headers={"Authorization": f"Bearer {token}"}) as api:
                times = []
                for _ in range(runs + 1):
                    start = time.perf_counter()
                    r = await api.get("/v1/nodes")
                    times.append((time.perf_counter() - start) * 1000)
                    assert r.status_code == 200 and len(r.json()["nodes"]) == len(nodes)
                return min(times[1:]), statistics.median(times[1:])
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--api", action="store_true", help="also GET /v1/nodes in process")
    args = parser.parse_args()
    nodes, controls, tasks, statuses, apps = cluster(args.nodes, args.tasks, args.zones)
    by_name = {n.name: n for n in nodes}

    def listing() -> list[dict[str, Any]]:
        index = index_tasks(tasks, statuses, apps)
        return [node_json(n, by_name[n], controls.get(n), index, NOW) for n in by_name]

    def zone() -> list[dict[str, Any]]:
        index = index_tasks(tasks, statuses, apps)
        return [node_json(n, by_name[n], controls[n], index, NOW)["drain"] for n in controls]

    print(f"{args.nodes} nodes, {args.tasks} tasks, {len(controls)} draining (zone 1a)")
    for what, fn in (("listing of every node", listing), ("zone drain progress", zone)):
        best, median = timed(fn, args.runs)
        print(f"  {what:<28} best {best:8.1f} ms   median {median:8.1f} ms")
    if args.api:
        best, median = asyncio.run(through_api(nodes, controls, tasks, statuses, args.runs))
        print(f"  {'GET /v1/nodes (in process)':<28} best {best:8.1f} ms   median {median:8.1f} ms")


if __name__ == "__main__":
    main()
