"""The Consul-compatible discovery API, read by the real py-consul client.

The server is a FastAPI app with the catalog router, run by uvicorn on 127.0.0.1 and backed by
a real SQLite store; the test writes apps, tasks, statuses and nodes as the API, scheduler and
agent do, and reads them back through Consul's client library.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import consul  # type: ignore[import-untyped]
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from kade import model
from kade.api.consul_catalog import catalog_router
from kade.api.security import SecurityConfig, SecurityMiddleware
from kade.auth import create_token
from kade.catalog import CatalogView
from kade.model import Node, Task, TaskStatus
from kade.spec import parse_app
from kade.store import SqliteStore

pytestmark = pytest.mark.timeout(120)


@dataclass
class Discovery:
    store: SqliteStore
    view: CatalogView
    port: int
    token: str  # a read token: Consul clients pass it their own ways

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def consul(self) -> consul.Consul:
        return consul.Consul(host="127.0.0.1", port=self.port, token=self.token)

    async def put_app(self, app_id: str, **fields: Any) -> None:
        app = parse_app({"id": app_id, "cmd": "sleep 1000", **fields}).app
        await self.store.put(model.app_key(app_id), app.model_dump_json(by_alias=True).encode())

    async def put_node(self, name: str = "n1", address: str = "127.0.0.1") -> None:
        node = Node(name=name, address=address, cpus=2, mem=1024, attributes={"zone": "1a"})
        await self.store.put(model.node_key(name), node.dump())

    async def put_task(self, task_id: str, app_id: str, ports: list[int], *,
                       node: str = "n1", host: str = "127.0.0.1", desired: str = "run") -> None:
        task = Task(id=task_id, app_id=app_id, version="v1", spec_hash="h", node=node,
                    host=host, host_ports=ports, desired=desired,  # type: ignore[arg-type]
                    created_at=0)
        await self.store.put(model.task_key(task_id), task.dump())

    async def put_status(self, task_id: str, app_id: str, state: str = "running",
                         health: str = "unknown", node: str = "n1") -> None:
        status = TaskStatus(task_id=task_id, app_id=app_id, node=node,
                            state=state, health=health, updated_at=0)  # type: ignore[arg-type]
        await self.store.put(model.status_key(task_id), status.dump())


def listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # proto=IPPROTO_TCP explicitly: asyncio only turns Nagle off (TCP_NODELAY) on such sockets,
    # and with Nagle on every keep-alive answer waits ~40 ms for a delayed ACK.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue until the server accepts: no need to wait for it
    return sock


@asynccontextmanager
async def serve_discovery(data_dir: Path) -> AsyncIterator[Discovery]:
    """A store, a catalog view and the Consul API on a free port, behind kade's front door
    (tokens required), for the block's duration."""
    store = SqliteStore(data_dir)
    view = CatalogView(store)
    app = FastAPI()
    app.include_router(catalog_router(view, node_name="n1"))
    app.add_middleware(SecurityMiddleware, store=store, config=SecurityConfig())
    token, _ = await create_token(store, role="read", now=time.time())
    sock = listen()
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    try:
        async with view.running():
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            try:
                yield Discovery(store, view, sock.getsockname()[1], token)
            finally:
                server.should_exit = True
                await serving
    finally:
        sock.close()
        await store.close()


@pytest.fixture
async def discovery(tmp_path: Path) -> AsyncIterator[Discovery]:
    async with serve_discovery(tmp_path / "data") as d:
        yield d


async def seed(d: Discovery) -> None:
    await d.put_node("n1", "127.0.0.1")
    await d.put_app("/shop/web", healthChecks=[{"path": "/health"}],
                    labels={"kade.service.tags": "v1,frontend"},
                    portDefinitions=[{"name": "http"}])
    await d.put_app("/shop/api")
    await d.put_task("web.1", "/shop/web", [31001])
    await d.put_status("web.1", "/shop/web", "running", "healthy")
    await d.put_task("web.2", "/shop/web", [31002])
    await d.put_status("web.2", "/shop/web", "starting")
    await d.put_task("api.1", "/shop/api", [31003])
    await d.put_status("api.1", "/shop/api", "running")


