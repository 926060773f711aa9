"""Rolling replacement: Marathon's upgradeStrategy arithmetic, step by step and simulated."""

from __future__ import annotations

import pytest

from kade.scheduler.rollout import capacity, is_healthy
from kade.scheduler.sim import Simulation, app_spec, node
from kade.spec import AppSpec, UpgradeStrategy, spec_hash

T0 = 10_000.0


def strategy(mhc: float, moc: float) -> dict[str, float]:
    return {"minimumHealthCapacity": mhc, "maximumOverCapacity": moc}


@pytest.mark.parametrize(("n", "mhc", "moc", "expected"), [
    (3, 1.0, 1.0, (3, 6)),  # Marathon's defaults: start all new, then stop all old
    (1, 1.0, 0.0, (1, 2)),  # equal: one over capacity is allowed
    (3, 1.0, 0.0, (3, 4)),
    (3, 0.9, 0.2, (3, 4)),  # ceil(2.7) == floor(3.6): equal again
    (3, 0.5, 0.0, (2, 3)),
    (4, 0.5, 0.5, (2, 6)),
    (10, 0.3, 0.0, (3, 10)),  # 10 * 0.3 is 3.0000000000000004 in floats: still 3
    (3, 0.0, 0.0, (0, 3)),  # stop all, then start all
    (0, 1.0, 1.0, (0, 1)),
])
def test_capacity(n: int, mhc: float, moc: float, expected: tuple[int, int]) -> None:
    s = UpgradeStrategy(minimum_health_capacity=mhc, maximum_over_capacity=moc)
    assert capacity(n, s) == expected


def deployed(n: int, mhc: float, moc: float, nodes: int = 3) -> tuple[Simulation, AppSpec]:
    """A world with `n` healthy tasks of v1, and v2 (another image) declared."""
    sim = Simulation()
    for i in range(nodes):
        sim.add_node(node(f"n{i}", cpus=16, mem=16384))
    v1 = sim.add_app(app_spec("/web", "v1", instances=n, upgradeStrategy=strategy(mhc, moc),
                              healthChecks=[{"path": "/health"}]))
    sim.step(T0)
    for t in sim.active("/web"):
        sim.report(t.id, "running", T0, health="healthy")
    v2 = sim.add_app(v1.model_copy(update={"version": "v2", "cmd": "sleep 2000"}))
    assert spec_hash(v2) != spec_hash(v1)
    return sim, v2


def counts(sim: Simulation, app: AppSpec) -> tuple[int, int]:
    """(active tasks of the old spec, of the new spec)."""
    new = [t for t in sim.active(app.id) if t.spec_hash == spec_hash(app)]
    return len(sim.active(app.id)) - len(new), len(new)


def healthy_new(sim: Simulation, app: AppSpec, now: float, how_many: int = 99) -> None:
    fresh = [t for t in sim.active(app.id)
             if t.spec_hash == spec_hash(app) and not is_healthy(app, sim.statuses.get(t.id))]
    for t in fresh[:how_many]:
        sim.report(t.id, "running", now, health="healthy")


def stopped_end(sim: Simulation, now: float) -> None:
    for t in list(sim.tasks.values()):
        if t.desired == "stop":
            sim.report(t.id, "killed", now)


def test_default_strategy_starts_all_new_then_stops_all_old() -> None:
    sim, v2 = deployed(3, 1.0, 1.0)
    p = sim.step(T0 + 1)
    assert (len(p.launches), len(p.stops)) == (3, 0)
    assert counts(sim, v2) == (3, 3)
    healthy_new(sim, v2, T0 + 2, 2)
    p = sim.step(T0 + 2)  # 5 healthy, minHealthy 3: two old may go
    assert (len(p.launches), len(p.stops)) == (0, 2)
    assert all(s.reason == "replaced by version v2" for s in p.stops)
    healthy_new(sim, v2, T0 + 3)
    p = sim.step(T0 + 3)
    assert (len(p.launches), len(p.stops)) == (0, 1)
    assert counts(sim, v2) == (0, 3)
    stopped_end(sim, T0 + 4)
    sim.step(T0 + 4)
    assert sim.plan(T0 + 4).empty and len(sim.tasks) == 3


