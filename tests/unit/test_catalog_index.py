"""CatalogIndex rebuilds per app; whatever the order of changes, it equals a full build."""

from __future__ import annotations

import random

from kade import model
from kade.catalog import build_catalog
from kade.catalog.index import CatalogIndex
from kade.model import Node, Task, TaskStatus
from kade.spec import AppSpec, parse_app

APP_IDS = ["/shop/web", "/shop/api", "/blue", "/green", "/tools/cron"]
NODE_NAMES = ["n1", "n2", "n3"]
TASK_IDS = [f"t{i}" for i in range(12)]


def random_app(rng: random.Random, app_id: str) -> AppSpec:
    data: dict[str, object] = {"id": app_id, "cmd": "x"}
    if rng.random() < 0.5:
        data["healthChecks"] = [{"path": "/health"}]
    if app_id in ("/blue", "/green") and rng.random() < 0.7:
        data["labels"] = {"kade.service.name": "web", "kade.service.tags": app_id[1:]}
    if rng.random() < 0.3:
        data["portDefinitions"] = [{"name": "http"}, {"name": "admin"}]
    return parse_app(data).app


def random_task(rng: random.Random, task_id: str) -> Task:
    node = rng.choice(NODE_NAMES + ["n9"])  # n9 is never in nodes/
    return Task(id=task_id, app_id=rng.choice(APP_IDS), version="v", spec_hash="h", node=node,
                host=rng.choice(["", "10.1.1.1", "10.0.0.1"]),
                host_ports=rng.sample(range(31000, 31100), rng.choice([0, 1, 2])),
                desired=rng.choice(["run", "run", "run", "stop"]), created_at=0)


def random_status(rng: random.Random, task_id: str) -> TaskStatus:
    return TaskStatus(task_id=task_id, app_id=rng.choice(APP_IDS), node="n1",
                      state=rng.choice(["staging", "starting", "running", "running", "killed"]),
                      health=rng.choice(["unknown", "healthy", "healthy", "unhealthy"]),
                      updated_at=0)


def test_incremental_equals_full_build_under_random_changes() -> None:
    rng = random.Random(20240601)
    index = CatalogIndex()
    records: dict[str, object] = {}
    previous = index.catalog()
    for _ in range(600):
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(["app", "task", "task", "status", "status", "node"])
            if kind == "app":
                app_id = rng.choice(APP_IDS)
                key = model.app_key(app_id)
                value: object | None = random_app(rng, app_id)
            elif kind == "task":
                tid = rng.choice(TASK_IDS)
                key, value = model.task_key(tid), random_task(rng, tid)
            elif kind == "status":
                tid = rng.choice(TASK_IDS)
                key, value = model.status_key(tid), random_status(rng, tid)
            else:
                name = rng.choice(NODE_NAMES)
                key = model.node_key(name)
                value = Node(name=name, address=rng.choice(["10.0.0.1", "10.0.0.2"]), cpus=1,
                             mem=1)
            if rng.random() < 0.2:
                value = None  # a delete
            index.set(key, value)
            if value is None:
                records.pop(key, None)
            else:
                records[key] = value
        delta = index.commit()
        full = build_catalog(
            [v for v in records.values() if isinstance(v, AppSpec)],
            [v for v in records.values() if isinstance(v, Task)],
            [v for v in records.values() if isinstance(v, TaskStatus)],
            [v for v in records.values() if isinstance(v, Node)],
        )
        assert delta.services == full.services
        assert delta.nodes == full.nodes
        assert delta.problems == full.problems
        expected_changed = {
            name for name in previous.services.keys() | full.services.keys()
            if previous.services.get(name) != full.services.get(name)
        }
        assert delta.changed == expected_changed
        previous = full


def test_a_status_change_recomputes_only_its_app() -> None:
    index = CatalogIndex()
    index.set(model.node_key("n1"), Node(name="n1", address="10.0.0.1", cpus=1, mem=1))
    for app_id in ("/a", "/b"):
        index.set(model.app_key(app_id), parse_app({"id": app_id, "cmd": "x"}).app)
        tid = app_id[1:] + ".1"
        index.set(model.task_key(tid), Task(id=tid, app_id=app_id, version="v", spec_hash="h",
                                            node="n1", host_ports=[31000], created_at=0))
        index.set(model.status_key(tid), TaskStatus(task_id=tid, app_id=app_id, node="n1",
                                                    state="running", updated_at=0))
    first = index.commit()
    assert first.changed == {"a", "b"}
    index.set(model.status_key("a.1"), TaskStatus(task_id="a.1", app_id="/a", node="n1",
                                                  state="starting", updated_at=1))
    second = index.commit()
    assert second.changed == {"a"}
    assert second.services["b"] is first.services["b"]  # untouched, not even rebuilt
    assert index.commit().changed == frozenset()