async def until_listed(d: Discovery, service: str, count: int) -> None:
    async with asyncio.timeout(10):
        while len(d.view.catalog.instances(service)) != count:
            await d.view.wait(None, d.view.index, 10)


async def test_services_and_service_entries_through_py_consul(discovery: Discovery) -> None:
    await seed(discovery)
    await until_listed(discovery, "api-shop", 1)
    c = discovery.consul()
    index, services = await asyncio.to_thread(c.catalog.services)
    assert services == {"api-shop": [], "web-shop": ["frontend", "http", "v1"]}
    assert int(index) >= 1

    _, entries = await asyncio.to_thread(c.catalog.service, "web-shop")
    assert sorted((e["ServiceID"], e["ServicePort"]) for e in entries) == [
        ("web.1:0", 31001), ("web.2:0", 31002)]  # the catalog lists starting tasks too
    entry = entries[0]
    assert entry["Node"] == "n1" and entry["Address"] == "127.0.0.1"
    assert entry["ServiceAddress"] == "127.0.0.1" and entry["ServiceName"] == "web-shop"
    assert entry["ServiceMeta"]["app_id"] == "/shop/web"
    assert entry["NodeMeta"]["zone"] == "1a"

    _, tagged = await asyncio.to_thread(c.catalog.service, "web-shop", tag="V1")
    assert len(tagged) == 2
    _, none = await asyncio.to_thread(c.catalog.service, "web-shop", tag="v2")
    assert none == []
    _, unknown = await asyncio.to_thread(c.catalog.service, "nope")
    assert unknown == []


async def test_health_service_lists_checks_and_filters_passing(discovery: Discovery) -> None:
    await seed(discovery)
    await until_listed(discovery, "web-shop", 2)
    c = discovery.consul()
    _, everything = await asyncio.to_thread(c.health.service, "web-shop")
    assert len(everything) == 2
    by_task = {e["Service"]["Meta"]["task_id"]: e for e in everything}
    starting = by_task["web.2"]
    assert starting["Node"]["Node"] == "n1" and starting["Node"]["Address"] == "127.0.0.1"
    assert starting["Service"]["Port"] == 31002 and starting["Service"]["Service"] == "web-shop"
    assert [(ch["CheckID"], ch["Status"]) for ch in starting["Checks"]] == [
        ("serfHealth", "passing"), ("service:web.2:0", "critical"),
        ("service:web.2:0:1", "critical")]
    assert {ch["Status"] for ch in by_task["web.1"]["Checks"]} == {"passing"}

    _, passing = await asyncio.to_thread(c.health.service, "web-shop", passing=True)
    assert [e["Service"]["ID"] for e in passing] == ["web.1:0"]
    _, both_tags = await asyncio.to_thread(
        c.health.service, "web-shop", passing=True, tag=["v1", "frontend"])
    assert len(both_tags) == 1


async def test_blocking_query_returns_when_a_task_turns_healthy(discovery: Discovery) -> None:
    await seed(discovery)
    await until_listed(discovery, "web-shop", 2)
    c = discovery.consul()
    index, passing = await asyncio.to_thread(c.health.service, "web-shop", passing=True)
    assert len(passing) == 1
    blocked = asyncio.ensure_future(asyncio.to_thread(
        c.health.service, "web-shop", passing=True, index=index, wait="60s"))
    unrelated = asyncio.ensure_future(asyncio.to_thread(
        c.health.service, "api-shop", index=discovery.view.service_index("api-shop"),
        wait="60s"))
    await asyncio.sleep(0.3)
    assert not blocked.done()
    await discovery.put_status("web.2", "/shop/web", "running", "healthy")
    new_index, now_passing = await asyncio.wait_for(blocked, 30)
    assert int(new_index) > int(index)
    assert sorted(e["Service"]["ID"] for e in now_passing) == ["web.1:0", "web.2:0"]
    assert not unrelated.done()  # api-shop did not change: its watchers sleep on
    await discovery.put_task("api.1", "/shop/api", [31003], desired="stop")  # release it
    _, api = await asyncio.wait_for(unrelated, 30)
    assert api == []


