"""Tokens, roles and scopes: the policy table with plain values, and the API's front door
in process (a real SQLite store, the real FastAPI app, no network)."""

from __future__ import annotations

import base64
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kade.api.app import create_app
from kade.api.consul_kv import kv_router
from kade.api.security import SecurityConfig
from kade.auth import (
    Principal,
    can_deploy_app,
    can_write_kv,
    create_token,
    ensure_token_file,
    needed_permission,
    parse_token,
    redact_env,
)
from kade.auth.policy import decide
from kade.auth.tokens import authenticate, valid_token
from kade.store import SqliteStore

NOW = 1_800_000_000.0


def test_every_endpoint_kind_has_its_permission() -> None:
    assert needed_permission("GET", "/ping") == "public"
    assert needed_permission("GET", "/v1/status/leader") == "public"  # as Consul
    assert needed_permission("GET", "/v1/apps") == "read"
    assert needed_permission("GET", "/v1/kv/config/a") == "read"
    assert needed_permission("GET", "/openapi.json") == "read"
    assert needed_permission("PUT", "/v1/apps/shop/web") == "deploy"
    assert needed_permission("DELETE", "/v1/tasks/shop_web.1") == "deploy"
    assert needed_permission("PUT", "/v1/kv/a") == "deploy"
    assert needed_permission("POST", "/v1/txn") == "deploy"
    assert needed_permission("PUT", "/v1/router/ack") == "node"
    assert needed_permission("GET", "/v1/router/table") == "node"
    assert needed_permission("GET", "/v1/tokens") == "admin"
    assert needed_permission("POST", "/v1/admin/shutdown") == "admin"
    # not in the table: closed until someone decides
    assert needed_permission("POST", "/v1/something-new") == "admin"
    assert needed_permission("GET", "/something-new") == "admin"


def test_roles() -> None:
    read = Principal("r", "read")
    deploy = Principal("d", "deploy")
    node = Principal("n", "node")
    assert decide(None, "GET", "/v1/apps").status == 401
    assert decide(read, "GET", "/v1/apps").allowed
    assert decide(read, "PUT", "/v1/apps/x").status == 403
    assert "needs a deploy token" in decide(read, "PUT", "/v1/apps/x").message
    assert decide(deploy, "PUT", "/v1/apps/x").allowed
    assert decide(deploy, "POST", "/v1/admin/shutdown").status == 403
    assert decide(node, "PUT", "/v1/router/ack").allowed
    assert decide(node, "PUT", "/v1/apps/x").status == 403
    assert decide(Principal("a", "admin"), "DELETE", "/v1/tokens/x").allowed


def test_scopes() -> None:
    shop = Principal("s", "deploy", apps=("/shop/*",))
    assert can_deploy_app(shop, "/shop/web") and can_deploy_app(shop, "shop/a/b")
    assert not can_deploy_app(shop, "/billing/api")
    assert not can_deploy_app(Principal("r", "read"), "/shop/web")
    assert can_write_kv(Principal("d", "deploy"), "anything")
    assert not can_write_kv(shop, "config/shop/x")  # scoped to apps, no kv prefixes
    kv = Principal("k", "deploy", apps=("/shop/*",), kv=("config/shop/",))
    assert can_write_kv(kv, "config/shop/x") and not can_write_kv(kv, "config/billing/x")


def test_env_values_hidden_from_those_who_may_not_deploy() -> None:
    app = {"id": "/shop/web", "env": {"DB_PASSWORD": "s3cret"}}
    assert redact_env(app, Principal("d", "deploy")) == app
    hidden = redact_env(app, Principal("r", "read"))
    assert "s3cret" not in str(hidden) and list(hidden["env"]) == ["DB_PASSWORD"]
    assert "s3cret" not in str(redact_env(app, Principal("s", "deploy", apps=("/other/*",))))


def test_token_text_is_checked_before_any_lookup() -> None:
    assert parse_token("kade.abc123.") is None
    assert parse_token("Bearer x") is None
    assert parse_token("kade.abc.def.ghi") is None
    assert parse_token("kade.abc123." + "x" * 43) == ("abc123", "x" * 43)


