"""`--workers N`: processes sharing the port, one table, acknowledgements added up."""

from __future__ import annotations

import asyncio
import os
import signal
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
    router = RouterProcess(tmp_path / "state", cp.url, "--workers", "2")
    try:
        await router.start()
        yield Env(cp, router)
    finally:
        await router.stop()
        await cp.stop()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def worker_pids(router: RouterProcess) -> list[int]:
    assert router.proc is not None
    return children(router.proc.pid)


async def one_request_per_connection(env: Env, path: str, count: int) -> list[httpx.Response]:
    async def one() -> httpx.Response:
        async with httpx.AsyncClient() as c:  # a new connection each: the kernel spreads them
            return await c.get(f"{env.router.url}{path}", headers={"Host": "www.localhost"},
                               timeout=30)

    return await asyncio.gather(*(one() for _ in range(count)))


async def test_workers_share_the_port_and_the_metrics_add_up(
        env: Env, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    await env.route_one("Host(`www.localhost`)", a)
    assert len(worker_pids(env.router)) == 1  # the parent serves too
    answers = await one_request_per_connection(env, "/", 60)
    assert {r.status_code for r in answers} == {200}

    async def counted() -> bool:
        async with httpx.AsyncClient() as c:
            text = (await c.get(f"{env.router.admin}/metrics")).text
        return 'kade_router_requests_total{router="web",service="web",code="2xx"} 60' in text

    await wait_until(counted, 10, "60 requests in the metrics of both processes")
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"{env.router.admin}/table")).json()["workers"] == 2


async def test_drain_is_counted_over_all_workers(
        env: Env, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    await env.route_one("Host(`www.localhost`)", a)
    slow = asyncio.ensure_future(one_request_per_connection(env, "/slow?s=2", 16))
    await wait_until(lambda: a.requests >= 16, 10, "16 requests in flight on a")
    revision = await env.route_one("Host(`www.localhost`)", b)
    ack = env.cp.acked(revision)
    assert ack is not None and ack["inflight"] == {a.url: 16}
    answers = await slow
    assert {r.headers["x-upstream"] for r in answers} == {"a"}
    await wait_until(lambda: [x for x in env.cp.acks
                              if x["revision"] == revision and x["inflight"] == {a.url: 0}],
                     10, "an ack with a drained")
    answers = await one_request_per_connection(env, "/", 10)
    assert {r.headers["x-upstream"] for r in answers} == {"b"}


async def test_a_dead_worker_is_replaced(env: Env, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    await env.route_one("Host(`www.localhost`)", a)
    (first,) = worker_pids(env.router)
    os.kill(first, signal.SIGKILL)
    await wait_until(lambda: worker_pids(env.router) not in ([], [first]), 20,
                     "a new worker process")
    answers = await one_request_per_connection(env, "/", 20)
    assert {r.status_code for r in answers} == {200}


async def test_sigterm_drains_every_worker(env: Env,
                                           upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    await env.route_one("Host(`www.localhost`)", a)
    pids = worker_pids(env.router)
    slow = asyncio.ensure_future(one_request_per_connection(env, "/slow?s=1", 12))
    await wait_until(lambda: a.requests >= 12, 10, "12 requests in flight")
    assert await env.router.stop() == 0
    answers = await slow
    assert [r.status_code for r in answers] == [200] * 12
    assert not any(alive(pid) for pid in pids)
    assert "Traceback" not in env.router.logs(), env.router.logs()


async def test_every_worker_times_out_bodies_and_replaces_forwarding_headers(
        tmp_path: Path, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    cp = await ControlPlane().start()
    router = RouterProcess(tmp_path / "state", cp.url, "--workers", "2", "--body-timeout", "1",
                           "--trusted-proxies", "10.0.0.0/8")
    writers: list[asyncio.StreamWriter] = []
    try:
        await router.start()
        await Env(cp, router).route_one("PathPrefix(`/`)", a)
        await wait_until(lambda: len(worker_pids(router)) == 1, 20, "the second worker")
        readers = []
        for _ in range(16):  # spread over both processes by the kernel
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(b"POST /sink HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n"
                         b"Content-Length: 100\r\n\r\nstalled")
            readers.append(reader)
            writers.append(writer)
        await wait_until(lambda: a.requests >= 16, 20, "the requests at the upstream")
        for reader in readers:
            async with asyncio.timeout(15):
                assert (await reader.read()).startswith(b"HTTP/1.1 408 ")
        assert {dict((k.lower(), v) for k, v in s["headers"])["x-forwarded-for"]
                for s in a.seen} == {"127.0.0.1"}
        assert await router.stop() == 0
    finally:
        for writer in writers:
            writer.close()
        await router.stop()
        await cp.stop()