async def test_blocking_on_the_catalog_and_wait_expiry(discovery: Discovery) -> None:
    await seed(discovery)
    await until_listed(discovery, "api-shop", 1)
    c = discovery.consul()
    index, _ = await asyncio.to_thread(c.catalog.services)
    again, _ = await asyncio.to_thread(c.catalog.services, index=index, wait="100ms")
    assert again == index  # nothing changed: the same index after the wait
    blocked = asyncio.ensure_future(asyncio.to_thread(c.catalog.services, index=index,
                                                      wait="60s"))
    await discovery.put_app("/shop/cart")
    await discovery.put_task("cart.1", "/shop/cart", [31009])
    await discovery.put_status("cart.1", "/shop/cart")
    new_index, services = await asyncio.wait_for(blocked, 30)
    assert int(new_index) > int(index) and "cart-shop" in services


async def test_nodes_node_datacenters_status_and_agent_self(discovery: Discovery) -> None:
    await seed(discovery)
    await until_listed(discovery, "api-shop", 1)
    c = discovery.consul()
    _, nodes = await asyncio.to_thread(c.catalog.nodes)
    assert [(n["Node"], n["Address"], n["Datacenter"]) for n in nodes] == [
        ("n1", "127.0.0.1", "dc1")]
    _, node = await asyncio.to_thread(c.catalog.node, "n1")
    assert sorted(node["Services"]) == ["api.1:0", "web.1:0", "web.2:0"]
    _, missing = await asyncio.to_thread(c.catalog.node, "n9")
    assert missing is None
    assert await asyncio.to_thread(c.catalog.datacenters) == ["dc1"]
    leader = await asyncio.to_thread(c.status.leader)
    assert leader.startswith("127.0.0.1:")
    assert await asyncio.to_thread(c.status.peers) == [leader]
    # py-consul sends no token with agent.self (an ACL-enabled Consul refuses it too)
    c.token = discovery.token
    with pytest.raises(consul.ACLDisabled):
        await asyncio.to_thread(c.agent.self)
    async with httpx.AsyncClient(headers={"X-Consul-Token": discovery.token}) as http:
        me = (await http.get(f"{discovery.url}/v1/agent/self")).json()
    assert me["Config"]["Datacenter"] == "dc1" and me["Config"]["NodeName"] == "n1"
    _, checks = await asyncio.to_thread(c.health.node, "n1")
    assert checks[0]["CheckID"] == "serfHealth"
    assert len(checks) == 1 + 1 + 2 + 2  # serf, api's state check, web's state and HTTP x2
    _, critical = await asyncio.to_thread(c.health.state, "critical")
    assert {ch["ServiceID"] for ch in critical} == {"web.2:0"}


async def test_every_answer_carries_the_consul_headers_errors_too(discovery: Discovery) -> None:
    await seed(discovery)
    await until_listed(discovery, "api-shop", 1)
    async with httpx.AsyncClient(base_url=discovery.url,
                                 headers={"X-Consul-Token": discovery.token}) as http:
        for path, status in [
            ("/v1/catalog/services", 200),
            ("/v1/catalog/service/nope", 200),
            ("/v1/health/service/web-shop?passing", 200),
            ("/v1/catalog/services?dc=dc2", 500),
            ("/v1/catalog/services?index=abc", 400),
            ("/v1/catalog/services?index=1&wait=soon", 400),
            ("/v1/catalog/nodes?node-meta=nocolon", 400),
            ("/v1/health/state/sideways", 400),
            ("/v1/health/service/web-shop?filter=Service.Port%20%3D%3D%2080", 400),
        ]:
            r = await http.get(path)
            assert r.status_code == status, path
            assert int(r.headers["X-Consul-Index"]) >= 1, path
            assert r.headers["X-Consul-KnownLeader"] == "true", path
            assert r.headers["X-Consul-LastContact"] == "0", path
        r = await http.get("/v1/catalog/services?dc=dc2")
        assert r.text == "No path to datacenter"
        r = await http.get("/v1/catalog/services?dc=dc1&stale&consistent")
        assert r.status_code == 200
        r = await http.get("/v1/health/service/WEB-SHOP?passing=false")
        assert len(r.json()) == 2  # names ignore case; passing=false does not filter
        r = await http.get("/v1/catalog/nodes?node-meta=zone:1a")
        assert len(r.json()) == 1
        r = await http.get("/v1/catalog/nodes?node-meta=zone:1b")
        assert r.json() == []
