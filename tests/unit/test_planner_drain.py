"""Node eligibility and surge-first drains (nodectl/<name>), with plain values and the simulator."""

from __future__ import annotations

import random

import pytest

from kade.model import DrainSpec, NodeControl
from kade.scheduler.drain import DrainProgress, drain_progress
from kade.scheduler.plan import Stop
from kade.scheduler.rollout import capacity, is_healthy
from kade.scheduler.sim import Simulation, app_spec, node
from kade.spec import AppSpec

T0 = 50_000.0
CHECKED = {"healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}


def world(*apps: AppSpec, nodes: tuple[str, ...] = ("n1", "n2", "n3")) -> Simulation:
    sim = Simulation()
    for name in nodes:
        sim.add_node(node(name, cpus=8, mem=8192))
    for a in apps:
        sim.add_app(a)
    return sim


def healthy_all(sim: Simulation, now: float) -> None:
    for t in list(sim.tasks.values()):
        if t.desired == "run" and not is_healthy(sim.apps[t.app_id], sim.statuses.get(t.id)):
            sim.report(t.id, "running", now, health="healthy")


def end_stopped(sim: Simulation, now: float) -> None:
    for t in list(sim.tasks.values()):
        status = sim.statuses.get(t.id)
        if t.desired == "stop" and (status is None or status.state != "killed"):
            sim.report(t.id, "killed", now)


def drain(sim: Simulation, name: str, deadline: float = T0 + 3600, **fields: object) -> None:
    spec = DrainSpec(started_at=T0, deadline=deadline, **fields)  # type: ignore[arg-type]
    sim.control(NodeControl(name=name, eligible=False, drain=spec))


def only_on(sim: Simulation, name: str, app: AppSpec) -> Simulation:
    """`app` placed and healthy on node `name` alone, then the other nodes join."""
    others = {n: sim.nodes.pop(n) for n in list(sim.nodes) if n != name}
    sim.add_app(app)
    sim.step(T0)
    healthy_all(sim, T0)
    for other in others.values():
        sim.add_node(other)
    assert sim.plan(T0).empty
    return sim


def progress(sim: Simulation, name: str) -> DrainProgress:
    found = drain_progress(name, sim.controls[name], sim.apps, sim.tasks.values(), sim.statuses)
    assert found is not None
    return found


# -- eligibility -------------------------------------------------------------------------------

def test_an_ineligible_node_gets_no_new_task_and_keeps_its_running_ones() -> None:
    sim = world(app_spec("/web", instances=2), nodes=("n1", "n2"))
    sim.step(T0)
    on_n1 = [t.id for t in sim.active("/web") if t.node == "n1"]
    sim.control(NodeControl(name="n1", eligible=False))
    sim.add_app(sim.apps["/web"].model_copy(update={"instances": 4, "version": "v2"}))
    p = sim.step(T0 + 1)
    assert [launch.node for launch in p.launches] == ["n2", "n2"]
    assert p.stops == ()
    assert [t.id for t in sim.active("/web") if t.node == "n1"] == on_n1
    sim.remove_node("n2")
    sim.add_app(sim.apps["/web"].model_copy(update={"instances": 6, "version": "v3"}))
    entry = sim.step(T0 + 2).queue["/web"]
    assert entry is not None and entry.waiting == "no node fits: n1: not eligible"
    sim.control(NodeControl(name="n1", eligible=True))
    assert [launch.node for launch in sim.step(T0 + 3).launches] == ["n1", "n1"]


# -- surge-first ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mhc", [1.0, 0.5, 0.0])
def test_a_single_instance_moves_surge_first_whatever_its_upgrade_strategy(mhc: float) -> None:
    app = app_spec("/web", instances=1, upgradeStrategy={"minimumHealthCapacity": mhc,
                                                         "maximumOverCapacity": 0}, **CHECKED)
    sim = only_on(world(), "n1", app)
    (old,) = sim.active("/web")
    drain(sim, "n1")
    p = sim.step(T0 + 1)
    assert [launch.node for launch in p.launches] == ["n2"] and p.stops == ()
    assert progress(sim, "n1") == DrainProgress(node="n1", deadline=T0 + 3600, left=1,
                                                moving=1, stopping=0, kept=0, done=False)
    (new,) = [t for t in sim.active("/web") if t.id != old.id]
    sim.report(new.id, "running", T0 + 2, health="unknown")
    assert sim.step(T0 + 2).stops == ()  # running is not healthy: the old one stays
    sim.report(new.id, "running", T0 + 3, health="healthy")
    p = sim.step(T0 + 3)
    assert p.stops == (Stop(old.id, "node n1 is draining"),) and p.launches == ()
    assert progress(sim, "n1").stopping == 1
    end_stopped(sim, T0 + 4)
    sim.step(T0 + 4)
    assert progress(sim, "n1").done
    assert sim.plan(T0 + 5).empty


def test_at_most_max_parallel_tasks_of_an_app_move_at_a_time() -> None:
    sim = only_on(world(), "n1", app_spec("/web", instances=5, **CHECKED))
    drain(sim, "n1", max_parallel=2)
    now = T0
    seen_moving = []
    for _ in range(10):
        now += 1
        sim.step(now)
        on_n1 = [t for t in sim.active("/web") if t.node == "n1"]
        elsewhere = [t for t in sim.active("/web") if t.node != "n1"]
        assert len(elsewhere) - (5 - len(on_n1)) <= 2  # replacements in flight
        seen_moving.append(progress(sim, "n1").moving)
        healthy_all(sim, now)
        end_stopped(sim, now)
        if not on_n1:
            break
    assert max(seen_moving) == 2
    sim.step(now + 1)
    assert progress(sim, "n1").done and len(sim.active("/web")) == 5


@pytest.mark.parametrize("seed", range(12))
def test_a_drain_never_takes_an_app_below_its_minimum_health_capacity(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 6)
    mhc = rng.choice([0.0, 0.5, 0.8, 1.0])
    app = app_spec("/web", instances=n, upgradeStrategy={"minimumHealthCapacity": mhc}, **CHECKED)
    sim = world(app, nodes=("n1", "n2", "n3", "n4"))
    sim.step(T0)
    healthy_all(sim, T0)
    min_healthy, _ = capacity(n, app.upgrade_strategy)
    draining = ["n1", "n2"]
    for name in draining:
        drain(sim, name, max_parallel=rng.randint(1, 3))
    now = T0
    for _ in range(80):
        now += 1
        sim.step(now)
        healthy = [t for t in sim.active("/web") if is_healthy(app, sim.statuses.get(t.id))]
        assert len(healthy) >= min_healthy
        fresh = [t for t in sim.active("/web") if not is_healthy(app, sim.statuses.get(t.id))]
        if fresh:  # replacements turn healthy one at a time, at random
            sim.report(rng.choice(fresh).id, "running", now, health="healthy")
        if rng.random() < 0.5:
            end_stopped(sim, now)
        if all(progress(sim, name).done for name in draining):
            break
    else:
        pytest.fail("the drain did not finish")
    sim.step(now + 1)  # the ended tasks are forgotten
    assert len(sim.active("/web")) == n
    assert not {t.node for t in sim.tasks.values()} & set(draining)


def test_after_the_deadline_the_rest_is_stopped_where_it_is() -> None:
    sim = only_on(world(), "n1", app_spec("/web", instances=2, **CHECKED))
    drain(sim, "n1", deadline=T0 + 60)
    p = sim.step(T0 + 1)
    assert len(p.launches) == 1 and p.wake_at == T0 + 60
    p = sim.step(T0 + 60)
    stopped = sorted(t.id for t in sim.tasks.values() if t.node == "n1")
    assert sorted(s.task_id for s in p.stops) == stopped
    assert {s.reason for s in p.stops} == {"node n1: the drain's deadline passed"}
    assert len(p.launches) == 1  # the app gets its missing task elsewhere, as after any stop
    assert len([t for t in sim.active("/web") if t.node != "n1"]) == 2


def test_a_drain_during_an_upgrade_is_part_of_the_upgrade() -> None:
    app = app_spec("/web", instances=2, **CHECKED)
    sim = only_on(world(), "n1", app)
    sim.add_app(app.model_copy(update={"version": "v2", "cmd": "sleep 2"}))
    drain(sim, "n1")
    p = sim.step(T0 + 1)
    assert {launch.node for launch in p.launches} == {"n2", "n3"} and p.stops == ()
    healthy_all(sim, T0 + 2)
    p = sim.step(T0 + 2)
    assert {s.reason for s in p.stops} == {"node n1 is draining"} and len(p.stops) == 2


def test_scaling_down_during_a_drain_stops_movers_first() -> None:
    sim = only_on(world(), "n1", app_spec("/web", instances=3, **CHECKED))
    drain(sim, "n1")
    sim.step(T0 + 1)
    sim.add_app(sim.apps["/web"].model_copy(update={"instances": 0, "version": "v0"}))
    p = sim.step(T0 + 2)
    assert len(p.stops) == 4 and p.launches == ()


# -- system tasks on a draining node ------------------------------------------------------------

def _with_system(keep: bool) -> Simulation:
    """/web and the system app /agent on n1; n2 joins and gets /agent."""
    sim = world(app_spec("/agent", type="system", **CHECKED), app_spec("/web", **CHECKED),
                nodes=("n1",))
    sim.step(T0)
    sim.add_node(node("n2", cpus=8, mem=8192))
    assert [launch.app_id for launch in sim.step(T0).launches] == ["/agent"]
    healthy_all(sim, T0)
    assert sim.plan(T0).empty
    drain(sim, "n1", keep_system=keep)
    return sim


def test_system_tasks_stop_last() -> None:
    sim = _with_system(keep=False)
    (agent_n1,) = [t for t in sim.active("/agent") if t.node == "n1"]
    p = sim.step(T0 + 1)
    assert [launch.app_id for launch in p.launches] == ["/web"] and p.stops == ()
    healthy_all(sim, T0 + 2)
    p = sim.step(T0 + 2)
    assert [s.reason for s in p.stops] == ["node n1 is draining"]  # the service task
    assert progress(sim, "n1").left == 1 and progress(sim, "n1").stopping == 1
    assert sim.step(T0 + 3).stops == ()  # the web task is still stopping: the agent stays
    end_stopped(sim, T0 + 4)
    p = sim.step(T0 + 4)
    assert p.stops == (Stop(agent_n1.id, "node n1 is drained"),)
    end_stopped(sim, T0 + 5)
    sim.step(T0 + 5)
    assert progress(sim, "n1").done
    assert sim.plan(T0 + 6).empty


def test_a_drain_that_keeps_system_tasks_is_done_when_only_they_are_left() -> None:
    sim = _with_system(keep=True)
    for now in (T0 + 1, T0 + 2, T0 + 3):
        sim.step(now)
        healthy_all(sim, now)
        end_stopped(sim, now)
    sim.step(T0 + 4)
    assert progress(sim, "n1") == DrainProgress(node="n1", deadline=T0 + 3600, left=0,
                                                moving=0, stopping=0, kept=1, done=True)
    assert [t.node for t in sim.active("/agent")] == ["n1", "n2"]
    p = sim.step(T0 + 7200)  # kept past the deadline too
    assert p.stops == ()


def test_no_drain_no_progress() -> None:
    assert drain_progress("n1", NodeControl(name="n1"), {}, [], {}) is None


def test_a_zone_drains_while_the_app_keeps_its_capacity_and_spread() -> None:
    sim = Simulation()
    for i in range(6):
        sim.add_node(node(f"n{i}", cpus=8, mem=8192, attributes={"az": ("1a", "1b", "1c")[i % 3]}))
    app = sim.add_app(app_spec("/web", instances=6, constraints=[["az", "GROUP_BY"]],
                               **CHECKED))
    sim.step(T0)
    healthy_all(sim, T0)
    zone = [name for name, n in sim.nodes.items() if n.attributes["az"] == "1a"]
    for name in zone:  # the API makes them all ineligible first, then drains them
        sim.control(NodeControl(name=name, eligible=False))
    for name in zone:
        drain(sim, name, max_parallel=1)
    now = T0
    for _ in range(30):
        now += 1
        sim.step(now)
        healthy = [t for t in sim.active("/web") if is_healthy(app, sim.statuses.get(t.id))]
        assert len(healthy) >= 6
        healthy_all(sim, now)
        end_stopped(sim, now)
        if all(progress(sim, name).done for name in zone):
            break
    else:
        pytest.fail("the zone did not drain")
    zones = sorted(sim.nodes[t.node].attributes["az"] for t in sim.active("/web"))
    assert zones == ["1b", "1b", "1b", "1c", "1c", "1c"]
