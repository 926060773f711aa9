"""The app page's own judgement, with plain values: which tasks are ended, which failed last,
the DNS names of an app, the queries of its charts."""

from __future__ import annotations

import re

from kade.spec import parse_app
from kade.ui.app_page import AppPath, chart_queries, dns_names, last_failed, split_tasks


def task(id_: str, state: str, started: str | None) -> dict[str, object]:
    return {"id": id_, "state": state, "startedAt": started, "stagedAt": "2026-01-01T00:00:00Z"}


def test_tasks_are_split_into_active_and_ended_newest_first() -> None:
    tasks = [task("a", "TASK_RUNNING", "2026-01-01T00:00:01Z"),
             task("b", "TASK_FAILED", "2026-01-01T00:00:02Z"),
             task("c", "TASK_STAGING", None),
             task("d", "TASK_KILLED", "2026-01-01T00:00:03Z"),
             task("e", "TASK_RUNNING", "2026-01-01T00:00:04Z")]
    active, ended = split_tasks(tasks)
    assert [t["id"] for t in active] == ["e", "a", "c"]
    assert [t["id"] for t in ended] == ["d", "b"]


def test_the_last_failed_task_is_the_newest_failed_one() -> None:
    tasks = [task("b", "TASK_FAILED", "2026-01-01T00:00:02Z"),
             task("d", "TASK_KILLED", "2026-01-01T00:00:09Z"),
             task("f", "TASK_FAILED", "2026-01-01T00:00:05Z")]
    found = last_failed(tasks)
    assert found is not None and found["id"] == "f"
    assert last_failed([task("a", "TASK_RUNNING", None)]) is None


def test_dns_names_follow_the_service_name_and_named_ports() -> None:
    app = parse_app({"id": "/shop/web", "cmd": "x",
                     "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0}]}).app
    assert dns_names(app) == ("web-shop", ["web-shop.service.consul",
                                           "http.web-shop.service.consul"], None)
    labelled = parse_app({"id": "/shop/web", "cmd": "x",
                          "labels": {"kade.service.name": "Bad_"}}).app
    name, names, problem = dns_names(labelled)
    assert name == "web-shop" and problem is not None and "not a valid service name" in problem


def test_chart_queries_quote_the_app_and_service() -> None:
    queries = {c["id"]: c["query"] for c in chart_queries('/a"b', "web-shop")}
    assert queries["cpu"] == 'sum by (task) (rate(kade_task_cpu_seconds_total{app="/a\\"b"}[$w]))'
    assert 'service="web-shop",code="5xx"' in queries["errors"]
    assert queries["p99"].startswith("histogram_quantile(0.99, ")
    assert set(queries) == {"cpu", "memory", "requests", "errors", "p99"}


def test_the_page_path_leaves_the_editor_its_own() -> None:
    pattern = re.compile(f"^{AppPath.regex}$")
    assert pattern.match("shop/web")
    assert pattern.match("shop/editor")
    assert not pattern.match("shop/web/edit")
