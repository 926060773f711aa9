"""System apps ("type": "system"): one task on every eligible node that matches the app."""

from __future__ import annotations

from collections import Counter

import pytest

from kade.deployments.assess import assess
from kade.model import Deployment, NodeControl
from kade.scheduler.plan import Stop
from kade.scheduler.rollout import is_healthy
from kade.scheduler.sim import Simulation, app_spec, node
from kade.spec import AppSpec, SpecError, parse_app, spec_hash

T0 = 70_000.0
CHECKED = {"healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}


def exporter(**fields: object) -> AppSpec:
    return app_spec("/node-exporter", type="system", portDefinitions=[{"port": 9100}],
                    requirePorts=True, **{**CHECKED, **fields})


def cluster(*apps: AppSpec) -> Simulation:
    sim = Simulation()
    for name, zone in (("n1", "1a"), ("n2", "1b"), ("n3", "1c")):
        sim.add_node(node(name, attributes={"az": zone}))
    for a in apps:
        sim.add_app(a)
    return sim


def where(sim: Simulation, app_id: str) -> Counter[str]:
    return Counter(t.node for t in sim.active(app_id))


def healthy_all(sim: Simulation, now: float) -> None:
    for t in sim.active("/node-exporter"):
        sim.report(t.id, "running", now, health="healthy")


def test_one_task_on_every_node_and_on_every_node_that_joins() -> None:
    sim = cluster(exporter())
    p = sim.step(T0)
    assert [(launch.node, launch.host_ports) for launch in p.launches] == [
        ("n1", (9100,)), ("n2", (9100,)), ("n3", (9100,))]
    assert sim.plan(T0).empty
    sim.add_node(node("n4"))
    assert [launch.node for launch in sim.step(T0 + 1).launches] == ["n4"]
    assert where(sim, "/node-exporter") == Counter({"n1": 1, "n2": 1, "n3": 1, "n4": 1})


def test_instances_is_not_used_and_zero_suspends() -> None:
    sim = cluster(exporter(instances=1))
    sim.step(T0)
    assert len(sim.active("/node-exporter")) == 3
    sim.add_app(sim.apps["/node-exporter"].model_copy(update={"instances": 7, "version": "v2"}))
    assert sim.step(T0 + 1).launches == ()  # e.g. a scale request: every node has its task
    sim.add_app(sim.apps["/node-exporter"].model_copy(update={"instances": 0, "version": "v3"}))
    p = sim.step(T0 + 2)
    assert len(p.stops) == 3 and {s.reason for s in p.stops} == {"scaled down"}


def test_a_node_that_leaves_loses_its_task_and_an_ineligible_one_keeps_it() -> None:
    sim = cluster(exporter())
    sim.step(T0)
    on = {t.node: t.id for t in sim.active("/node-exporter")}
    sim.control(NodeControl(name="n2", eligible=False))
    assert sim.step(T0 + 1).empty
    sim.remove_node("n3")
    p = sim.step(T0 + 2)
    assert p.stops == (Stop(on["n3"], "node n3 left the cluster"),)
    assert sim.step(T0 + 3).forgets == (on["n3"],)  # nobody will report it: forgotten
    sim.add_node(node("n3", attributes={"az": "1c"}))
    sim.remove_node("n2")
    sim.add_node(node("n2", attributes={"az": "1b"}))  # the node is back, still ineligible
    assert [launch.node for launch in sim.step(T0 + 4).launches] == ["n3"]
    sim.control(NodeControl(name="n2", eligible=True))
    assert sim.step(T0 + 5).launches == ()  # its task kept running all along


def test_constraints_select_the_nodes_and_a_node_that_stops_matching_loses_its_task() -> None:
    sim = cluster(exporter(constraints=[["az", "LIKE", "1[ab]"]]))
    sim.step(T0)
    assert where(sim, "/node-exporter") == Counter({"n1": 1, "n2": 1})
    (on_n2,) = [t.id for t in sim.active("/node-exporter") if t.node == "n2"]
    sim.add_node(node("n2", attributes={"az": "1c"}))
    p = sim.step(T0 + 1)
    assert p.stops == (Stop(on_n2, "node n2 does not match: az=1c (az LIKE 1[ab])"),)
    sim.add_node(node("n4", attributes={"az": "1b"}))
    assert [launch.node for launch in sim.step(T0 + 2).launches] == ["n4"]


def test_a_node_that_does_not_fit_is_named_in_the_waiting_reason() -> None:
    sim = cluster(exporter())
    sim.add_node(node("n3", attributes={"az": "1c"}, ports_in_use=[9100]))
    p = sim.step(T0)
    assert [launch.node for launch in p.launches] == ["n1", "n2"]
    entry = p.queue["/node-exporter"]
    assert entry is not None
    assert entry.waiting == (
        "not running on every node: n3: host port 9100 is held by another process")
    assert sim.plan(T0).empty
    sim.add_node(node("n3", attributes={"az": "1c"}))
    p = sim.step(T0 + 1)
    assert [launch.node for launch in p.launches] == ["n3"] and p.queue == {"/node-exporter": None}


def test_a_new_version_rolls_one_node_at_a_time() -> None:
    sim = cluster(exporter())
    sim.step(T0)
    healthy_all(sim, T0)
    v2 = sim.add_app(exporter(cmd="sleep 2").model_copy(update={"version": "v2"}))
    now = T0
    order = []
    for _ in range(20):
        now += 1
        p = sim.step(now)
        stopped = [sim.tasks[s.task_id].node for s in p.stops]
        assert len(stopped) <= 1
        order += stopped
        active = sim.active("/node-exporter")
        assert len(active) >= 2  # never more than one node without its task
        assert all(n == 1 for n in where(sim, "/node-exporter").values())
        for t in sim.tasks.values():
            if t.desired == "stop":
                sim.report(t.id, "killed", now)
        healthy_all(sim, now)
        if all(t.spec_hash == spec_hash(v2) for t in active) and len(active) == 3:
            break
    else:
        pytest.fail("the update did not finish")
    assert order == ["n1", "n2", "n3"]
    assert all(is_healthy(v2, sim.statuses.get(t.id)) for t in sim.active("/node-exporter"))


def test_a_failed_system_task_is_relaunched_on_its_node_after_the_backoff() -> None:
    sim = cluster(exporter(backoffSeconds=5))
    sim.step(T0)
    (on_n2,) = [t for t in sim.active("/node-exporter") if t.node == "n2"]
    sim.report(on_n2.id, "failed", T0 + 1, exit_code=1)
    p = sim.step(T0 + 1)
    assert p.launches == () and p.wake_at == T0 + 6
    assert [launch.node for launch in sim.step(T0 + 6).launches] == ["n2"]


def test_the_type_is_validated_and_does_not_change_the_hash_of_services() -> None:
    service = parse_app({"id": "/web", "cmd": "sleep 1"}).app
    assert "type" not in service.wire()
    assert spec_hash(service) == spec_hash(parse_app({"id": "/web", "cmd": "sleep 1",
                                                      "type": "service"}).app)
    system = parse_app({"id": "/x", "cmd": "sleep 1", "type": "system"}).app
    assert system.wire()["type"] == "system"
    with pytest.raises(SpecError) as refused:
        parse_app({"id": "/x", "cmd": "sleep 1", "type": "system", "instances": 3})
    assert refused.value.problems == [
        "instances: 3 does not apply to a system app: it runs one task on every eligible node "
        "that matches its constraints (leave instances out, or 0 to suspend it)"]
    with pytest.raises(SpecError) as bad:
        parse_app({"id": "/x", "cmd": "sleep 1", "type": "daemon"})
    assert bad.value.problems == ["type: must be one of 'service' or 'system'"]


def test_a_deployment_of_a_system_app_succeeds_when_every_node_runs_it_healthy() -> None:
    sim = cluster(exporter())
    sim.step(T0)
    app = sim.apps["/node-exporter"]
    dep = Deployment(id="d1", app_id=app.id, kind="deploy", version=app.version,
                     from_version=None, started_at=T0, deadline=T0 + 300)
    judged = assess(dep, app, sim.tasks.values(), sim.statuses, T0 + 1)
    assert (judged.status, judged.instances, judged.healthy) == ("running", 3, 0)
    healthy_all(sim, T0 + 2)
    judged = assess(dep, app, sim.tasks.values(), sim.statuses, T0 + 2)
    assert (judged.status, judged.instances, judged.healthy) == ("succeeded", 3, 3)
