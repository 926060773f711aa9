"""The router as a process: table swaps under load, draining, acknowledgements, restarts with
the control plane away, and SIGTERM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_router_support import (
    ControlPlane,
    Env,
    RouterProcess,
    Upstream,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[Upstream, Upstream]]:
    a, b = await Upstream("a").start(), await Upstream("b").start()
    yield a, b
    await a.stop()
    await b.stop()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    cp = await ControlPlane().start()
    router = RouterProcess(tmp_path / "state", cp.url)
    try:
        await router.start()
        yield Env(cp, router)
        assert await router.stop() == 0
        assert "Traceback" not in router.logs(), router.logs()
    finally:
        await router.stop()
        await cp.stop()


async def get(client: httpx.AsyncClient, env: Env, path: str = "/") -> httpx.Response:
    return await client.get(f"{env.router.url}{path}", headers={"Host": "www.localhost"},
                            timeout=30)


async def test_in_flight_requests_finish_on_a_removed_server(
        env: Env, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    await env.route_one("Host(`www.localhost`)", a)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as c:
        slow = [asyncio.create_task(get(c, env, "/slow?s=1.5")) for _ in range(10)]
        await wait_until(lambda: a.requests >= 10, 10, "requests in flight on a")
        revision = await env.route_one("Host(`www.localhost`)", b)
        ack = env.cp.acked(revision)
        assert ack is not None and ack["router"] == "test-router"
        assert ack["inflight"] == {a.url: 10}  # the control plane must wait for these
        # new requests go to b at once, the old ones finish on a
        assert (await get(c, env)).headers["x-upstream"] == "b"
        answers = await asyncio.gather(*slow)
        assert [r.status_code for r in answers] == [200] * 10
        assert {r.headers["x-upstream"] for r in answers} == {"a"}
    # once drained, the router says so
    await wait_until(lambda: [x for x in env.cp.acks
                              if x["revision"] == revision and x["inflight"] == {a.url: 0}],
                     10, "an ack with a drained")
    # and it keeps no connection to a
    await wait_until(lambda: not a._writers, 10, "connections to a closed")


async def test_no_request_fails_while_tables_swap(env: Env,
                                                  upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    await env.route_one("Host(`www.localhost`)", a)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        async with httpx.AsyncClient() as c:
            while not stop.is_set():
                statuses.append((await get(c, env, "/slow?s=0.01")).status_code)

    workers = [asyncio.create_task(load()) for _ in range(8)]
    for servers in ([b], [a, b], [a], [b], [a]):
        await asyncio.sleep(0.2)
        await env.route_one("Host(`www.localhost`)", *servers)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*workers)
    assert len(statuses) > 50
    assert set(statuses) == {200}
    assert a.requests > 0 and b.requests > 0


async def test_a_broken_table_changes_nothing(env: Env,
                                              upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    revision = await env.route_one("Host(`www.localhost`)", a)
    env.cp.table = {"revision": revision + 1, "routers": "not a list", "services": {}}
    env.cp._changed.set()

    async def rejected() -> bool:
        async with httpx.AsyncClient() as c:
            view = (await c.get(f"{env.router.admin}/table")).json()
        return "rejected" in view["control_plane"]["last_error"] and view["revision"] == revision

    await wait_until(rejected, 10, "the broken table to be rejected")
    async with httpx.AsyncClient() as c:
        assert (await get(c, env)).headers["x-upstream"] == "a"


async def test_serves_its_saved_table_while_the_control_plane_is_down(
        tmp_path: Path, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    cp = await ControlPlane().start()
    cp_port = cp.port
    first = RouterProcess(tmp_path / "state", cp.url)
    second = RouterProcess(tmp_path / "state", cp.url)
    try:
        await first.start()
        await Env(cp, first).route_one("Host(`www.localhost`)", a)
        saved = json.loads((tmp_path / "state" / "table.json").read_text())
        assert saved["services"]["web"]["servers"][0]["url"] == a.url
        assert await first.stop() == 0
        await cp.stop()  # the control plane is gone too

        await second.start()
        async with httpx.AsyncClient() as c:
            r = await c.get(f"{second.url}/", headers={"Host": "www.localhost"})
            assert r.headers["x-upstream"] == "a"  # served at once, from disk
            view = (await c.get(f"{second.admin}/table")).json()
            assert view["control_plane"]["connected"] is False

            # the control plane comes back with news: the router follows
            cp = ControlPlane()
            cp.port = cp_port
            await cp.start()
            cp.table["revision"] = saved["revision"]
            revision = await Env(cp, second).route_one("Host(`www.localhost`)", b)
            assert revision == saved["revision"] + 1
            r = await c.get(f"{second.url}/", headers={"Host": "www.localhost"})
            assert r.headers["x-upstream"] == "b"
        assert await second.stop() == 0
    finally:
        await first.stop()
        await second.stop()
        await cp.stop()


async def test_keeps_serving_when_the_control_plane_dies(
        env: Env, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    await env.route_one("Host(`www.localhost`)", a)
    await env.cp.stop()
    async with httpx.AsyncClient() as c:
        for _ in range(5):
            assert (await get(c, env)).status_code == 200
            await asyncio.sleep(0.1)


async def test_sigterm_lets_in_flight_requests_finish(
        env: Env, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    await env.route_one("Host(`www.localhost`)", a)
    async with httpx.AsyncClient() as c:
        pending = asyncio.create_task(get(c, env, "/slow?s=1"))
        await wait_until(lambda: a.requests >= 1, 10, "the request to reach the upstream")
        stopping = asyncio.create_task(env.router.stop())
        r = await pending
        assert r.status_code == 200
        assert r.headers["connection"] == "close"
        assert await stopping == 0
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as c:
            await get(c, env)
