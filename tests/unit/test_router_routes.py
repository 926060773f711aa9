"""Building the routing table from apps: first-class routes, Traefik labels, reported errors."""

from __future__ import annotations

from typing import Any

import pytest

from kade.catalog.build import default_service_name
from kade.router.routes import Backend, RouteError, build_table
from kade.spec import AppSpec, SpecError, parse_app

TWO_TASKS = [Backend("shop_web.a", "127.0.0.1", [31001]),
             Backend("shop_web.b", "10.0.0.2", [31002])]


def app(data: dict[str, Any]) -> AppSpec:
    base = {"container": {"docker": {"image": "kade/site:1"}}}
    return parse_app({**base, **data}).app


def bridge_app(app_id: str, labels: dict[str, str], ports: list[int]) -> AppSpec:
    return app({
        "id": app_id,
        "networks": [{"mode": "container/bridge"}],
        "container": {"docker": {"image": "kade/site:1"},
                      "portMappings": [{"containerPort": p} for p in ports]},
        "labels": labels,
    })


def test_default_service_name_reads_like_a_host_name() -> None:
    assert default_service_name("/shop/web") == "web-shop"
    assert default_service_name("/a/b/c") == "c-b-a"
    assert default_service_name("/web") == "web"


def test_first_class_route_with_healthy_backends() -> None:
    apps = {"/shop/web": app({"id": "/shop/web", "routes": [{"rule": "Host(`www.localhost`)"}]})}
    table, errors = build_table(apps, {"/shop/web": TWO_TASKS}, 42)
    assert errors == []
    assert table == {
        "revision": 42,
        "routers": [{"name": "web-shop", "rule": "Host(`www.localhost`)", "priority": 0,
                     "service": "web-shop", "app": "/shop/web"}],
        "services": {"web-shop": {"strategy": "round-robin", "servers": [
            {"url": "http://127.0.0.1:31001", "task": "shop_web.a"},
            {"url": "http://10.0.0.2:31002", "task": "shop_web.b"},
        ]}},
    }


def test_no_healthy_backend_keeps_the_route_with_no_server() -> None:
    apps = {"/web": app({"id": "/web", "routes": [{"rule": "Host(`a`)"}]})}
    table, errors = build_table(apps, {}, 1)
    assert errors == []
    assert table["services"]["web"]["servers"] == []


def test_several_routes_and_a_second_port() -> None:
    apps = {"/shop/web": app({
        "id": "/shop/web",
        "portDefinitions": [{"port": 0}, {"port": 0}],
        "routes": [
            {"rule": "Host(`www.localhost`)"},
            {"rule": "Host(`admin.localhost`)", "portIndex": 1, "priority": 100},
            {"rule": "Host(`api.localhost`)", "name": "shop-api"},
        ],
    })}
    backends = {"/shop/web": [Backend("t1", "127.0.0.1", [31001, 31002])]}
    table, errors = build_table(apps, backends, 7)
    assert errors == []
    assert [(r["name"], r["service"], r["priority"]) for r in table["routers"]] == [
        ("web-shop", "web-shop", 0),
        ("web-shop-1", "web-shop-port1", 100),
        ("shop-api", "web-shop", 0),
    ]
    assert table["services"]["web-shop-port1"]["servers"] == [
        {"url": "http://127.0.0.1:31002", "task": "t1"}]


def test_traefik_labels_map_the_container_port_to_the_host_port() -> None:
    labels = {
        "traefik.enable": "true",
        "traefik.http.routers.shop.rule": "Host(`shop.localhost`) && PathPrefix(`/api`)",
        "traefik.http.routers.shop.priority": "20",
        "traefik.http.routers.shop.entrypoints": "web",
        "traefik.http.services.shop-api.loadbalancer.server.port": "9090",
    }
    apps = {"/shop/api": bridge_app("/shop/api", labels, [8080, 9090])}
    backends = {"/shop/api": [Backend("t1", "127.0.0.1", [32001, 32002])]}
    table, errors = build_table(apps, backends, 3)
    assert errors == []
    assert table["routers"] == [{"name": "shop", "rule": labels["traefik.http.routers.shop.rule"],
                                 "priority": 20, "service": "shop-api", "app": "/shop/api"}]
    assert table["services"] == {"shop-api": {"strategy": "round-robin", "servers": [
        {"url": "http://127.0.0.1:32002", "task": "t1"}]}}


