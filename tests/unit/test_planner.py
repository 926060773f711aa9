"""The planner with plain values: scaling, failures and backoff, removal, forgetting, draining."""

from __future__ import annotations

import pytest

from kade.model import QueueEntry
from kade.scheduler.backoff import RESET_AFTER, launch_delay
from kade.scheduler.plan import Plan, Snapshot, Stop, plan
from kade.scheduler.sim import Simulation, app_spec, node
from kade.spec import AppSpec

T0 = 1_000_000.0


def world(*apps: AppSpec, nodes: int = 2) -> Simulation:
    sim = Simulation()
    for a in apps:
        sim.add_app(a)
    for i in range(nodes):
        sim.add_node(node(f"node-{chr(ord('a') + i)}"))
    return sim


def run_all(sim: Simulation, app_id: str, now: float, health: str = "unknown") -> None:
    for t in sim.active(app_id):
        sim.report(t.id, "running", now, health=health)


# -- scaling ---------------------------------------------------------------------------------

def test_scale_up_launches_until_instances_and_spreads() -> None:
    sim = world(app_spec("/web", instances=3, cpus=0.5, mem=64))
    p = sim.step(T0)
    assert len(p.launches) == 3
    assert sorted(launch.node for launch in p.launches) == ["node-a", "node-a", "node-b"]
    first = p.launches[0]
    assert (first.app_id, first.version, first.cpus, first.mem) == ("/web", "v1", 0.5, 64)
    assert first.host == "127.0.0.1"
    assert sim.plan(T0).empty


def test_plan_is_deterministic() -> None:
    sim = world(app_spec("/a", instances=4), app_spec("/b", instances=2, mem=300), nodes=3)
    snap = sim.snapshot()
    assert plan(snap, T0) == plan(snap, T0)
    reordered = Snapshot(
        apps=dict(reversed(list(snap.apps.items()))), tasks={}, statuses={},
        nodes=dict(reversed(list(snap.nodes.items()))), queue={},
    )
    assert plan(reordered, T0) == plan(snap, T0)


def test_scale_down_stops_unhealthy_then_not_running_then_youngest() -> None:
    app = app_spec("/web", instances=5, healthChecks=[{"path": "/health"}])
    sim = world(app)
    sim.step(T0)
    for i, t in enumerate(sim.active("/web")):  # make their ages differ
        sim.tasks[t.id] = t.model_copy(update={"created_at": T0 + i})
    ts = sim.active("/web")
    sim.report(ts[0].id, "running", T0, health="healthy")
    sim.report(ts[1].id, "running", T0, health="healthy")
    sim.report(ts[2].id, "running", T0, health="unhealthy")
    sim.report(ts[3].id, "staging", T0)
    sim.report(ts[4].id, "running", T0, health="healthy")
    sim.add_app(app.model_copy(update={"instances": 2}))
    p = sim.plan(T0 + 5)
    assert p.stops == (
        Stop(ts[2].id, "scaled down"),  # unhealthy
        Stop(ts[3].id, "scaled down"),  # not running yet
        Stop(ts[4].id, "scaled down"),  # youngest healthy
    )
    assert p.launches == ()
    sim.apply(p, T0 + 5)
    assert sim.plan(T0 + 5).empty


def test_scale_down_oldest_first() -> None:
    app = app_spec("/web", instances=3, killSelection="OLDEST_FIRST")
    sim = world(app)
    sim.step(T0)
    for i, t in enumerate(sim.active("/web")):
        sim.tasks[t.id] = t.model_copy(update={"created_at": T0 + i})
        sim.report(t.id, "running", T0 + 5)
    oldest = sim.active("/web")[0]
    sim.add_app(app.model_copy(update={"instances": 2}))
    assert sim.plan(T0 + 10).stops == (Stop(oldest.id, "scaled down"),)


