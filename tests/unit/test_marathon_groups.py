"""Marathon group definitions flattened into apps, with dependencies resolved and ordered."""

from __future__ import annotations

import pytest

from kade.spec import SpecError, parse_app
from kade.spec.groups import dependency_order, flatten, parent_of, resolve_id, tree


def test_paths_resolve_as_in_marathon() -> None:
    assert resolve_id("db", "/shop") == "/shop/db"
    assert resolve_id("../infra/redis", "/shop") == "/infra/redis"
    assert resolve_id("/abs/x", "/shop") == "/abs/x"
    assert resolve_id("./a/./b", "/") == "/a/b"
    assert parent_of("/shop/web") == "/shop" and parent_of("/web") == "/"


def test_a_single_app_s_relative_dependencies_are_made_absolute() -> None:
    app = parse_app({"id": "/shop/web", "cmd": "x", "dependencies": ["db", "/infra/mq"]}).app
    assert app.dependencies == ["/shop/db", "/infra/mq"]


def test_a_nested_group_is_flattened_in_dependency_order() -> None:
    flat = flatten({
        "id": "/product",
        "groups": [
            {"id": "database", "apps": [{"id": "mongo", "cmd": "m"}]},
            {"id": "service", "dependencies": ["/product/database"],
             "apps": [{"id": "api", "cmd": "a"}]},
            {"id": "frontend", "apps": [{"id": "web", "cmd": "w", "dependencies": ["../service"]}]},
        ],
    })
    assert flat.id == "/product"
    assert [a["id"] for a in flat.apps] == [
        "/product/database/mongo", "/product/service/api", "/product/frontend/web"]
    deps = {a["id"]: a["dependencies"] for a in flat.apps}
    assert deps["/product/service/api"] == ["/product/database/mongo"]
    assert deps["/product/frontend/web"] == ["/product/service/api"]
    assert flat.groups == ["/product", "/product/database", "/product/service",
                           "/product/frontend"]


def test_dependencies_may_name_apps_outside_the_group_that_exist() -> None:
    flat = flatten({"id": "/shop", "apps": [{"id": "web", "cmd": "w",
                                             "dependencies": ["/infra/db"]}]},
                   known={"/infra/db"})
    assert flat.apps[0]["dependencies"] == ["/infra/db"]
    with pytest.raises(SpecError, match="dependency /infra/db is neither an app nor a group"):
        flatten({"id": "/shop", "apps": [{"id": "web", "cmd": "w",
                                          "dependencies": ["/infra/db"]}]})


def test_a_cycle_is_refused_naming_it() -> None:
    with pytest.raises(SpecError, match=r"cycle /g/a -> /g/b -> /g/a"):
        flatten({"id": "/g", "apps": [{"id": "a", "cmd": "x", "dependencies": ["b"]},
                                      {"id": "b", "cmd": "x", "dependencies": ["a"]}]})


def test_bad_groups_name_each_problem_by_its_place() -> None:
    with pytest.raises(SpecError) as e:
        flatten({"id": "/g", "pods": [{"id": "p"}], "apps": [{"cmd": "x"},
                                                               {"id": "/elsewhere", "cmd": "y"}],
                 "groups": [{"id": "sub", "apps": [{"id": "a", "cmd": "x"},
                                                   {"id": "a", "cmd": "x"}]}],
                 "colour": "blue"})
    assert e.value.problems == [
        "pods: pods are not supported; define each container as an app of the group",
        "colour: unknown field of a group",
        "apps[0].id: is required",
        "apps[1].id: '/elsewhere' is not inside the group /g",
        "groups[0].apps[1].id: /g/sub/a is defined twice",
    ]


def test_the_path_and_the_body_must_name_the_same_group() -> None:
    assert flatten({"apps": []}, group_id="/g").id == "/g"
    with pytest.raises(SpecError, match="does not match the path"):
        flatten({"id": "/h", "apps": []}, group_id="/g")


def test_order_puts_dependencies_first_and_ties_by_id() -> None:
    assert dependency_order({"/c": ["/a"], "/b": [], "/a": ["/x"]}) == ["/a", "/b", "/c"]


def test_tree_of_existing_apps() -> None:
    ids = ["/shop/web", "/shop/db/mongo", "/other"]
    assert tree(ids, "/") == {"id": "/", "apps": ["/other"], "groups": [
        {"id": "/shop", "apps": ["/shop/web"], "groups": [
            {"id": "/shop/db", "apps": ["/shop/db/mongo"], "groups": []}]}]}


def test_a_dependency_must_be_a_valid_id_of_another_app() -> None:
    with pytest.raises(SpecError) as e:
        parse_app({"id": "/shop/web", "cmd": "x", "dependencies": ["web", "Bad Id!", ".."]})
    assert e.value.problems == [
        "dependencies.0: 'web' is the app itself",
        "dependencies.1: 'Bad Id!' is not a valid app or group id",
        "dependencies.2: '..' is not a valid app or group id",
    ]
