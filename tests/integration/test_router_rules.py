"""Traefik 3's rule semantics through a real router process (`python -m kade.router`):
v2 rules where the table says `ruleSyntax: v2`, wildcard hosts, the routing path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_router_support import (
    ControlPlane,
    Env,
    RouterProcess,
    Upstream,
    raw_request,
)

pytestmark = pytest.mark.timeout(120)


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


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = await Upstream("up").start()
    yield up
    await up.stop()


async def status(env: Env, target: str, host: str) -> tuple[int, bytes]:
    """The status line's code and the whole answer of one raw request (the target as sent)."""
    answer = await raw_request(env.router.port, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"
                                                f"Connection: close\r\n\r\n".encode())
    return int(answer.split(b" ", 2)[1]), answer


async def test_rules_in_both_syntaxes_wildcards_and_the_routing_path(
        env: Env, upstream: Upstream) -> None:
    servers = {"s": {"servers": [{"url": upstream.url, "task": "t"}]}}
    await env.route([
        {"name": "v2", "rule": "Host(`a.localhost`, `b.localhost`) && Path(`/item/{id:[0-9]+}`)",
         "ruleSyntax": "v2", "service": "s", "app": "/a"},
        {"name": "v2-unmarked", "rule": "Host(`c.localhost`, `d.localhost`)", "service": "s",
         "app": "/c"},
        {"name": "wild", "rule": "Host(`*.shop.localhost`)", "service": "s", "app": "/w"},
        {"name": "encoded", "rule": "Host(`e.localhost`) && Path(`/a%2Fb`)", "service": "s",
         "app": "/e"},
        {"name": "spaced", "rule": "Host(`e.localhost`) && Path(`/a b`)", "service": "s",
         "app": "/e"},
    ], servers)
    assert (await status(env, "/item/42", "b.localhost"))[0] == 200
    assert (await status(env, "/item/x", "b.localhost"))[0] == 404
    assert (await status(env, "/", "c.localhost"))[0] == 404  # a v2 rule read as v3: left out
    assert (await status(env, "/", "api.shop.localhost"))[0] == 200
    assert (await status(env, "/", "a.b.shop.localhost"))[0] == 404
    assert (await status(env, "/", "shop.localhost"))[0] == 404
    assert (await status(env, "/a%2Fb", "e.localhost"))[0] == 200
    assert upstream.seen[-1]["target"] == "/a%2Fb"  # forwarded as the client sent it
    assert (await status(env, "/a/b", "e.localhost"))[0] == 404  # %2F is not /
    assert (await status(env, "/a%20b", "e.localhost"))[0] == 200  # %20 is decoded
    async with httpx.AsyncClient() as c:
        errors = (await c.get(f"{env.router.admin}/table")).json()["errors"]
    assert [e["router"] for e in errors] == ["v2-unmarked"]
    assert "Host takes 1 value(s) in v3 syntax, got 2" in errors[0]["message"]
