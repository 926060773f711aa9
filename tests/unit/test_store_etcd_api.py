"""The API over the store on etcd: a Consul blocking query wakes on a delete made by another
server, and a write while etcd has no quorum is a 503 that says so while reads answer."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from kade.api.app import create_app
from kade.api.consul_kv import kv_router
from kade.auth import create_token
from kade.store import EtcdStore
from tests.etcd import EtcdCluster, store_on

pytestmark = pytest.mark.timeout(120)
NOW = 1_700_000_000.0


async def client(store: EtcdStore) -> tuple[httpx.AsyncClient, dict[str, str]]:
    app = create_app(store, clock=lambda: NOW, extra=[kv_router(store)])
    text, _ = await create_token(store, role="admin", now=NOW)
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                            base_url="http://127.0.0.1:7400")
    return api, {"Authorization": f"Bearer {text}"}


@pytest.fixture
async def two_servers(etcd_cluster: EtcdCluster) -> AsyncIterator[tuple[EtcdStore, EtcdStore]]:
    async with store_on(etcd_cluster) as a, store_on(etcd_cluster, a.ns.root) as b:
        yield a, b


async def test_a_blocking_query_wakes_on_a_delete_from_another_server(
        two_servers: tuple[EtcdStore, EtcdStore]) -> None:
    a, b = two_servers
    api, auth = await client(a)
    async with api:
        assert (await api.put("/v1/kv/app/db/host", content=b"10.0.0.5", headers=auth)).json()
        assert (await api.put("/v1/kv/app/db/port", content=b"5432", headers=auth)).json()
        first = await api.get("/v1/kv/app/?recurse", headers=auth)
        index = int(first.headers["X-Consul-Index"])
        blocked = asyncio.ensure_future(
            api.get(f"/v1/kv/app/?recurse&index={index}&wait=30s", headers=auth))
        await asyncio.sleep(0.3)
        assert not blocked.done()
        await b.delete("kv/app/db/port")  # another server; no put follows
        answer = await asyncio.wait_for(blocked, 20)
        assert int(answer.headers["X-Consul-Index"]) > index
        assert [e["Key"] for e in answer.json()] == ["app/db/host"]
        assert base64.b64decode(answer.json()[0]["Value"]) == b"10.0.0.5"


async def test_without_quorum_writes_are_503_and_reads_answer(
        etcd_cluster: EtcdCluster) -> None:
    async with store_on(etcd_cluster) as store:
        api, auth = await client(store)
        async with api:
            r = await api.put("/v1/kv/cfg/a", content=b"1", headers=auth)
            assert r.status_code == 200
            etcd_cluster.wait_revision(await store.revision())
            etcd_cluster.kill(1, 2)
            etcd_cluster.wait_until("no-leader")
            r = await api.put("/v1/kv/cfg/b", content=b"2", headers=auth)
            assert r.status_code == 503
            assert r.json()["message"] == (
                "the store (etcd) has no quorum: writes are refused until it returns")
            assert r.headers["Retry-After"] == "1"
            r = await api.get("/v1/kv/cfg/a?raw", headers=auth)
            assert r.status_code == 200 and r.content == b"1"
