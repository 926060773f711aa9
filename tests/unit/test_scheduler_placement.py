"""Placement with plain values: resources, host ports, spreading and constraints."""

from __future__ import annotations

from collections import Counter

import pytest

from kade import model
from kade.deployments import intent
from kade.model import Node, QueueEntry, driver_for
from kade.scheduler.constraints import Constraint, check
from kade.scheduler.placement import unrunnable
from kade.scheduler.sim import Simulation, app_spec, node
from kade.spec import AppSpec, SpecError
from kade.store import SqliteStore

T0 = 5_000.0


def sim_of(*nodes: Node, apps: tuple[AppSpec, ...] = ()) -> Simulation:
    sim = Simulation()
    for n in nodes:
        sim.add_node(n)
    for a in apps:
        sim.add_app(a)
    return sim


def waiting(sim: Simulation, app_id: str, now: float = T0) -> str:
    entry = sim.plan(now).queue.get(app_id) or sim.queue.get(app_id)
    assert entry is not None
    return entry.waiting


def placed(sim: Simulation, app_id: str) -> Counter[str]:
    return Counter(t.node for t in sim.active(app_id))


# -- resources --------------------------------------------------------------------------------

def test_no_node_fits_names_each_node_and_why() -> None:
    sim = sim_of(
        node("node-a", cpus=0.3),
        node("node-b", cpus=4),
        apps=(app_spec("/big", cpus=1.0, portDefinitions=[{"port": 8080}], requirePorts=True),
              app_spec("/other", cpus=1.0, portDefinitions=[{"port": 8080}],
                       requirePorts=True)),
    )
    p = sim.step(T0)
    assert [(launch.app_id, launch.node) for launch in p.launches] == [("/big", "node-b")]
    assert p.queue == {"/other": QueueEntry(
        app_id="/other",
        waiting="no node fits: node-a: needs 1.0 cpus, 0.3 free; node-b: host port 8080 in use",
    )}
    assert sim.plan(T0).empty  # the reason is stable once written


def test_memory_and_float_sums() -> None:
    sim = sim_of(node("n", cpus=0.3, mem=200), apps=(app_spec("/w", instances=4, cpus=0.1,
                                                                mem=50),))
    p = sim.step(T0)
    assert len(p.launches) == 3  # 0.1 + 0.1 + 0.1 fits in 0.3 despite float rounding
    assert waiting(sim, "/w") == "no node fits: n: needs 0.1 cpus, 0.0 free"
    sim2 = sim_of(node("n", cpus=8, mem=100), apps=(app_spec("/w", instances=3, mem=40),))
    sim2.step(T0)
    assert waiting(sim2, "/w") == "no node fits: n: needs 40 MiB mem, 20 free"


def test_partial_placement_then_stable_reason_after_later_apps_took_resources() -> None:
    # /a cannot place its second task; /b (after /a) still fits in what remains. The reason
    # written for /a describes the node as it is once /b is placed, so the next plan is empty.
    sim = sim_of(node("n", cpus=1.0),
                 apps=(app_spec("/a", instances=2, cpus=0.6), app_spec("/b", cpus=0.3)))
    p = sim.step(T0)
    assert [launch.app_id for launch in p.launches] == ["/a", "/b"]
    assert waiting(sim, "/a") == "no node fits: n: needs 0.6 cpus, 0.1 free"
    assert sim.plan(T0).empty


def test_stopping_tasks_keep_their_resources_until_they_ended() -> None:
    app = app_spec("/w", cpus=1.0, portDefinitions=[{"port": 9000}], requirePorts=True)
    sim = sim_of(node("n", cpus=1.0), apps=(app,))
    sim.step(T0)
    (task,) = sim.active("/w")
    sim.tasks[task.id] = task.model_copy(update={"desired": "stop"})
    p = sim.step(T0 + 1)
    assert p.launches == ()
    assert waiting(sim, "/w") == "no node fits: n: needs 1.0 cpus, 0.0 free"
    sim.report(task.id, "killed", T0 + 2)
    p = sim.step(T0 + 2)
    assert p.forgets == (task.id,)
    assert [launch.host_ports for launch in p.launches] == [(9000,)]
    assert p.queue == {"/w": None}


# -- ports ------------------------------------------------------------------------------------

