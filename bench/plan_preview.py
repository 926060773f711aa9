"""How long `POST /v1/apps/<id>/plan` spends planning: the preview of one app's change
(kade.deployments.preview) in a cluster of `--apps` apps x `--instances` tasks on `--nodes`
nodes, every task running and healthy.

    .venv/bin/python bench/plan_preview.py [--apps 1000] [--instances 10] [--nodes 100]
                                           [--change 10]

Prints milliseconds (best and median of several runs) for the preview of a new image of an
app of `--change` instances under three upgrade strategies: Marathon's default (all new
tasks at once, then the old ones stop), half at a time, and one by one (minimumHealthCapacity
1, maximumOverCapacity 0: one planner round per task, cut at `round_limit`).
"""

from __future__ import annotations

import argparse
import statistics
import time

from kade.deployments.preview import World, preview
from kade.scheduler.sim import Simulation, app_spec, node

NOW = 1_800_000_000.0


def cluster(apps: int, instances: int, nodes: int, change: int) -> Simulation:
    sim = Simulation(port_range=(20000, 30000))
    for i in range(nodes):
        sim.add_node(node(f"n{i:04d}", cpus=64, mem=65536, attributes={"zone": f"z{i % 3}"}))
    for i in range(apps):
        sim.add_app(app_spec(f"/bench/app-{i:05d}", "v1", cpus=0.01, mem=8,
                             instances=change if i == 0 else instances,
                             container={"docker": {"image": "kade/site:1"}}))
    sim.step(NOW)
    for task_id in sim.tasks:
        sim.report(task_id, "running", NOW, health="healthy")
    return sim


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--change", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sim = cluster(args.apps, args.instances, args.nodes, args.change)
    world = World(app_ids=frozenset(sim.apps), tasks=sim.tasks, statuses=sim.statuses,
                  nodes=sim.nodes, queue=sim.queue)
    old = sim.apps["/bench/app-00000"]
    print(f"{len(sim.apps)} apps, {len(sim.tasks)} tasks, {len(sim.nodes)} nodes; "
          f"the app changed has {args.change} instances")
    for name, strategy in (("default (1, 1)", {}),
                           ("half at a time (0.5, 0)", {"minimumHealthCapacity": 0.5,
                                                        "maximumOverCapacity": 0.0}),
                           ("one by one (1, 0)", {"minimumHealthCapacity": 1.0,
                                                  "maximumOverCapacity": 0.0})):
        wire = {**old.wire(), "container": {"docker": {"image": "kade/site:2"}}}
        wire.pop("version")
        if strategy:
            wire["upgradeStrategy"] = strategy
        new = app_spec(wire.pop("id"), None, **wire)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            p = preview(old, new, world, NOW)
            times.append((time.perf_counter() - started) * 1000)
        print(f"{name:26} best {min(times):7.1f} ms  median {statistics.median(times):7.1f} ms"
              f"  ({len(p.rounds)} rounds, replace {p.replace}, complete {p.complete})")


if __name__ == "__main__":
    main()
