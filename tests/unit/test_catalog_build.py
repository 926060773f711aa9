"""build_catalog: which tasks are listed, under which names, with which tags and status."""

from __future__ import annotations

from typing import Any

from kade.catalog import (
    build_catalog,
    check_app,
    check_service_name,
    default_service_name,
)
from kade.model import HealthResult, Node, Task, TaskStatus
from kade.spec import AppSpec, parse_app

HEALTH = [{"protocol": "HTTP", "path": "/health"}]


def app(app_id: str = "/shop/web", **fields: Any) -> AppSpec:
    data: dict[str, Any] = {"id": app_id, "cmd": "sleep 1000"}
    data.update(fields)
    return parse_app(data).app


def task(task_id: str, app_id: str = "/shop/web", *, ports: list[int] | None = None,
         node: str = "n1", host: str = "10.0.0.1", desired: str = "run") -> Task:
    return Task(id=task_id, app_id=app_id, version="v1", spec_hash="h", node=node, host=host,
                host_ports=[31000] if ports is None else ports, desired=desired,  # type: ignore[arg-type]
                created_at=0.0)


def status(task_id: str, state: str = "running", health: str = "unknown",
           app_id: str = "/shop/web", results: list[HealthResult] | None = None) -> TaskStatus:
    return TaskStatus(task_id=task_id, app_id=app_id, node="n1", state=state,  # type: ignore[arg-type]
                      health=health, health_results=results or [], updated_at=0.0)  # type: ignore[arg-type]


NODES = [Node(name="n1", address="10.0.0.1", cpus=2, mem=1024, attributes={"zone": "1a"})]


def test_service_name_is_the_app_id_reversed() -> None:
    assert default_service_name("/shop/web") == "web-shop"
    assert default_service_name("/web") == "web"
    assert default_service_name("/a/b/api.v2") == "api-v2-b-a"
    cat = build_catalog([app()], [task("t1")], [status("t1")], NODES)
    assert list(cat.services) == ["web-shop"]
    (inst,) = cat.services["web-shop"]
    assert (inst.address, inst.port, inst.node, inst.id) == ("10.0.0.1", 31000, "n1", "t1:0")
    assert inst.passing


def test_label_overrides_the_name_and_invalid_labels_are_reported_not_used() -> None:
    good = app(labels={"kade.service.name": "shop"})
    assert list(build_catalog([good], [task("t1")], [status("t1")], NODES).services) == ["shop"]
    bad = app(labels={"kade.service.name": "Shop_Web"})
    cat = build_catalog([bad], [task("t1")], [status("t1")], NODES)
    assert list(cat.services) == ["web-shop"]
    assert "kade.service.name" in cat.problems[0]
    assert check_app(bad) == [f"labels.kade.service.name: {check_service_name('Shop_Web')}"]
    assert check_app(good) == []


def test_only_running_and_healthy_tasks_pass_when_the_app_has_health_checks() -> None:
    a = app(healthChecks=HEALTH)
    tasks = [task(f"t{i}", ports=[31000 + i]) for i in range(5)]
    statuses = [
        status("t0", "running", "healthy"),
        status("t1", "running", "unhealthy",
               results=[HealthResult(index=0, alive=False, last_failure_cause="HTTP 500")]),
        status("t2", "starting"),
        status("t3", "staging"),
        status("t4", "failed"),
    ]
    cat = build_catalog([a], tasks, statuses, NODES)
    listed = {i.task_id: i for i in cat.instances("web-shop")}
    assert sorted(listed) == ["t0", "t1", "t2"]  # staging and failed tasks are not listed
    assert [i.task_id for i in cat.instances("web-shop", passing=True)] == ["t0"]
    assert listed["t1"].status == "critical"
    health_check = listed["t1"].checks[1]
    assert (health_check.name, health_check.status, health_check.output) == (
        "HTTP /health", "critical", "HTTP 500")
    assert listed["t2"].checks[0].output == "task is starting"


def test_without_health_checks_a_running_task_passes_and_a_starting_one_does_not() -> None:
    cat = build_catalog([app()], [task("t1"), task("t2", ports=[31001])],
                        [status("t1", "running"), status("t2", "starting")], NODES)
    assert [i.task_id for i in cat.instances("web-shop", passing=True)] == ["t1"]


def test_a_task_being_stopped_leaves_discovery_at_once() -> None:
    cat = build_catalog([app()], [task("t1", desired="stop")], [status("t1", "running")], NODES)
    assert cat.services == {}


def test_tasks_without_app_or_status_are_not_listed() -> None:
    cat = build_catalog([app("/other")], [task("t1"), task("t2", "/other")],
                        [status("t1")], NODES)
    assert cat.services == {}


