"""The plan of a PUT (kade.deployments.preview): the planner's own counts, with plain values."""

from __future__ import annotations

from typing import Any

from kade.deployments.preview import MAX_ROUNDS, World, field_changes, preview, round_limit
from kade.scheduler.sim import Simulation, app_spec, node
from kade.spec import AppSpec

NOW = 1_800_000_000.0


def running(*apps: AppSpec, mem: float = 4096.0) -> Simulation:
    """A one-node world where `apps` run, every task healthy."""
    sim = Simulation()
    sim.add_node(node("n1", mem=mem))
    for a in apps:
        sim.add_app(a)
    sim.step(NOW)
    for task_id in sim.tasks:
        sim.report(task_id, "running", NOW, health="healthy")
    return sim


def world(sim: Simulation) -> World:
    return World(app_ids=frozenset(sim.apps), tasks=sim.tasks, statuses=sim.statuses,
                 nodes=sim.nodes, queue=sim.queue)


def new(app: AppSpec, **changes: Any) -> AppSpec:
    """`app` as a client would submit it changed: no version."""
    wire = {**app.wire(), **changes}
    wire.pop("version", None)
    return app_spec(app.id, **{k: v for k, v in wire.items() if k != "id"}).model_copy(
        update={"version": None})


def web(instances: int = 2, **fields: Any) -> AppSpec:
    return app_spec("/web", "v1", instances=instances,
                    container={"docker": {"image": "web:1"}}, **fields)


def test_a_new_app_starts_every_instance() -> None:
    sim = running()
    p = preview(None, new(web(3)), world(sim), NOW)
    assert (p.new, p.changed, p.deploys, p.restarts_tasks) == (True, True, True, False)
    assert (p.start, p.stop, p.replace, p.keep, p.unplaced) == (3, 0, 0, 0, 0)
    assert p.complete
    assert {"path": "container.docker.image", "from": None, "to": "web:1"} in p.fields
    assert {"path": "instances", "from": None, "to": 3} in p.fields


def test_a_new_image_replaces_every_task_and_names_the_field() -> None:
    old = web(2)
    sim = running(old)
    p = preview(old, new(old, container={"docker": {"image": "web:2"}}), world(sim), NOW)
    assert p.fields == [{"path": "container.docker.image", "from": "web:1", "to": "web:2"}]
    assert p.restarts_tasks and p.deploys
    assert (p.start, p.stop, p.replace, p.keep) == (0, 0, 2, 0)


def test_a_scale_up_keeps_the_tasks_and_starts_the_difference() -> None:
    old = web(2)
    sim = running(old)
    p = preview(old, new(old, instances=3), world(sim), NOW)
    assert p.fields == [{"path": "instances", "from": 2, "to": 3}]
    assert not p.restarts_tasks and p.deploys
    assert (p.start, p.stop, p.replace, p.keep) == (1, 0, 0, 2)


def test_a_scale_down_stops_the_difference() -> None:
    old = web(3)
    sim = running(old)
    p = preview(old, new(old, instances=1), world(sim), NOW)
    assert (p.start, p.stop, p.replace, p.keep) == (0, 2, 0, 1)


def test_fields_that_do_not_restart_tasks_make_a_version_without_a_deployment() -> None:
    old = web(2)
    sim = running(old)
    strategy = {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0}
    p = preview(old, new(old, upgradeStrategy=strategy), world(sim), NOW)
    assert p.changed and not p.restarts_tasks and not p.deploys
    assert {f["path"] for f in p.fields} == {"upgradeStrategy.minimumHealthCapacity",
                                            "upgradeStrategy.maximumOverCapacity"}
    assert (p.start, p.stop, p.replace, p.keep) == (0, 0, 0, 2)


def test_the_same_definition_changes_nothing() -> None:
    old = web(2)
    sim = running(old)
    p = preview(old, new(old), world(sim), NOW)
    assert not p.changed and not p.deploys and p.fields == []
    assert (p.start, p.stop, p.replace, p.keep) == (0, 0, 0, 2)


def test_a_one_by_one_strategy_shows_its_rounds() -> None:
    strategy = {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.0}
    old = web(2, upgradeStrategy=strategy)
    sim = running(old)
    p = preview(old, new(old, env={"MODE": "fast"}), world(sim), NOW)
    assert p.replace == 2
    assert [(r.start, r.stop) for r in p.rounds] == [(1, 0), (1, 1), (0, 1)]


def test_tasks_that_fit_no_node_are_unplaced_with_the_planners_reason() -> None:
    other = app_spec("/db", "v1", instances=1, mem=900.0)
    sim = running(other, mem=1024.0)
    p = preview(None, new(web(2, mem=200.0)), world(sim), NOW)
    assert (p.start, p.unplaced) == (0, 2)  # the other app's task holds the memory
    assert "mem" in p.waiting


def test_a_long_rollout_is_cut_short_and_says_so() -> None:
    strategy = {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.0}
    old = web(400, upgradeStrategy=strategy, cpus=0.001, mem=1.0)
    sim = running(old)
    p = preview(old, new(old, env={"MODE": "fast"}), world(sim), NOW)
    assert not p.complete and p.unplaced == 0
    assert len(p.rounds) == round_limit(400) < 400
    assert round_limit(10) == MAX_ROUNDS and round_limit(10_000) == 10


def test_field_changes_name_list_items_and_count_beyond_the_cap() -> None:
    changes, more = field_changes({"healthChecks": [{"path": "/a"}], "env": {"A": "1"}},
                                  {"healthChecks": [{"path": "/b"}], "env": {"B": "1"}})
    assert changes == [
        {"path": "env.A", "from": "1", "to": None},
        {"path": "env.B", "from": None, "to": "1"},
        {"path": "healthChecks[0].path", "from": "/a", "to": "/b"},
    ]
    assert more == 0
    changes, more = field_changes({"k": list(range(300))}, {"k": list(range(1, 301))})
    assert len(changes) == 200 and more == 100