def test_assigned_ports_are_the_lowest_free_never_reused_in_a_plan() -> None:
    sim = sim_of(node("n"), apps=(
        app_spec("/a", instances=2, portDefinitions=[{"port": 0}, {"port": 0}]),
        app_spec("/b", instances=1, backoffSeconds=0),
    ))
    sim.port_range = (31000, 31010)
    p = sim.step(T0)
    assert [(launch.app_id, launch.host_ports) for launch in p.launches] == [
        ("/a", (31000, 31001)), ("/a", (31002, 31003)), ("/b", (31004,))]
    (b,) = sim.active("/b")
    sim.report(b.id, "failed", T0 + 1)  # its port is free again once it ended
    sim.add_app(app_spec("/c", instances=1))
    p = sim.step(T0 + 1)
    assert [(launch.app_id, launch.host_ports) for launch in p.launches] == [
        ("/b", (31004,)), ("/c", (31005,))]


def test_fixed_port_taken_by_assigned_port_is_refused() -> None:
    sim = sim_of(node("n"), apps=(
        app_spec("/a", instances=1, portDefinitions=[{"port": 0}, {"port": 0}]),
        app_spec("/b", instances=1, portDefinitions=[{"port": 31001}], requirePorts=True),
    ))
    sim.port_range = (31000, 31010)
    p = sim.step(T0)
    assert [(launch.app_id, launch.host_ports) for launch in p.launches] == [
        ("/a", (31000, 31001))]
    assert waiting(sim, "/b") == "no node fits: n: host port 31001 in use"


def test_assigned_ports_skip_fixed_and_used_ports_and_run_out() -> None:
    sim = sim_of(node("n"), apps=(
        app_spec("/fixed", portDefinitions=[{"port": 31002}], requirePorts=True),
        app_spec("/two", instances=3, portDefinitions=[{"port": 0}, {"port": 0}]),
    ))
    sim.port_range = (31000, 31004)
    p = sim.step(T0)
    assert [(launch.app_id, launch.host_ports) for launch in p.launches] == [
        ("/fixed", (31002,)), ("/two", (31000, 31001)), ("/two", (31003, 31004))]
    assert waiting(sim, "/two") == "no node fits: n: no free host port in 31000-31004"


def test_bridge_apps_get_host_ports_and_none_network_needs_none() -> None:
    bridge = app_spec("/br", instances=2, container={
        "docker": {"image": "kade/site:1"},
        "portMappings": [{"containerPort": 8080}, {"containerPort": 9000, "hostPort": 19000}],
    }, networks=[{"mode": "container/bridge"}])
    quiet = app_spec("/none", instances=2, container={"docker": {"image": "kade/site:1"}},
                     networks=[{"mode": "container", "name": "x"}])
    sim = sim_of(node("a"), node("b"), apps=(bridge, quiet))
    p = sim.step(T0)
    assert sorted((launch.node, launch.host_ports) for launch in p.launches
                  if launch.app_id == "/br") == [("a", (31000, 19000)), ("b", (31000, 19000))]
    assert [launch.host_ports for launch in p.launches if launch.app_id == "/none"] == [(), ()]


# -- spreading ----------------------------------------------------------------------------------

def test_spread_fewest_tasks_of_the_app_then_most_free_cpu_then_name() -> None:
    sim = sim_of(node("a", cpus=2), node("b", cpus=4), node("c", cpus=4),
                 apps=(app_spec("/w", instances=4, cpus=0.5),))
    p = sim.step(T0)
    # b and c tie on free cpu, b wins by name; then c; then a, the last without a task of the
    # app; then b again (one task each, b and c tie on free cpu).
    assert [launch.node for launch in p.launches] == ["b", "c", "a", "b"]


def test_other_apps_count_only_through_free_cpu() -> None:
    sim = sim_of(node("a", cpus=4), node("b", cpus=4),
                 apps=(app_spec("/big", cpus=3, instances=1),))
    sim.step(T0)
    sim.add_app(app_spec("/small", cpus=0.5, instances=2))
    p = sim.step(T0)
    assert sorted(launch.node for launch in p.launches) == ["a", "b"]
    assert placed(sim, "/big") == Counter({"a": 1})


# -- constraints -------------------------------------------------------------------------------

def zones() -> tuple[Node, ...]:
    return (
        node("n1", attributes={"zone": "1a", "rack": "r1"}),
        node("n2", attributes={"zone": "1a", "rack": "r2"}),
        node("n3", attributes={"zone": "1b", "rack": "r3"}),
        node("n4", attributes={"zone": "1c"}),
    )


def test_unique_hostname() -> None:
    sim = sim_of(*zones(), apps=(app_spec("/u", instances=5,
                                          constraints=[["hostname", "UNIQUE"]]),))
    sim.step(T0)
    assert placed(sim, "/u") == Counter({"n1": 1, "n2": 1, "n3": 1, "n4": 1})
    assert waiting(sim, "/u") == (
        "no node fits: n1: hostname=n1 already runs a task of the app (hostname UNIQUE); "
        "n2: hostname=n2 already runs a task of the app (hostname UNIQUE); "
        "n3: hostname=n3 already runs a task of the app (hostname UNIQUE); "
        "n4: hostname=n4 already runs a task of the app (hostname UNIQUE)")