def test_tags_from_labels_named_ports_and_traefik_labels() -> None:
    a = app(
        labels={"kade.service.tags": "v1, primary", "traefik.http.routers.web.rule": "Host(`a`)"},
        portDefinitions=[
            {"name": "http"},
            {"name": "admin", "labels": {"kade.service.tags": "internal"}},
        ],
    )
    cat = build_catalog([a], [task("t1", ports=[31000, 31001])], [status("t1")], NODES)
    first, second = cat.services["web-shop"]
    assert first.tags == ("v1", "primary", "traefik.http.routers.web.rule=Host(`a`)", "http")
    assert second.tags == ("v1", "primary", "traefik.http.routers.web.rule=Host(`a`)", "admin",
                           "internal")
    assert (first.id, first.port, second.id, second.port) == ("t1:0", 31000, "t1:1", 31001)
    assert [i.port for i in cat.instances("web-shop", tags=["ADMIN"])] == [31001]
    assert dict(second.meta)["port_name"] == "admin"
    assert cat.service_tags("web-shop") == [
        "admin", "http", "internal", "primary", "traefik.http.routers.web.rule=Host(`a`)", "v1"]


def test_a_port_label_moves_a_port_to_its_own_service() -> None:
    a = app(portDefinitions=[{"name": "http"},
                             {"name": "metrics", "labels": {"kade.service.name": "web-metrics"}}])
    cat = build_catalog([a], [task("t1", ports=[31000, 31001])], [status("t1")], NODES)
    assert {n: [i.port for i in v] for n, v in cat.services.items()} == {
        "web-metrics": [31001], "web-shop": [31000]}


def test_a_task_without_ports_is_one_portless_instance() -> None:
    a = app(portDefinitions=[])
    cat = build_catalog([a], [task("t1", ports=[])], [status("t1")], NODES)
    (inst,) = cat.services["web-shop"]
    assert (inst.id, inst.port, inst.port_index) == ("t1", 0, None)


def test_two_apps_can_share_a_service_name() -> None:
    blue = app("/web-blue", labels={"kade.service.name": "web"})
    green = app("/web-green", labels={"kade.service.name": "web"})
    cat = build_catalog([blue, green], [task("b1", "/web-blue"), task("g1", "/web-green")],
                        [status("b1", app_id="/web-blue"), status("g1", app_id="/web-green")],
                        NODES)
    assert [i.app_id for i in cat.services["web"]] == ["/web-blue", "/web-green"]


def test_nodes_are_listed_and_a_task_on_an_unknown_node_adds_it() -> None:
    cat = build_catalog([app()], [task("t1", node="n2", host="10.0.0.2")], [status("t1")], NODES)
    assert {n.name: n.address for n in cat.nodes.values()} == {"n1": "10.0.0.1", "n2": "10.0.0.2"}
    assert dict(cat.nodes["n1"].meta) == {"zone": "1a"}
    assert [i.task_id for i in cat.node_instances("n2")] == ["t1"]


def test_lookups_ignore_case() -> None:
    cat = build_catalog([app()], [task("t1")], [status("t1")], NODES)
    assert cat.find_service("WEB-Shop") == "web-shop"
    assert cat.find_node("N1") is not None
    assert cat.find_service("nope") is None


def test_same_input_same_catalog() -> None:
    args = ([app(healthChecks=HEALTH)], [task("t1"), task("t2", ports=[31001])],
            [status("t1", health="healthy"), status("t2")], NODES)
    assert build_catalog(*args) == build_catalog(*args)


def test_tasks_on_a_node_that_is_down_get_no_traffic() -> None:
    from kade import model
    from kade.catalog.index import CatalogIndex

    lively = [n.model_copy(update={"liveness_ttl": 10}) for n in NODES]
    up = build_catalog([app()], [task("t1")], [status("t1")], lively, alive={"n1"})
    assert [i.passing for i in up.services["web-shop"]] == [True]
    down = build_catalog([app()], [task("t1")], [status("t1")], lively, alive=set())
    inst = down.services["web-shop"][0]
    assert not inst.passing
    assert "node n1 is down" in inst.checks[0].output
    # kept incrementally, the same: the liveness key going is what turns it
    index = CatalogIndex()
    index.set(model.app_key("/shop/web"), app())
    index.set(model.node_key("n1"), lively[0])
    index.set(model.alive_key("n1"), model.Alive(node="n1", since=0))
    index.set(model.task_key("t1"), task("t1"))
    index.set(model.status_key("t1"), status("t1"))
    assert index.catalog().services == up.services
    index.set(model.alive_key("n1"), None)
    assert index.catalog().services == down.services
