"""`POST /v1/apps/<id>/plan` and the `problems` of refused definitions, in process: a real
SQLite store, the real FastAPI app with its front door."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kade import model
from kade.api.app import create_app
from kade.auth import create_token, needed_permission
from kade.cli.plan import plan_lines
from kade.model import Node
from kade.store import SqliteStore

NOW = 1_800_000_000.0
WEB = {"id": "/web", "instances": 2, "container": {"docker": {"image": "web:1"}}}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store")
    node = Node(name="n1", address="127.0.0.1", hostname="h", cpus=4, mem=4096,
                drivers=["docker", "exec"], updated_at=NOW)
    await s.put(model.node_key("n1"), node.dump())
    await s.put(model.alive_key("n1"), b'{"node": "n1", "since": 0}')
    yield s
    await s.close()


async def client(store: SqliteStore, role: str = "admin") -> httpx.AsyncClient:
    text, _ = await create_token(store, role=role, now=NOW)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(store, clock=lambda: NOW))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7400",
                             headers={"Authorization": f"Bearer {text}"})


def test_a_plan_needs_deploy_like_a_put() -> None:
    assert needed_permission("POST", "/v1/apps/web/plan") == "deploy"


async def test_the_plan_of_a_new_app_changes_nothing(store: SqliteStore) -> None:
    async with await client(store) as api:
        r = await api.post("/v1/apps/web/plan", json=WEB)
        assert r.status_code == 200, r.text
        plan = r.json()
        assert plan["app"] == "/web" and plan["new"] and plan["changed"]
        assert plan["instances"] == {"start": 2, "stop": 0, "replace": 0, "keep": 0,
                                     "unplaced": 0}
        assert plan["deployment"]["steps"][0]["description"].startswith("start 2 task(s)")
        assert (await api.get("/v1/apps/web")).status_code == 404


async def test_the_plan_of_a_change_names_fields_and_replaced_tasks(store: SqliteStore
                                                                   ) -> None:
    async with await client(store) as api:
        assert (await api.put("/v1/apps/web", json=WEB)).status_code == 200
        changed = {**WEB, "container": {"docker": {"image": "web:2"}}}
        plan = (await api.post("/v1/apps/web/plan", json=changed)).json()
        assert plan["new"] is False and plan["restartsTasks"] is True
        assert plan["fields"] == [{"path": "container.docker.image", "from": "web:1",
                                   "to": "web:2"}]
        # no task placed yet (no scheduler here): the new version starts both
        assert plan["instances"]["start"] == 2
        plan = (await api.post("/v1/apps/web/plan", json=WEB)).json()
        assert plan["changed"] is False and plan["fields"] == [] and plan["deployment"] is None


async def test_a_yaml_plan_refused_names_the_field_and_its_line(store: SqliteStore) -> None:
    body = "id: /web\ninstances: 1\ncontainer:\n  docker:\n    image: web:1\nhealthChecks:\n" \
           "  - protocol: HTTP\n    path: 5\n"
    async with await client(store) as api:
        r = await api.post("/v1/apps/web/plan", content=body,
                           headers={"Content-Type": "application/yaml"})
        assert r.status_code == 422, r.text
        answer = r.json()
        assert answer["message"] == ("invalid app definition: healthChecks.0.path: must be a "
                                     "string")
        assert answer["problems"] == [{"field": "healthChecks[0].path",
                                       "message": "must be a string", "line": 8}]


async def test_put_and_post_answer_problems_beside_the_message(store: SqliteStore) -> None:
    body = json.dumps({**WEB, "instances": -1, "cpus": "many"}, indent=2)
    async with await client(store) as api:
        for r in (await api.put("/v1/apps/web", content=body,
                                headers={"Content-Type": "application/json"}),
                  await api.post("/v1/apps", content=body,
                                 headers={"Content-Type": "application/json"})):
            assert r.status_code == 422
            answer = r.json()
            assert answer["message"].startswith("invalid app definition: ")
            lines = body.splitlines()
            for p in answer["problems"]:
                assert p["field"].split(".")[0] in lines[p["line"] - 1]
            assert {p["field"] for p in answer["problems"]} == {"instances", "cpus"}


async def test_a_refused_document_is_a_400_with_its_line(store: SqliteStore) -> None:
    body = "id: &a web\ncmd: *a\n"
    async with await client(store) as api:
        r = await api.put("/v1/apps/web", content=body,
                          headers={"Content-Type": "application/yaml"})
        assert r.status_code == 400
        assert r.json()["problems"][0]["line"] == 2


async def test_a_read_token_may_not_plan(store: SqliteStore) -> None:
    async with await client(store, role="read") as api:
        assert (await api.post("/v1/apps/web/plan", json=WEB)).status_code == 403


async def test_the_cli_prints_the_plan_for_people(store: SqliteStore) -> None:
    async with await client(store) as api:
        await api.put("/v1/apps/web", json=WEB)
        changed = {**WEB, "instances": 3, "container": {"docker": {"image": "web:2"}}}
        plan = (await api.post("/v1/apps/web/plan", json=changed)).json()
        unchanged = (await api.post("/v1/apps/web/plan", json=WEB)).json()
    assert plan_lines(plan)[:3] == [
        "~ /web: tasks are replaced",
        '    container.docker.image: "web:1" => "web:2"',
        "    instances: 2 => 3",
    ]
    assert "  instances: 3 start" in plan_lines(plan)
    assert plan_lines(unchanged) == ["/web: unchanged (a deploy would make no new version)"]