def test_new_version_with_the_same_spec_moves_tasks_without_restarting_them() -> None:
    app = app_spec("/web", "v1", instances=3)
    sim = world(app)
    sim.step(T0)
    ids = sorted(t.id for t in sim.active("/web"))
    sim.add_app(app.model_copy(update={"version": "v2", "instances": 2, "backoff_seconds": 5}))
    p = sim.step(T0 + 1)
    assert len(p.stops) == 1 and p.launches == ()
    assert sorted(r.task_id for r in p.retags) == sorted(t.id for t in sim.active("/web"))
    assert {r.version for r in p.retags} == {"v2"}
    assert {t.version for t in sim.active("/web")} == {"v2"}
    stopped = sim.tasks[p.stops[0].task_id]
    assert stopped.version == "v1" and stopped.id in ids  # a stopped task keeps its version
    assert sim.plan(T0 + 1).empty


def test_stopping_task_is_replaced_and_forgotten_once_it_ended() -> None:
    sim = world(app_spec("/web", instances=1))
    sim.step(T0)
    (task,) = sim.active("/web")
    sim.report(task.id, "running", T0)
    sim.tasks[task.id] = task.model_copy(update={"desired": "stop", "stop_reason": "killed"})
    p = sim.step(T0 + 1)  # a kill from the API: replaced, the old one is left to its agent
    assert len(p.launches) == 1 and p.forgets == () and p.stops == ()
    sim.report(task.id, "killed", T0 + 2)
    p = sim.step(T0 + 2)
    assert p.forgets == (task.id,) and p.launches == () and p.queue == {}
    assert task.id not in sim.statuses


def test_removed_app_stops_everything_and_clears_its_queue() -> None:
    sim = world(app_spec("/web", instances=3))
    sim.step(T0)
    ts = sim.active("/web")
    sim.report(ts[0].id, "failed", T0 + 1, message="boom")
    sim.step(T0 + 1)  # counts the failure: a queue entry exists
    assert sim.queue["/web"].failures == 1
    del sim.apps["/web"]
    p = sim.plan(T0 + 2)
    assert {s.task_id for s in p.stops} == {t.id for t in sim.active("/web")}
    assert all(s.reason == "app deleted" for s in p.stops)
    assert p.queue == {"/web": None}
    assert p.launches == ()
    sim.apply(p, T0 + 2)
    for t in list(sim.tasks.values()):
        sim.report(t.id, "killed", T0 + 3)
    p = sim.step(T0 + 3)
    assert len(p.forgets) == 2 and sim.tasks == {} and sim.statuses == {}
    assert sim.plan(T0 + 3).empty


def test_orphan_status_and_stopped_tasks_on_vanished_nodes_are_forgotten() -> None:
    sim = world(app_spec("/web", instances=1), nodes=2)
    sim.step(T0)
    (task,) = sim.active("/web")
    sim.tasks[task.id] = task.model_copy(update={"desired": "stop"})
    sim.step(T0)  # replacement launched
    del sim.nodes[task.node]
    sim.statuses["ghost.1"] = sim.report(task.id, "running", T0).model_copy(
        update={"task_id": "ghost.1"})
    p = sim.plan(T0 + 1)
    assert set(p.forgets) == {task.id, "ghost.1"}


def test_unreadable_app_is_left_alone() -> None:
    sim = world(app_spec("/web", instances=2))
    sim.step(T0)
    snap = sim.snapshot()
    broken = Snapshot(apps={}, tasks=snap.tasks, statuses=snap.statuses, nodes=snap.nodes,
                      queue=snap.queue, unreadable=frozenset({"/web"}))
    assert plan(broken, T0).empty
    gone = Snapshot(apps={}, tasks=snap.tasks, statuses=snap.statuses, nodes=snap.nodes,
                    queue=snap.queue)
    assert len(plan(gone, T0).stops) == 2


# -- failures and backoff ------------------------------------------------------------------

