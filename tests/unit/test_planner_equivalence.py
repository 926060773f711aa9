"""The planner gives the same plans as the reference planner (planner_reference.py, the planner
before it indexed nodes and planned only what changed), and a plan of only what changed is
the same as a full one.

Each seed generates a cluster (nodes with attributes, drivers, ports held by other processes,
draining nodes; apps with constraints, fixed and assigned ports, health checks, upgrade
strategies, dependencies) and runs it through many steps of random events: tasks start, turn
healthy or unhealthy, fail, end; apps scale, change, disappear; nodes join, leave, drain.
At every step the three plans must be equal. With operators' controls (eligibility, drains)
and system apps, which the reference does not know, a plan of only what changed must still be
the full plan.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from kade.model import TERMINAL, DrainSpec, Node, NodeControl
from kade.scheduler.sim import Simulation, app_spec, node
from kade.spec import AppSpec
from tests.unit import planner_reference

T0 = 100_000.0
PORTS = (31000, 31012)
ZONES = ("1a", "1b", "1c")
CONSTRAINTS: list[list[list[str]]] = [
    [], [], [],
    [["hostname", "UNIQUE"]],
    [["zone", "GROUP_BY"]],
    [["zone", "GROUP_BY", "2"]],
    [["zone", "CLUSTER", "1a"]],
    [["zone", "MAX_PER", "2"]],
    [["rack", "LIKE", "r[12]"]],
    [["rack", "UNLIKE", "r1"]],
    [["hostname", "IS", "n1"]],
    [["zone", "UNIQUE"], ["rack", "UNLIKE", "r3"]],
    [["hostname", "MAX_PER", "1"], ["zone", "GROUP_BY", "3"]],
]


def random_node(rng: random.Random, name: str) -> Node:
    attributes = {}
    if rng.random() < 0.9:
        attributes["zone"] = rng.choice(ZONES)
    if rng.random() < 0.7:
        attributes["rack"] = f"r{rng.randint(1, 4)}"
    drivers = rng.choice([[], [], ["docker", "exec"], ["exec"], ["docker"]])
    held = sorted(rng.sample(range(PORTS[0], PORTS[1] + 1), rng.choice([0, 0, 1, 3])))
    return node(name, cpus=rng.choice([0.5, 1.0, 2.0, 4.0]), mem=rng.choice([256, 1024, 4096]),
                attributes=attributes, drivers=drivers, ports_in_use=held,
                draining=rng.random() < 0.1)


def random_app(rng: random.Random, app_id: str, others: list[str], version: str) -> AppSpec:
    fields: dict[str, Any] = {
        "instances": rng.choice([0, 1, 1, 2, 3, 4, 6]),
        "cpus": rng.choice([0.1, 0.2, 0.25, 0.5, 1.0]),
        "mem": rng.choice([32, 64, 128, 512]),
        "constraints": rng.choice(CONSTRAINTS),
        "backoffSeconds": rng.choice([0, 0, 1, 5]),
        "killSelection": rng.choice(["YOUNGEST_FIRST", "OLDEST_FIRST"]),
        "upgradeStrategy": {"minimumHealthCapacity": rng.choice([0.0, 0.5, 1.0]),
                            "maximumOverCapacity": rng.choice([0.0, 0.5, 1.0])},
        "cmd": f"sleep {rng.randint(1, 3)}",
    }
    ports = rng.choice(["none", "one", "two", "fixed"])
    if ports == "none":
        fields["portDefinitions"] = []
    elif ports == "two":
        fields["portDefinitions"] = [{"port": 0}, {"port": 0}]
    elif ports == "fixed":
        fields["portDefinitions"] = [{"port": rng.choice([8080, 9090, 31005])}]
        fields["requirePorts"] = True
    if rng.random() < 0.5:
        fields["healthChecks"] = [{"protocol": "COMMAND", "command": {"value": "true"}}]
    if rng.random() < 0.3:
        fields.pop("cmd")
        fields["container"] = {"docker": {"image": "busybox"}}
    if others and rng.random() < 0.15:
        fields["dependencies"] = [rng.choice(others)]
    return app_spec(app_id, version, **fields)


def events(rng: random.Random, sim: Simulation, now: float, step: int) -> None:
    """What agents, users and operators do between two plans."""
    for task in list(sim.tasks.values()):
        status = sim.statuses.get(task.id)
        if status is not None and status.state in TERMINAL:
            continue
        roll = rng.random()
        if task.desired == "stop":
            if roll < 0.6:
                sim.report(task.id, rng.choice(["killed", "finished"]), now)
        elif roll < 0.35:
            sim.report(task.id, "running", now, health=rng.choice(["healthy", "healthy",
                                                                   "unknown", "unhealthy"]))
        elif roll < 0.45:
            sim.report(task.id, "starting", now)
        elif roll < 0.5:
            sim.report(task.id, rng.choice(["failed", "lost"]), now, exit_code=1)
    roll = rng.random()
    ids = sorted(sim.apps)
    if roll < 0.25 and ids:
        app = sim.apps[rng.choice(ids)]
        sim.add_app(app.model_copy(update={"instances": rng.randint(0, 7),
                                           "version": f"s{step}"}))
    elif roll < 0.4 and ids:
        app_id = rng.choice(ids)
        sim.add_app(random_app(rng, app_id, [a for a in ids if a != app_id], f"v{step}"))
    elif roll < 0.45 and ids:
        sim.remove_app(rng.choice(ids))
    elif roll < 0.5:
        sim.add_app(random_app(rng, f"/app-{step}", ids, f"v{step}"))
    elif roll < 0.6:
        sim.add_node(random_node(rng, f"n{rng.randint(0, 9)}"))
    elif roll < 0.65 and sim.nodes:
        sim.remove_node(rng.choice(sorted(sim.nodes)))
    elif roll < 0.75 and sim.nodes:
        name = rng.choice(sorted(sim.nodes))
        current = sim.nodes[name]
        sim.add_node(current.model_copy(update={"draining": not current.draining}))


def check_step(sim: Simulation, now: float) -> None:
    changed = sim.take_changes()
    full = sim.plan(now)
    reference = planner_reference.plan(sim.snapshot(), now, sim.port_range)
    assert full == reference
    if changed is not None:
        assert sim.plan(now, changed) == full
    sim.apply(full, now)


@pytest.mark.parametrize("seed", range(80))
def test_same_plans_as_the_reference_and_incremental_as_full(seed: int) -> None:
    rng = random.Random(seed)
    sim = Simulation(port_range=PORTS)
    for i in range(rng.randint(1, 7)):
        sim.add_node(random_node(rng, f"n{i}"))
    ids: list[str] = []
    for i in range(rng.randint(1, 8)):
        app_id = f"/g{i % 2}/a{i}"
        sim.add_app(random_app(rng, app_id, ids, "v0"))
        ids.append(app_id)
    now = T0
    for step in range(25):
        check_step(sim, now)
        now += rng.choice([0.5, 1.0, 3.0, 20.0])
        events(rng, sim, now, step)


def test_many_apps_on_many_nodes_place_like_the_reference() -> None:
    """Larger than the seeds above: heaps and walks over hundreds of nodes."""
    rng = random.Random(7)
    sim = Simulation(port_range=(31000, 31400))
    for i in range(150):
        sim.add_node(random_node(rng, f"node-{i:03d}").model_copy(
            update={"cpus": rng.choice([2.0, 4.0, 8.0]), "mem": 16384.0}))
    for i in range(120):
        sim.add_app(random_app(rng, f"/big/a{i}", [], "v0").model_copy(
            update={"instances": rng.choice([1, 5, 20, 200])}))
    now = T0
    for step in range(6):
        check_step(sim, now)
        now += 5
        events(rng, sim, now, step)


def operator_events(rng: random.Random, sim: Simulation, now: float) -> None:
    """What operators do: eligibility, drains with deadlines, system apps."""
    roll = rng.random()
    names = sorted(sim.nodes)
    if roll < 0.1 and names:
        name = rng.choice(names)
        sim.control(NodeControl(name=name, eligible=rng.random() < 0.5))
    elif roll < 0.2 and names:
        name = rng.choice(names)
        spec = DrainSpec(started_at=now, deadline=now + rng.choice([5.0, 30.0, 600.0]),
                         keep_system=rng.random() < 0.3, max_parallel=rng.randint(1, 3))
        sim.control(NodeControl(name=name, eligible=False, drain=spec))
    elif roll < 0.25 and sim.controls:
        sim.control(None, rng.choice(sorted(sim.controls)))
    elif roll < 0.32:
        app = random_app(rng, f"/sys/s{rng.randint(0, 2)}", [], f"s{now}")
        sim.add_app(app.model_copy(update={"type": "system",
                                           "instances": rng.choice([0, 1, 1, 1])}))


@pytest.mark.parametrize("seed", range(100))
def test_with_drains_and_system_apps_a_plan_of_what_changed_is_the_full_plan(seed: int) -> None:
    rng = random.Random(1000 + seed)
    sim = Simulation(port_range=PORTS)
    for i in range(rng.randint(2, 6)):
        sim.add_node(random_node(rng, f"n{i}").model_copy(update={"draining": False}))
    for i in range(rng.randint(1, 6)):
        sim.add_app(random_app(rng, f"/a{i}", [], "v0"))
    now = T0
    for step in range(25):
        changed = sim.take_changes()
        full = sim.plan(now)
        if changed is not None:
            assert sim.plan(now, changed) == full
        sim.apply(full, now)
        now += rng.choice([0.5, 1.0, 3.0, 20.0])
        if rng.random() < 0.5:  # quiet steps too: only time passes (deadlines, backoffs)
            events(rng, sim, now, step)
            operator_events(rng, sim, now)