def test_cluster_and_is_pin_to_a_value() -> None:
    sim = sim_of(*zones(), apps=(
        app_spec("/c", instances=3, constraints=[["zone", "CLUSTER", "1a"]]),
        app_spec("/i", instances=2, constraints=[["hostname", "IS", "n3"]]),
    ))
    sim.step(T0)
    assert placed(sim, "/c") == Counter({"n1": 2, "n2": 1})
    assert placed(sim, "/i") == Counter({"n3": 2})


def test_group_by_spreads_evenly_over_values() -> None:
    sim = sim_of(*zones(), apps=(app_spec("/g", instances=6,
                                          constraints=[["zone", "GROUP_BY", "3"]]),))
    sim.step(T0)
    by_zone = Counter(sim.nodes[t.node].attributes["zone"] for t in sim.active("/g"))
    assert by_zone == Counter({"1a": 2, "1b": 2, "1c": 2})


def test_group_by_waits_rather_than_unbalance() -> None:
    full = node("n3", cpus=0.1, attributes={"zone": "1b"})
    sim = sim_of(node("n1", attributes={"zone": "1a"}), full,
                 apps=(app_spec("/g", instances=2, cpus=0.5,
                                constraints=[["zone", "GROUP_BY", "2"]]),))
    sim.step(T0)
    assert placed(sim, "/g") == Counter({"n1": 1})
    assert waiting(sim, "/g") == (
        "no node fits: n1: zone=1a has 1 tasks, more than another group (zone GROUP_BY 2); "
        "n3: needs 0.5 cpus, 0.1 free")


def test_like_unlike_are_full_matches_and_missing_attributes() -> None:
    sim = sim_of(*zones(), apps=(
        app_spec("/like", instances=4, constraints=[["rack", "LIKE", "r[12]"]]),
        app_spec("/unlike", instances=4, constraints=[["rack", "UNLIKE", "r"]]),
    ))
    sim.step(T0)
    assert set(placed(sim, "/like")) == {"n1", "n2"}
    assert set(placed(sim, "/unlike")) == {"n1", "n2", "n3", "n4"}  # "r" matches no rack fully


def test_max_per() -> None:
    sim = sim_of(*zones(), apps=(app_spec("/m", instances=8,
                                          constraints=[["zone", "MAX_PER", "2"]]),))
    sim.step(T0)
    by_zone = Counter(sim.nodes[t.node].attributes["zone"] for t in sim.active("/m"))
    assert by_zone == Counter({"1a": 2, "1b": 2, "1c": 2})
    assert "zone=1a has 2 tasks already (zone MAX_PER 2)" in waiting(sim, "/m")


def test_constraint_check_directly() -> None:
    n = node("x", attributes={"zone": "1a"})
    assert check(Constraint("rack", "UNLIKE", "r1"), n, {}) is None
    missing = check(Constraint("rack", "LIKE", "r1"), n, {})
    assert missing == "has no attribute 'rack' (rack LIKE r1)"
    assert check(Constraint("@hostname", "LIKE", "x|y"), n, {}) is None
    assert check(Constraint("zone", "GROUP_BY", None), n, {"1a": 1, "1b": 1}) is None
    assert check(Constraint("zone", "GROUP_BY", None), n, {"1a": 2, "1b": 1}) is not None
    assert check(Constraint("zone", "UNIQUE", None), n, {"1b": 1}) is None


# -- drivers: the kind of task a node runs ----------------------------------------------------

def _image_app(app_id: str, **fields: object) -> AppSpec:
    return app_spec(app_id, container={"docker": {"image": "busybox"}}, **fields)


def test_each_app_goes_to_a_node_that_runs_its_kind_of_task() -> None:
    sim = sim_of(
        node("docker-only", drivers=["docker"]),
        node("exec-only", drivers=["exec"]),
        apps=(app_spec("/cmd", instances=2), _image_app("/img", instances=2)),
    )
    sim.step(T0)
    assert placed(sim, "/cmd") == Counter({"exec-only": 2})
    assert placed(sim, "/img") == Counter({"docker-only": 2})


def test_a_node_with_both_drivers_runs_both_and_an_untold_node_runs_anything() -> None:
    sim = sim_of(node("both", drivers=["docker", "exec"]),
                 apps=(app_spec("/cmd"), _image_app("/img")))
    sim.step(T0)
    assert placed(sim, "/cmd") == Counter({"both": 1})
    assert placed(sim, "/img") == Counter({"both": 1})
    old = sim_of(node("older-agent"), apps=(app_spec("/cmd"), _image_app("/img")))
    old.step(T0)
    assert placed(old, "/cmd") == placed(old, "/img") == Counter({"older-agent": 1})