async def test_a_token_is_valid_until_revoked_or_expired(store: SqliteStore) -> None:
    text, record = await create_token(store, role="read", now=NOW, expires_at=NOW + 60)
    assert await valid_token(store, record.id, NOW) == record
    principal = await authenticate(store, text, NOW)
    assert principal is not None and principal.token_id == record.id
    wrong_secret = text.rsplit(".", 1)[0] + "." + "x" * 43
    assert await authenticate(store, wrong_secret, NOW) is None
    assert await valid_token(store, record.id, NOW + 60) is None  # expired
    assert await authenticate(store, text, NOW + 60) is None
    await store.put(f"tokens/{record.id}", b"{not json")  # unreadable
    assert await valid_token(store, record.id, NOW) is None
    assert await authenticate(store, text, NOW) is None
    await store.delete(f"tokens/{record.id}")  # revoked
    assert await valid_token(store, record.id, NOW) is None
    assert await authenticate(store, text, NOW) is None


async def test_token_file_is_private_and_reused(store: SqliteStore, tmp_path: Path) -> None:
    path = tmp_path / "management.token"
    first = await ensure_token_file(store, path, role="admin", description="m", now=NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await ensure_token_file(store, path, role="admin", description="m", now=NOW) == first
    entries, _ = await store.range("tokens/")
    assert len(entries) == 1 and first.split(".")[2].encode() not in entries[0].value


@pytest.fixture
async def api(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, clock=lambda: NOW, extra=[kv_router(store)],
                     security=SecurityConfig(hosts=("kade.example",)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7400") as c:
        yield c


async def token(store: SqliteStore, role: str, **scope: list[str]) -> dict[str, str]:
    text, _ = await create_token(store, role=role, now=NOW, **scope)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {text}"}


SITE = {"id": "/shop/web", "cmd": "sleep 1000", "env": {"PASSWORD": "s3cret"}}


async def test_no_token_is_401_and_the_ping_is_open(api: httpx.AsyncClient) -> None:
    assert (await api.get("/ping")).status_code == 200
    r = await api.get("/v1/apps")
    assert r.status_code == 401 and "token" in r.json()["message"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await api.get("/v1/apps", headers={"Authorization": "Bearer kade.nope." + "x" * 43})
    assert r.status_code == 401 and "not valid" in r.json()["message"]


async def test_roles_over_http(api: httpx.AsyncClient, store: SqliteStore) -> None:
    read = await token(store, "read")
    deploy = await token(store, "deploy")
    r = await api.post("/v1/apps", json=SITE, headers=read)
    assert r.status_code == 403 and "needs a deploy token" in r.json()["message"]
    assert (await api.get("/v1/apps", headers=read)).json() == {"apps": []}
    assert (await api.post("/v1/apps", json=SITE, headers=deploy)).status_code == 201
    shown = (await api.get("/v1/apps/shop/web", headers=read)).json()["app"]
    assert shown["env"]["PASSWORD"] != "s3cret"
    shown = (await api.get("/v1/apps/shop/web", headers=deploy)).json()["app"]
    assert shown["env"]["PASSWORD"] == "s3cret"
    r = await api.get("/v1/tokens", headers=deploy)
    assert r.status_code == 403
    # the routing table carries the HTTPS keys: routers (node tokens) and admins only
    r = await api.get("/v1/router/table", params={"tlsIndex": "0"}, headers=deploy)
    assert r.status_code == 403 and "needs a node token" in r.json()["message"]


async def test_consul_clients_pass_tokens_their_way(api: httpx.AsyncClient,
                                                    store: SqliteStore) -> None:
    text = (await token(store, "deploy"))["Authorization"].removeprefix("Bearer ")
    assert (await api.put("/v1/kv/a", content=b"1", headers={"X-Consul-Token": text})).json()
    assert (await api.get("/v1/kv/a", params={"token": text})).status_code == 200
    assert (await api.get("/v1/kv/a", headers={"X-Kade-Token": text})).status_code == 200
    basic = base64.b64encode(f"marathon:{text}".encode()).decode()
    assert (await api.get("/v1/kv/a", headers={"Authorization": f"Basic {basic}"})
            ).status_code == 200
    assert (await api.get("/v1/kv/a", headers={"Authorization": f"token={text}"})
            ).status_code == 200
    # kade's own endpoints take no token in the URL (it would end up in logs)
    assert (await api.get("/v1/apps", params={"token": text})).status_code == 401


async def test_scoped_deploy_token(api: httpx.AsyncClient, store: SqliteStore) -> None:
    admin = await token(store, "admin")
    shop = await token(store, "deploy", apps=["/shop/*"], kv=["config/shop/"])
    assert (await api.post("/v1/apps", json=SITE, headers=admin)).status_code == 201
    other = {**SITE, "id": "/billing/api"}
    assert (await api.post("/v1/apps", json=other, headers=admin)).status_code == 201
    r = await api.post("/v1/apps/billing/api/scale", json={"instances": 0}, headers=shop)
    assert r.status_code == 403 and "/billing/api" in r.json()["message"]
    r = await api.post("/v1/apps/shop/web/scale", json={"instances": 0}, headers=shop)
    assert r.status_code == 200
    assert (await api.put("/v1/kv/config/shop/x", content=b"1", headers=shop)).status_code == 200
    assert (await api.put("/v1/kv/config/other", content=b"1", headers=shop)).status_code == 403
    r = await api.post("/v1/apps", json={**SITE, "id": "/billing/new"}, headers=shop)
    assert r.status_code == 403 and "/billing/new" in r.json()["message"]
    assert (await api.get("/v1/apps/billing/new", headers=admin)).status_code == 404
    r = await api.put("/v1/txn", json=[], headers=shop)
    assert r.status_code == 403 and "scoped" in r.json()["message"]


async def test_browser_borne_requests_are_refused(api: httpx.AsyncClient,
                                                  store: SqliteStore) -> None:
    admin = await token(store, "admin")
    body = b'{"id": "/evil", "cmd": "id > /tmp/x"}'
    # a "simple request": text/plain needs no CORS preflight
    r = await api.post("/v1/apps", content=body, headers={**admin, "Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["message"]
    r = await api.post("/v1/apps", content=body, headers={
        **admin, "Content-Type": "application/json", "Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["message"]
    # DNS rebinding: a name that is not ours, pointing at 127.0.0.1
    r = await api.post("/v1/apps", content=body, headers={
        **admin, "Content-Type": "application/json", "Host": "evil.example:7400"})
    assert r.status_code == 403 and "not a name of this server" in r.json()["message"]
    r = await api.post("/v1/admin/shutdown", headers={**admin, "Origin": "null"})
    assert r.status_code == 403
    assert (await api.get("/v1/apps", headers=admin)).json() == {"apps": []}
    # the server's own names and origin are fine
    r = await api.get("/v1/apps", headers={**admin, "Host": "kade.example:7400",
                                           "Origin": "http://kade.example:7400"})
    assert r.status_code == 200


async def test_bodies_are_capped(api: httpx.AsyncClient, store: SqliteStore) -> None:
    admin = await token(store, "admin")
    big = b"[" + b"1," * (600 * 1024) + b"1]"
    r = await api.post("/v1/apps", content=big,
                       headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["message"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 65536

    r = await api.post("/v1/apps", content=chunks(),
                       headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 413


async def test_tokens_api(api: httpx.AsyncClient, store: SqliteStore) -> None:
    admin = await token(store, "admin")
    r = await api.post("/v1/tokens", json={"role": "read", "description": "dashboards"},
                       headers=admin)
    assert r.status_code == 201
    made = r.json()
    assert "secret_sha256" not in made
    listed = (await api.get("/v1/tokens", headers=admin)).json()["tokens"]
    assert {t["id"] for t in listed} >= {made["id"]}
    assert all("secret_sha256" not in t for t in listed)
    assert (await api.get("/v1/apps", headers={"Authorization": f"Bearer {made['token']}"})
            ).status_code == 200
    assert (await api.delete(f"/v1/tokens/{made['id']}", headers=admin)).status_code == 200
    assert (await api.get("/v1/apps", headers={"Authorization": f"Bearer {made['token']}"})
            ).status_code == 401
    r = await api.post("/v1/tokens", json={"role": "root"}, headers=admin)
    assert r.status_code == 400 and "role" in r.json()["message"]
    r = await api.post("/v1/tokens", json={"role": "read", "apps": ["/x/*"]}, headers=admin)
    assert r.status_code == 400 and "deploy tokens" in r.json()["message"]
    r = await api.post("/v1/tokens", json={"role": "deploy", "node": "n1"}, headers=admin)
    assert r.status_code == 400 and "node applies to node tokens" in r.json()["message"]
    r = await api.post("/v1/tokens", json={"role": "node", "node": "n 1"}, headers=admin)
    assert r.status_code == 400 and "node: 'n 1' may hold only" in r.json()["message"]
    r = await api.post("/v1/tokens", json={"role": "node", "node": "n1"}, headers=admin)
    assert r.status_code == 201 and r.json()["node"] == "n1"


async def test_server_errors_name_an_id_not_the_exception(store: SqliteStore) -> None:
    app = create_app(store, clock=lambda: NOW)

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    admin = await token(store, "admin")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        r = await c.get("/v1/boom", headers=admin)
    assert r.status_code == 500
    assert "secret internals" not in r.text and r.json()["errorId"] in r.json()["message"]