def test_one_at_a_time_when_no_capacity_may_be_lost_nor_added() -> None:
    sim, v2 = deployed(3, 1.0, 0.0)
    p = sim.step(T0 + 1)  # maxCapacity 3 + 1
    assert (len(p.launches), len(p.stops)) == (1, 0)
    assert sim.plan(T0 + 1).empty  # waits for the new task to turn healthy
    for step in range(3):
        now = T0 + 2 + step
        healthy_new(sim, v2, now)
        p = sim.step(now)
        assert len(p.stops) == 1
        assert len(p.launches) == (1 if step < 2 else 0)
        stopped_end(sim, now)
    assert counts(sim, v2) == (0, 3)


def test_half_capacity_stops_half_first() -> None:
    sim, v2 = deployed(4, 0.5, 0.0)
    p = sim.step(T0 + 1)  # minHealthy 2, maxCapacity 4: stop 2 old, start 2 new
    assert (len(p.launches), len(p.stops)) == (2, 2)
    assert sim.plan(T0 + 1).empty
    healthy_new(sim, v2, T0 + 2)
    p = sim.step(T0 + 2)
    assert (len(p.launches), len(p.stops)) == (2, 2)


def test_zero_capacity_stops_everything_then_starts() -> None:
    sim, v2 = deployed(3, 0.0, 0.0)
    p = sim.step(T0 + 1)
    assert (len(p.launches), len(p.stops)) == (3, 3)


def test_unhealthy_old_tasks_go_first_whatever_the_strategy() -> None:
    sim, v2 = deployed(2, 1.0, 0.0)
    first, second = sim.active("/web")
    sim.report(second.id, "running", T0, health="unhealthy")
    p = sim.step(T0 + 1)  # healthy 1 < minHealthy 2: the healthy old task must stay
    assert [s.task_id for s in p.stops] == [second.id]
    assert len(p.launches) == 2  # maxCapacity 3 - 1 active


def test_broken_new_version_keeps_the_old_tasks() -> None:
    sim, v2 = deployed(2, 1.0, 0.0)
    for i in range(5):
        now = T0 + 100 * (i + 1)
        sim.step(now)
        for t in sim.active("/web"):
            if t.spec_hash == spec_hash(v2):
                sim.report(t.id, "failed", now, exit_code=1)
    sim.step(T0 + 600)
    old, _ = counts(sim, v2)
    assert old == 2
    # launched, failed, counted (which delays the next launch past that step): 3 of 5 steps
    assert sim.queue["/web"].failures == 3


def test_scale_and_change_together() -> None:
    sim, v2 = deployed(2, 1.0, 1.0)
    v2 = sim.add_app(v2.model_copy(update={"instances": 4}))
    p = sim.step(T0 + 1)  # maxCapacity 8
    assert (len(p.launches), len(p.stops)) == (4, 0)
    healthy_new(sim, v2, T0 + 2)
    p = sim.step(T0 + 2)
    assert (len(p.launches), len(p.stops)) == (0, 2)


@pytest.mark.parametrize(("n", "mhc", "moc"), [
    (1, 1.0, 1.0), (1, 1.0, 0.0), (1, 0.0, 0.0), (3, 1.0, 0.0), (3, 0.5, 0.5), (4, 0.5, 0.0),
    (5, 0.8, 0.2), (6, 0.3, 0.1), (10, 0.9, 0.0), (10, 1.0, 1.0), (7, 0.0, 1.0),
])
def test_simulated_rollout_keeps_min_healthy_and_max_capacity(
    n: int, mhc: float, moc: float
) -> None:
    sim, v2 = deployed(n, mhc, moc)
    min_healthy, max_capacity = capacity(n, v2.upgrade_strategy)

    def check() -> None:
        active = sim.active("/web")
        healthy = sum(1 for t in active if is_healthy(v2, sim.statuses.get(t.id)))
        assert healthy >= min_healthy
        assert len(active) <= max_capacity

    now = T0
    for _ in range(10 * n + 10):
        now += 1
        sim.step(now)
        check()
        assert sim.plan(now).empty  # nothing more until something changes
        healthy_new(sim, v2, now, 1)  # one new task turns healthy at a time
        check()
        stopped_end(sim, now)
        check()
        if counts(sim, v2) == (0, n) and all(
            is_healthy(v2, sim.statuses.get(t.id)) for t in sim.active("/web")
        ):
            break
    else:
        pytest.fail(f"rollout did not finish: {counts(sim, v2)}")
    sim.step(now + 1)
    assert len(sim.tasks) == n