def test_no_node_runs_command_apps_is_the_reason_given() -> None:
    sim = sim_of(node("n1", drivers=["docker"]), node("n2", drivers=["docker"]),
                 apps=(app_spec("/cmd"),))
    assert sim.step(T0).launches == ()
    assert waiting(sim, "/cmd") == "no node runs command apps (n1 runs docker; n2 runs docker)"


def test_a_node_without_the_driver_is_named_among_the_others() -> None:
    sim = sim_of(node("big", cpus=0.05, drivers=["exec"]), node("small", drivers=["docker"]),
                 apps=(app_spec("/cmd", cpus=1.0),))
    sim.step(T0)
    assert waiting(sim, "/cmd") == (
        "no node fits: big: needs 1.0 cpus, 0.05 free; "
        "small: runs no command apps (drivers: docker)")


def test_unrunnable_refuses_only_what_no_registered_node_runs() -> None:
    docker = node("n1", drivers=["docker"])
    assert unrunnable("exec", [docker]) == "no node runs command apps (n1 runs docker)"
    assert unrunnable("docker", [docker]) is None
    assert unrunnable("exec", [docker, node("n2", drivers=["exec"], draining=True)]) is None
    assert unrunnable("exec", []) is None  # nothing registered yet: nothing to judge by
    assert unrunnable("docker", [node("n3", drivers=["exec"])]) == (
        "no node runs apps with an image (n3 runs exec)")


def test_driver_for_reads_the_apps_shape() -> None:
    assert driver_for(app_spec("/cmd")) == "exec"
    assert driver_for(_image_app("/img")) == "docker"
    assert driver_for(_image_app("/img-cmd", cmd="sleep 1")) == "docker"


# -- ports held by other processes ------------------------------------------------------------

def test_ports_held_by_other_processes_are_never_assigned() -> None:
    sim = sim_of(node("n", ports_in_use=[31000, 31002]),
                 apps=(app_spec("/a", instances=2),))
    sim.port_range = (31000, 31010)
    p = sim.step(T0)
    assert sorted(launch.host_ports for launch in p.launches) == [(31001,), (31003,)]


def test_a_fixed_port_held_by_another_process_says_so() -> None:
    sim = sim_of(node("n", ports_in_use=[8080]),
                 apps=(app_spec("/fixed", portDefinitions=[{"port": 8080}], requirePorts=True),))
    assert sim.step(T0).launches == ()
    assert waiting(sim, "/fixed") == "no node fits: n: host port 8080 is held by another process"


def test_a_freed_port_is_assigned_again() -> None:
    sim = sim_of(node("n", ports_in_use=[31000]), apps=(app_spec("/a"),))
    sim.port_range = (31000, 31010)
    assert [launch.host_ports for launch in sim.step(T0).launches] == [(31001,)]
    sim.add_node(node("n"))  # the agent saw it free again
    sim.add_app(app_spec("/b"))
    assert [launch.host_ports for launch in sim.step(T0).launches] == [(31000,)]


async def test_a_deploy_no_node_can_run_is_refused_with_the_reason(store: SqliteStore) -> None:
    await store.put(model.node_key("n1"), node("n1", drivers=["docker"]).dump())
    with pytest.raises(SpecError) as refused:
        await intent.put_app(store, app_spec("/cmd"), T0)
    assert refused.value.problems == ["cmd: no node runs command apps (n1 runs docker)"]
    assert await store.get(model.app_key("/cmd")) is None  # nothing written
    stored, _ = await intent.put_app(store, _image_app("/img"), T0)
    assert stored.version is not None


def test_each_node_gives_host_ports_from_its_own_range() -> None:
    """Agents sharing a machine (`kade agent --ports`): their tasks never get the same port."""
    a = node("node-a").model_copy(update={"port_range": [20000, 20001]})
    b = node("node-b").model_copy(update={"port_range": [21000, 21009]})
    sim = sim_of(a, b, apps=(app_spec("/web", instances=4,
                                      constraints=[["hostname", "MAX_PER", "2"]]),))
    sim.step(T0)
    ports = {t.node: sorted(p for p in t.host_ports) for t in sim.active("/web")}
    got = sorted((t.node, t.host_ports[0]) for t in sim.active("/web"))
    assert got == [("node-a", 20000), ("node-a", 20001), ("node-b", 21000), ("node-b", 21001)]
    assert ports  # and the third task on node-a would find no port:
    sim.add_app(app_spec("/more", instances=1, constraints=[["hostname", "CLUSTER", "node-a"]]))
    assert "no free host port in 20000-20001" in waiting(sim, "/more", T0 + 1)