def test_label_router_without_service_labels_uses_the_default_service() -> None:
    labels = {"traefik.http.routers.web.rule": "Host(`a`)",
              "kade.http.services.web.loadbalancer.strategy": "least-conn"}
    apps = {"/web": app({"id": "/web", "labels": labels})}
    table, errors = build_table(apps, {"/web": TWO_TASKS[:1]}, 1)
    assert errors == []
    assert table["routers"][0]["service"] == "web"
    assert table["services"]["web"]["strategy"] == "least-conn"


def test_label_router_naming_a_service_and_port_index() -> None:
    labels = {
        "traefik.http.routers.a.rule": "Host(`a`)",
        "traefik.http.routers.a.service": "second",
        "traefik.http.routers.b.rule": "Host(`b`)",
        "traefik.http.routers.b.service": "first",
        "traefik.http.services.first.loadbalancer.server.port": "80",
        "kade.http.services.second.loadbalancer.server.portindex": "1",
        "traefik.http.services.second.loadbalancer.strategy": "p2c",
    }
    apps = {"/x": bridge_app("/x", labels, [80, 81])}
    table, errors = build_table(apps, {"/x": [Backend("t", "h", [1000, 1001])]}, 1)
    assert errors == []
    assert {r["name"]: r["service"] for r in table["routers"]} == {"a": "second", "b": "first"}
    assert table["services"]["second"] == {"strategy": "least-conn",
                                           "servers": [{"url": "http://h:1001", "task": "t"}]}
    assert table["services"]["first"]["servers"] == [{"url": "http://h:1000", "task": "t"}]


def test_traefik_enable_false_turns_label_routers_off() -> None:
    labels = {"traefik.enable": "false", "traefik.http.routers.x.rule": "Host(`x`)"}
    apps = {"/web": app({"id": "/web", "labels": labels, "routes": [{"rule": "Host(`y`)"}]})}
    table, errors = build_table(apps, {}, 1)
    assert errors == []
    assert [r["rule"] for r in table["routers"]] == ["Host(`y`)"]


def err(app_id: str, router: str, part: str, errors: list[RouteError]) -> None:
    assert any(e.app == app_id and e.router == router and part in e.message for e in errors), \
        errors


def test_bad_routes_are_reported_and_the_others_keep_serving() -> None:
    labels = {
        "traefik.http.routers.broken.rule": "Host(`a`) && Foo(`b`)",
        "traefik.http.routers.noprio.rule": "Host(`c`)",
        "traefik.http.routers.noprio.priority": "high",
        "traefik.http.routers.auth.rule": "Host(`d`)",
        "traefik.http.routers.auth.middlewares": "basic-auth@file",
        "traefik.http.routers.norule.service": "web",
        "traefik.http.routers.ghost.rule": "Host(`e`)",
        "traefik.http.routers.ghost.service": "nowhere",
        "traefik.http.routers.good.rule": "Host(`good`)",
    }
    apps = {"/web": app({"id": "/web", "labels": labels})}
    table, errors = build_table(apps, {"/web": TWO_TASKS}, 5)
    assert [r["name"] for r in table["routers"]] == ["good"]
    err("/web", "broken", "unknown matcher Foo at column 14", errors)
    err("/web", "noprio", "priority 'high' is not a whole number", errors)
    err("/web", "auth", "middlewares are not supported", errors)
    err("/web", "norule", "has no rule", errors)
    err("/web", "ghost", "unknown service 'nowhere'", errors)
    assert len(errors) == 5
    assert errors[0].to_dict().keys() == {"app", "router", "message"}