def test_failed_task_is_forgotten_counted_and_relaunched_after_the_delay() -> None:
    sim = world(app_spec("/web", instances=1, backoffSeconds=2, backoffFactor=2,
                         maxLaunchDelaySeconds=5))
    sim.step(T0)
    (task,) = sim.active("/web")
    sim.report(task.id, "failed", T0 + 1, exit_code=3)
    p = sim.plan(T0 + 1)
    assert p.forgets == (task.id,)
    assert p.launches == ()
    assert p.queue == {"/web": QueueEntry(
        app_id="/web", failures=1, delay_until=T0 + 3, last_failure="exited with code 3",
        last_failure_at=T0 + 1, spec_hash=task.spec_hash)}
    assert p.wake_at == T0 + 3
    sim.apply(p, T0 + 1)
    assert sim.plan(T0 + 2).empty and sim.plan(T0 + 2).wake_at == T0 + 3

    p = sim.step(T0 + 3)  # delay over: relaunch
    assert len(p.launches) == 1 and p.queue == {}
    (task,) = sim.active("/web")
    sim.report(task.id, "failed", T0 + 4, message="OOM killed")
    p = sim.step(T0 + 4)
    entry = p.queue["/web"]
    assert entry is not None
    assert (entry.failures, entry.delay_until, entry.last_failure) == (2, T0 + 8, "OOM killed")

    sim.step(T0 + 8)
    (task,) = sim.active("/web")
    sim.report(task.id, "failed", T0 + 9)
    entry = sim.step(T0 + 9).queue["/web"]
    assert entry is not None and entry.delay_until == T0 + 9 + 5  # capped
    assert entry.last_failure == "task failed"


def test_launch_delay_grows_and_is_capped() -> None:
    app = app_spec("/x", backoffSeconds=1, backoffFactor=1.15, maxLaunchDelaySeconds=300)
    assert launch_delay(app, 0) == 0
    assert launch_delay(app, 1) == 1
    assert launch_delay(app, 2) == pytest.approx(1.15)
    assert launch_delay(app, 10_000) == 300
    assert launch_delay(app_spec("/x", backoffSeconds=0), 7) == 0


def test_several_failures_in_one_plan_count_each() -> None:
    sim = world(app_spec("/web", instances=3, backoffSeconds=0))
    sim.step(T0)
    for t in sim.active("/web"):
        sim.report(t.id, "lost", T0 + 1)
    p = sim.step(T0 + 1)
    entry = p.queue["/web"]
    assert entry is not None and entry.failures == 3
    assert len(p.forgets) == 3
    assert len(p.launches) == 3  # no backoff configured: relaunched at once
    assert sim.plan(T0 + 1).empty


def test_failure_count_resets_after_a_relaunch_stays_up() -> None:
    sim = world(app_spec("/web", instances=2, backoffSeconds=1, healthChecks=[{"path": "/"}]))
    sim.step(T0)
    a, b = sim.active("/web")
    sim.report(b.id, "running", T0, health="healthy")
    sim.report(a.id, "failed", T0 + 1)
    sim.step(T0 + 1)
    # The sibling created before the failure does not reset it, however long it runs.
    p = sim.plan(T0 + 100)
    assert "/web" not in p.queue and len(p.launches) == 1
    sim.step(T0 + 2)
    (new,) = [t for t in sim.active("/web") if t.id != b.id]
    sim.report(new.id, "running", T0 + 3, health="unknown")
    p = sim.plan(T0 + 3 + RESET_AFTER)
    assert p.queue == {}  # running but not yet healthy
    sim.report(new.id, "running", T0 + 4, health="healthy")
    p = sim.plan(T0 + 5)
    assert p.empty and p.wake_at == T0 + 3 + RESET_AFTER
    p = sim.step(T0 + 3 + RESET_AFTER)
    entry = p.queue["/web"]
    assert entry is not None
    assert (entry.failures, entry.delay_until, entry.last_failure) == (0, 0.0, "task failed")
    assert sim.plan(T0 + 100).empty


# -- draining ----------------------------------------------------------------------------------

def test_draining_node_gets_no_tasks_and_its_tasks_move_when_replacements_are_healthy() -> None:
    sim = world(app_spec("/web", instances=2), nodes=2)
    sim.step(T0)
    run_all(sim, "/web", T0 + 1)
    on_a = [t for t in sim.active("/web") if t.node == "node-a"]
    assert len(on_a) == 1
    sim.nodes["node-a"] = sim.nodes["node-a"].model_copy(update={"draining": True})
    p = sim.step(T0 + 2)
    assert [launch.node for launch in p.launches] == ["node-b"]
    assert p.stops == ()  # upgradeStrategy (1, 1): the replacement must be healthy first
    run_all(sim, "/web", T0 + 3)
    p = sim.step(T0 + 3)
    assert p.stops == (Stop(on_a[0].id, "node node-a is draining"),)
    assert p.launches == ()
    assert sim.plan(T0 + 3).empty


