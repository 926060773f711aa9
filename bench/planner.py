"""How long plan() takes: by default 1,000 apps x 10 instances on 100 nodes; the goal sizes
are 10,000 apps x 10 instances on 1,000 nodes.

    .venv/bin/python bench/planner.py [--apps 1000] [--instances 10] [--nodes 100] [--no-loop]
                                      [--etcd]
                                      [--reference] [--constraints '[["zone", "GROUP_BY"]]']

Nodes have the attribute zone=z0, z1 or z2.

Prints milliseconds (best and median of several runs) for:
- from scratch: nothing placed yet, every task to place;
- steady state: everything placed and running, nothing to do (with the spec hashes the loop
  keeps, and without them);
- one app changed: steady state plus one app scaled up by one, planned in full, and planned
  from a kept TaskIndex with only what changed (what the loop does between reloads);
- with --reference, the same plans by the planner as it was before it indexed nodes and
  planned only what changed (kept in tests/unit/planner_reference.py), for before/after
  figures taken on the same machine at the same moment;
- through the loop: a Scheduler on the SQLite store, from start until every task is written
  (one transaction), and a restarted Scheduler until it has read everything back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

from kade import model
from kade.scheduler.loop import Scheduler
from kade.scheduler.plan import Plan, Snapshot, plan
from kade.scheduler.sim import Simulation, app_spec, node
from kade.store import SqliteStore, Store, open_store
from kade.testing.etcd import EtcdCluster

NOW = 1_000_000.0


def timed(fn: Callable[[], Plan], runs: int) -> tuple[str, Plan]:
    """`fn`'s best and median wall time over `runs` runs (after one to warm up), and the best
    CPU time of the process (less disturbed by other work on a shared machine)."""
    times, cpu = [], []
    result = fn()
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return (f"best {min(times):7.1f} ms   median {statistics.median(times):7.1f} ms   "
            f"cpu {min(cpu):7.1f} ms"), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-loop", action="store_true", help="skip the store-backed runs")
    parser.add_argument("--etcd", action="store_true",
                        help="run the loop on a 3-member etcd on this machine too")
    parser.add_argument("--constraints", type=json.loads, default=[],
                        help='constraints of every app, e.g. \'[["zone", "GROUP_BY"]]\'')
    parser.add_argument("--reference", action="store_true",
                        help="time the planner kept in tests/unit/planner_reference.py too")
    args = parser.parse_args()
    reference: Callable[[Snapshot, float], Plan] | None = None
    if args.reference:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.unit.planner_reference import plan as reference

    def both(label: str, snap: Snapshot, now: float, check: Callable[[Plan], bool]) -> Plan:
        figures, p = timed(lambda: plan(snap, now), args.runs)
        assert check(p), p
        print(f"{label:<26}{figures}")
        if reference is not None:
            ref = reference
            figures, q = timed(lambda: ref(snap, now), args.runs)
            assert q == p, "the reference planner disagrees"
            print(f"{'  reference planner:':<26}{figures}")
        return p

    sim = Simulation()
    for i in range(args.nodes):
        sim.add_node(node(f"node-{i:03d}", cpus=64, mem=262144,
                          attributes={"zone": f"z{i % 3}"}))
    for i in range(args.apps):
        sim.add_app(app_spec(f"/team-{i % 20}/app-{i:04d}", instances=args.instances,
                             cpus=0.1, mem=64, healthChecks=[{"path": "/health"}],
                             constraints=args.constraints))
    tasks = args.apps * args.instances
    print(f"{args.apps} apps x {args.instances} instances = {tasks} tasks, {args.nodes} nodes")

    p = both("from scratch:", sim.snapshot(), NOW, lambda p: len(p.launches) == tasks)
    sim.apply(p, NOW)
    for task in sim.tasks.values():
        sim.report(task.id, "running", NOW + 1, health="healthy")
    steady = sim.snapshot()
    both("steady state:", steady, NOW + 60, lambda p: p.empty)
    unhashed = replace(steady, hashes={})
    figures, p = timed(lambda: plan(unhashed, NOW + 60), args.runs)
    assert p.empty
    print(f"{'steady, hashes computed:':<26}{figures}")

    one = next(iter(sim.apps.values()))
    scaled = one.model_copy(update={"instances": args.instances + 1})
    changed = replace(steady, apps={**steady.apps, one.id: scaled})
    p = both("one app scaled up, full:", changed, NOW + 60, lambda p: len(p.launches) == 1)

    sim.take_changes()  # the steady state was planned: what follows is the change
    sim.add_app(one.model_copy(update={"instances": args.instances + 1}))
    changes = sim.take_changes()
    indexed = sim.snapshot(indexed=True)
    figures, q = timed(lambda: plan(indexed, NOW + 60, changed=changes), args.runs)
    assert q == p, "a plan of only what changed must be the full plan"
    print(f"{'  only what changed:':<26}{figures}")

    if not args.no_loop:
        with tempfile.TemporaryDirectory() as data:
            print("through the loop, on SQLite:")
            asyncio.run(through_the_loop(sim, lambda: _sqlite(Path(data))))
        if args.etcd:
            with tempfile.TemporaryDirectory() as data:
                etcd = EtcdCluster(Path(data))
                etcd.start()
                try:
                    print("through the loop, on etcd (3 members on this machine):")
                    asyncio.run(through_the_loop(
                        sim, lambda: open_store(None, etcd=etcd.endpoints)))
                finally:
                    etcd.stop()


async def _sqlite(data: Path) -> Store:
    return SqliteStore(data)


async def through_the_loop(sim: Simulation, opening: Callable[[], Awaitable[Store]]) -> None:
    store = await opening()
    try:
        for n in sim.nodes.values():
            await store.put(model.node_key(n.name), n.dump())
        for app in sim.apps.values():
            await store.put(model.app_key(app.id), app.model_dump_json(by_alias=True).encode())
        for label in ("  loop, from scratch:     ", "  loop, restart:          "):
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