def test_names_are_global_the_first_app_keeps_them() -> None:
    apps = {
        "/a": app({"id": "/a", "routes": [{"rule": "Host(`a`)", "name": "www"}]}),
        "/b": app({"id": "/b", "routes": [{"rule": "Host(`b`)", "name": "www"}]}),
    }
    table, errors = build_table(apps, {}, 1)
    assert [(r["name"], r["app"]) for r in table["routers"]] == [("www", "/a")]
    err("/b", "www", "router name 'www' is already used by app /a", errors)


def test_service_name_used_by_another_app() -> None:
    labels = {"traefik.http.routers.b.rule": "Host(`b`)",
              "traefik.http.services.a.loadbalancer.server.port": "80"}
    apps = {"/a": app({"id": "/a", "routes": [{"rule": "Host(`a`)"}]}),
            "/b": bridge_app("/b", labels, [80])}
    _, errors = build_table(apps, {}, 1)
    err("/b", "b", "service name 'a' is already used by app /a", errors)


def test_port_problems() -> None:
    labels = {"traefik.http.routers.x.rule": "Host(`x`)",
              "traefik.http.services.x.loadbalancer.server.port": "7777"}
    apps = {
        "/x": bridge_app("/x", labels, [80]),
        "/y": app({"id": "/y", "routes": [{"rule": "Host(`y`)", "portIndex": 3}]}),
    }
    _, errors = build_table(apps, {}, 1)
    err("/x", "x", "port '7777' is not one of the app's ports", errors)
    err("/y", "y", "port index 3 is out of range: the app has 1 port(s)", errors)


def test_several_label_services_need_an_explicit_service() -> None:
    labels = {"traefik.http.routers.r.rule": "Host(`r`)",
              "traefik.http.services.one.loadbalancer.server.port": "80",
              "traefik.http.services.two.loadbalancer.server.port": "81"}
    _, errors = build_table({"/m": bridge_app("/m", labels, [80, 81])}, {}, 1)
    err("/m", "r", "several services are defined", errors)


def test_same_input_same_output() -> None:
    apps = {f"/app{i}": app({"id": f"/app{i}", "routes": [{"rule": f"Host(`h{i}`)"}]})
            for i in range(5)}
    first = build_table(apps, {"/app1": TWO_TASKS}, 9)
    second = build_table(dict(reversed(list(apps.items()))), {"/app1": TWO_TASKS}, 9)
    assert first == second


def test_ipv6_backend_url() -> None:
    apps = {"/v6": app({"id": "/v6", "routes": [{"rule": "Host(`a`)"}]})}
    table, _ = build_table(apps, {"/v6": [Backend("t", "::1", [8080])]}, 1)
    assert table["services"]["v6"]["servers"][0]["url"] == "http://[::1]:8080"


@pytest.mark.parametrize(("route", "message"), [
    ({"rule": "Host(`a`) && Foo(`b`)"}, "unknown matcher Foo at column 14"),
    ({"rule": ""}, "must not be empty"),
    ({"rule": "Host(`a`)", "name": "bad name"}, "name"),
    ({"rule": "Host(`a`)", "priority": -1}, "must be >= 0"),
])
def test_a_bad_route_is_an_error_of_the_app_definition(route: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_app({"id": "/web", "cmd": "true", "routes": [route]})
    assert any(p.startswith("routes.0.") and message in p for p in info.value.problems), \
        info.value.problems


def test_a_route_re2_cannot_compile_is_refused_at_deploy() -> None:
    with pytest.raises(SpecError) as info:
        app({"id": "/web", "routes": [{"rule": "PathRegexp(`^/(a)\\1$`)"}]})
    assert "invalid regular expression" in str(info.value)
    assert "no backreferences or lookaround" in str(info.value)