def test_all_nodes_draining_says_so() -> None:
    sim = world(app_spec("/web"), nodes=1)
    sim.nodes["node-a"] = sim.nodes["node-a"].model_copy(update={"draining": True})
    p = sim.step(T0)
    entry = p.queue["/web"]
    assert entry is not None and entry.waiting == "no node fits: node-a: draining"
    assert sim.plan(T0).empty
    sim.nodes.clear()
    entry = sim.plan(T0).queue["/web"]
    assert entry is not None and entry.waiting == "no nodes registered"


def test_empty_plan_property() -> None:
    assert Plan().empty
    assert Plan(wake_at=5.0).empty
    assert not Plan(forgets=("x",)).empty


def test_a_new_spec_clears_the_launch_delay() -> None:
    from kade import model
    from kade.spec import parse_app

    app = parse_app({"id": "/a", "cmd": "exit 1", "cpus": 0.1, "mem": 8}).app
    app = app.model_copy(update={"version": "v2"})
    node = model.Node(name="n", address="127.0.0.1", cpus=2, mem=1024)
    delayed = QueueEntry(app_id="/a", failures=5, delay_until=1000.0, spec_hash="old-spec",
                         last_failure="exited with code 1")
    result = plan(Snapshot(apps={"/a": app}, tasks={}, statuses={}, nodes={"n": node},
                           queue={"/a": delayed}), now=10)
    assert len(result.launches) == 1
    assert result.queue["/a"] is not None and result.queue["/a"].failures == 0
    assert result.queue["/a"].last_failure == "exited with code 1"


# -- dependencies ----------------------------------------------------------------------------

def _checked(app_id: str, **fields: object) -> AppSpec:
    return app_spec(app_id, healthChecks=[{"protocol": "TCP"}], **fields)


def test_an_app_waits_until_its_dependencies_are_all_healthy() -> None:
    sim = world(_checked("/shop/db", instances=2),
                app_spec("/shop/web", dependencies=["/shop/db"]))
    p = sim.step(T0)
    assert {launch.app_id for launch in p.launches} == {"/shop/db"}
    assert sim.queue["/shop/web"].waiting == (
        "waiting for dependencies to be healthy: /shop/db")
    run_all(sim, "/shop/db", T0 + 1, health="unknown")
    assert not [launch for launch in sim.step(T0 + 1).launches if launch.app_id == "/shop/web"]
    db = sim.active("/shop/db")
    sim.report(db[0].id, "running", T0 + 2, health="healthy")
    assert not sim.step(T0 + 2).launches  # one of two instances healthy: still waiting
    sim.report(db[1].id, "running", T0 + 3, health="healthy")
    p = sim.step(T0 + 3)
    assert [launch.app_id for launch in p.launches] == ["/shop/web"]
    assert "/shop/web" not in sim.queue


def test_a_missing_dependency_holds_the_app() -> None:
    sim = world(app_spec("/web", dependencies=["/db"]))
    assert sim.step(T0).launches == ()
    assert "/db" in sim.queue["/web"].waiting


def test_a_running_app_is_not_held_back_when_a_dependency_turns_unhealthy() -> None:
    sim = world(_checked("/db"), app_spec("/web", dependencies=["/db"]))
    sim.step(T0)
    run_all(sim, "/db", T0 + 1, health="healthy")
    sim.step(T0 + 1)
    run_all(sim, "/web", T0 + 2)
    sim.step(T0 + 2)
    run_all(sim, "/db", T0 + 3, health="unhealthy")
    sim.add_app(sim.apps["/web"].model_copy(update={"instances": 2}))
    p = sim.step(T0 + 4)
    assert [launch.app_id for launch in p.launches] == ["/web"]
