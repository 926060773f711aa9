"""Nodes that go down (their agent's liveness lease ended): no new task goes there, and their
tasks are replaced elsewhere after the app's unreachableStrategy.inactiveAfterSeconds —
with plain values and the simulator."""

from __future__ import annotations

from collections import Counter

from kade.scheduler.sim import Simulation, app_spec, node
from kade.spec import AppSpec

T0 = 80_000.0


def world(*apps: AppSpec) -> Simulation:
    sim = Simulation()
    for name in ("n1", "n2", "n3"):
        sim.add_node(node(name, cpus=8, mem=8192))
    for a in apps:
        sim.add_app(a)
    return sim


def running(sim: Simulation, app_id: str) -> Counter[str]:
    return Counter(t.node for t in sim.tasks.values()
                   if t.app_id == app_id and t.desired == "run")


def start_all(sim: Simulation, now: float) -> None:
    for t in list(sim.tasks.values()):
        if t.desired == "run" and t.id not in sim.statuses:
            sim.report(t.id, "running", now)


def test_a_down_nodes_tasks_are_replaced_after_the_grace_and_it_gets_no_new_one() -> None:
    web = app_spec("/web", instances=3, constraints=[["hostname", "UNIQUE"]],
                   unreachableStrategy={"inactiveAfterSeconds": 30})
    sim = world(web)
    sim.step(T0)
    start_all(sim, T0)
    assert running(sim, "/web") == Counter({"n1": 1, "n2": 1, "n3": 1})

    sim.node_down("n3", T0 + 10)
    p = sim.plan(T0 + 20)  # within the grace: it still counts, a wake-up is due at its end
    assert not p.stops and not p.launches and p.wake_at == T0 + 40
    lost = next(t for t in sim.tasks.values() if t.node == "n3")

    sim.add_node(node("n4", cpus=8, mem=8192))
    p = sim.step(T0 + 40)
    assert [(s.task_id, s.reason) for s in p.stops] == [
        (lost.id, "node n3 down since 1970-01-01T22:13:30.000Z: replaced on another node")]
    assert [launch.node for launch in p.launches] == ["n4"]  # never on the down node


def test_a_node_back_within_the_grace_keeps_its_tasks() -> None:
    sim = world(app_spec("/web", instances=2))
    sim.step(T0)
    start_all(sim, T0)
    before = dict(sim.tasks)
    sim.node_down("n1", T0 + 1)  # default grace 0: replaced as soon as the node is down
    sim.node_down("n1", None)  # back before any plan: nothing moved
    assert sim.step(T0 + 2).empty
    assert sim.tasks == before


def test_unreachable_strategy_disabled_never_replaces() -> None:
    sim = world(app_spec("/pinned", instances=1, unreachableStrategy="disabled",
                         constraints=[["hostname", "CLUSTER", "n1"]]))
    sim.step(T0)
    start_all(sim, T0)
    sim.node_down("n1", T0)
    assert sim.step(T0 + 3600).empty


def test_a_plan_of_what_changed_replaces_lost_tasks_too() -> None:
    sim = world(app_spec("/web", instances=2))
    sim.step(T0)
    start_all(sim, T0)
    sim.take_changes()
    sim.node_down("n1", T0 + 1)
    changed = sim.take_changes()
    assert sim.plan(T0 + 5, changed) == sim.plan(T0 + 5)
    assert sim.plan(T0 + 5).stops
