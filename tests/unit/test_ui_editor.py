"""The deploy / edit page as the server renders it, and the definition it starts from."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import yaml

from kade.api.app import create_app
from kade.auth import create_token
from kade.auth.policy import REDACTED
from kade.deployments.intent import same_definition
from kade.scheduler.sim import app_spec
from kade.spec import parse_app
from kade.store import SqliteStore
from kade.ui.definition import NEW_APP, as_text, written
from kade.ui.pages import ui_router

NOW = 1_800_000_000.0


@pytest.fixture
async def api(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    text, _ = await create_token(store, role="admin", now=NOW)
    app = create_app(store, clock=lambda: NOW, extra=[ui_router(store, lambda: NOW)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1:7400",
                                 headers={"Authorization": f"Bearer {text}"}) as c:
        yield c


def textarea(page: str) -> str:
    found = re.search(r'<textarea id="definition"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, page
    return html.unescape(found.group(1))


async def test_the_deploy_page_starts_from_an_example_in_the_format_asked(
        api: httpx.AsyncClient) -> None:
    r = await api.get("/ui/deploy")
    assert r.status_code == 200
    assert yaml.safe_load(textarea(r.text)) == NEW_APP
    assert 'src="/ui/static/editor.js"' in r.text
    r = await api.get("/ui/deploy", params={"format": "json"})
    assert json.loads(textarea(r.text)) == NEW_APP


async def test_the_edit_page_shows_the_definition_as_written(api: httpx.AsyncClient) -> None:
    web = {"id": "/shop/web", "cmd": "serve", "instances": 2, "env": {"MODE": "fast"}}
    assert (await api.put("/v1/apps/shop/web", json=web)).status_code == 200
    r = await api.get("/ui/deploy/shop/web", params={"format": "json"})
    assert r.status_code == 200
    assert json.loads(textarea(r.text)) == web
    assert 'data-app="/shop/web"' in r.text
    r = await api.get("/ui/deploy/shop/web")
    assert yaml.safe_load(textarea(r.text)) == web


async def test_editing_an_app_that_does_not_exist_is_a_404(api: httpx.AsyncClient) -> None:
    r = await api.get("/ui/deploy/nope")
    assert r.status_code == 404
    assert r.json()["message"] == "app /nope does not exist"


async def test_the_version_shown_is_a_live_region(api: httpx.AsyncClient) -> None:
    web = {"id": "/shop/web", "cmd": "serve"}
    version = (await api.put("/v1/apps/shop/web", json=web)).json()["version"]
    r = await api.get("/ui/deploy/shop/web", params={"fragment": "live_version"})
    assert r.status_code == 200
    assert f'data-version="{version}"' in r.text and "<textarea" not in r.text
    assert (await api.delete("/v1/apps/shop/web")).status_code == 200
    r = await api.get("/ui/deploy/shop/web", params={"fragment": "live_version"})
    assert r.status_code == 200 and "no longer exists" in r.text


async def test_the_editors_static_files_are_served(api: httpx.AsyncClient) -> None:
    for name, kind in (("editor.js", "text/javascript"), ("editor.css", "text/css")):
        r = await api.get(f"/ui/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)


def test_a_written_definition_reads_back_as_the_same_app() -> None:
    apps = [
        app_spec("/a", "v1", cmd="serve", instances=3, portDefinitions=[{"port": 0}],
                 healthChecks=[{"protocol": "HTTP", "path": "/", "intervalSeconds": 1}]),
        app_spec("/b", "v1", container={"docker": {"image": "nginx:alpine"}}, mem=64,
                 labels={"traefik.enable": "true"}),
        app_spec("/c", "v1", cmd="work", upgradeStrategy={"minimumHealthCapacity": 0.5}),
    ]
    # HTTP on / is the default health check
    assert written(apps[0])["healthChecks"] == [{"intervalSeconds": 1.0}]
    assert written(apps[1])["container"] == {"docker": {"image": "nginx:alpine"}}
    for app in apps:
        short = written(app)
        assert "version" not in short
        assert len(short) < len(app.wire()) / 2
        for fmt in ("yaml", "json"):
            text = as_text(short, fmt)  # type: ignore[arg-type]
            again = parse_app(yaml.safe_load(text)).app
            assert same_definition(again, app.model_copy(update={"version": None}))


async def test_a_read_token_sees_the_definition_without_env_values(
        api: httpx.AsyncClient, store: SqliteStore) -> None:
    web = {"id": "/shop/web", "cmd": "serve", "env": {"DB_PASSWORD": "s3cret"}}
    assert (await api.put("/v1/apps/shop/web", json=web)).status_code == 200
    text, _ = await create_token(store, role="read", now=NOW)
    r = await api.get("/ui/deploy/shop/web", headers={"Authorization": f"Bearer {text}"})
    assert r.status_code == 200
    assert "s3cret" not in r.text
    assert yaml.safe_load(textarea(r.text))["env"]["DB_PASSWORD"] == REDACTED
    assert "Environment values are hidden" in r.text
    assert 'id="deploy-button"' not in r.text
