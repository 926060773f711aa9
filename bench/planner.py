"""How long plan() takes: by default 1,000 apps x 10 instances on 100 nodes; the goal sizes
are 10,000 apps x 10 instances on 1,000 nodes.

    .venv/bin/python bench/planner.py [--apps 1000] [--instances 10] [--nodes 100] [--no-loop]

Prints milliseconds (best and median of several runs) for:
- from scratch: nothing placed yet, every task to place;
- steady state: everything placed and running, nothing to do (with the spec hashes the loop
  keeps, and without them);
- one app changed: steady state plus one app scaled up by one, planned in full, and planned
  from a kept TaskIndex with only what changed (what the loop does between reloads);
- through the loop: a Scheduler on the SQLite store, from start until every task is written
  (one transaction), and a restarted Scheduler until it has read everything back.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

from kade import model
from kade.scheduler.loop import Scheduler
from kade.scheduler.plan import Plan, Snapshot, plan
from kade.scheduler.sim import Simulation, app_spec, node
from kade.store import SqliteStore

NOW = 1_000_000.0


def timed(fn: Callable[[], Plan], runs: int) -> tuple[float, float, Plan]:
    times = []
    result = fn()
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-loop", action="store_true", help="skip the store-backed runs")
    args = parser.parse_args()

    sim = Simulation()
    for i in range(args.nodes):
        sim.add_node(node(f"node-{i:03d}", cpus=64, mem=262144,
                          attributes={"zone": f"z{i % 3}"}))
    for i in range(args.apps):
        sim.add_app(app_spec(f"/team-{i % 20}/app-{i:04d}", instances=args.instances,
                             cpus=0.1, mem=64, healthChecks=[{"path": "/health"}]))
    tasks = args.apps * args.instances
    print(f"{args.apps} apps x {args.instances} instances = {tasks} tasks, {args.nodes} nodes")

    scratch = sim.snapshot()
    best, median, p = timed(lambda: plan(scratch, NOW), args.runs)
    assert len(p.launches) == tasks, len(p.launches)
    print(f"from scratch:            best {best:7.1f} ms   median {median:7.1f} ms"
          f"   ({len(p.launches)} launches)")

    sim.apply(p, NOW)
    for task in sim.tasks.values():
        sim.report(task.id, "running", NOW + 1, health="healthy")
    steady = sim.snapshot()
    best, median, p = timed(lambda: plan(steady, NOW + 60), args.runs)
    assert p.empty, p
    print(f"steady state:            best {best:7.1f} ms   median {median:7.1f} ms")

    unhashed = replace(steady, hashes={})
    best, median, p = timed(lambda: plan(unhashed, NOW + 60), args.runs)
    assert p.empty
    print(f"steady, hashes computed: best {best:7.1f} ms   median {median:7.1f} ms")

    one = next(iter(sim.apps.values()))
    changed = Snapshot(
        apps={**steady.apps, one.id: one.model_copy(update={"instances": args.instances + 1})},
        tasks=steady.tasks, statuses=steady.statuses, nodes=steady.nodes, queue=steady.queue,
        hashes=steady.hashes,
    )
    best, median, p = timed(lambda: plan(changed, NOW + 60), args.runs)
    assert len(p.launches) == 1
    print(f"one app scaled up:       best {best:7.1f} ms   median {median:7.1f} ms")

    sim.take_changes()  # the steady state was planned: what follows is the change
    sim.add_app(one.model_copy(update={"instances": args.instances + 1}))
    changes = sim.take_changes()
    indexed = sim.snapshot(indexed=True)
    best, median, q = timed(lambda: plan(indexed, NOW + 60, changed=changes), args.runs)
    assert q == p, "a plan of only what changed must be the full plan"
    print(f"  only what changed:     best {best:7.1f} ms   median {median:7.1f} ms")

    if not args.no_loop:
        asyncio.run(through_the_loop(sim))


async def through_the_loop(sim: Simulation) -> None:
    with tempfile.TemporaryDirectory() as data:
        store = SqliteStore(Path(data))
        try:
            for n in sim.nodes.values():
                await store.put(model.node_key(n.name), n.dump())
            for app in sim.apps.values():
                await store.put(model.app_key(app.id), app.model_dump_json(by_alias=True).encode())
            for label in ("loop, from scratch:     ", "loop, restart:          "):
                start = time.perf_counter()
                scheduler = Scheduler(store)
                runner = asyncio.create_task(scheduler.run())
                await scheduler.wait_ready()
                ms = (time.perf_counter() - start) * 1000
                runner.cancel()
                with suppress(asyncio.CancelledError):
                    await runner
                tasks, _ = await store.range(model.TASKS)
                print(f"{label}{ms:7.1f} ms until ready   ({len(tasks)} tasks in the store)")
        finally:
            await store.close()


if __name__ == "__main__":
    main()
