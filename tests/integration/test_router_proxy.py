"""The router's data path, against real upstream servers, through `python -m kade.router`."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from tests.integration.test_router_support import (
    ControlPlane,
    Env,
    RouterProcess,
    Upstream,
    free_port,
    raw_request,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

MakeUpstream = Callable[[str], Awaitable[Upstream]]


@pytest.fixture
async def upstream() -> AsyncIterator[MakeUpstream]:
    started: list[Upstream] = []

    async def make(name: str) -> Upstream:
        up = await Upstream(name).start()
        started.append(up)
        return up

    yield make
    for up in started:
        await up.stop()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    cp = await ControlPlane().start()
    router = RouterProcess(tmp_path / "state", cp.url, "--response-header-timeout", "2",
                           "--access-log", str(tmp_path / "access.log"))
    try:
        await router.start()
        yield Env(cp, router)
        assert await router.stop() == 0
        assert "Traceback" not in router.logs(), router.logs()
    finally:
        await router.stop()
        await cp.stop()


async def get(env: Env, path: str, host: str = "www.localhost",
              headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient() as c:
        return await c.get(f"{env.router.url}{path}", headers=headers or {"Host": host},
                           timeout=30)


async def test_routes_by_host_and_path(env: Env, upstream: MakeUpstream) -> None:
    web, api = await upstream("web"), await upstream("api")
    await env.route(
        [{"name": "web", "rule": "Host(`www.localhost`)", "service": "web", "app": "/web"},
         {"name": "api", "rule": "Host(`www.localhost`) && PathPrefix(`/api`)",
          "service": "api", "app": "/api"}],
        {"web": {"servers": [{"url": web.url, "task": "w"}]},
         "api": {"servers": [{"url": api.url, "task": "a"}]}},
    )
    assert (await get(env, "/")).headers["x-upstream"] == "web"
    assert (await get(env, "/api/users?id=1")).headers["x-upstream"] == "api"
    assert (await get(env, "/api/users?id=1")).json()["target"] == "/api/users?id=1"
    assert (await get(env, "/", host="WWW.localhost:80")).headers["x-upstream"] == "web"
    missing = await get(env, "/", host="nowhere.localhost")
    assert missing.status_code == 404
    assert missing.text == "404 page not found\n"


async def test_round_robin_over_servers(env: Env, upstream: MakeUpstream) -> None:
    a, b = await upstream("a"), await upstream("b")
    await env.route_one("PathPrefix(`/`)", a, b)
    names = [(await get(env, "/")).headers["x-upstream"] for _ in range(6)]
    assert sorted(names) == ["a", "a", "a", "b", "b", "b"]


async def test_keep_alive_to_clients_and_upstreams(env: Env, upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`)", up)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as c:
        for _ in range(20):
            r = await c.get(f"{env.router.url}/", headers={"Host": "www.localhost"})
            assert r.status_code == 200
    assert up.requests == 20
    assert up.connections == 1  # one pooled upstream connection served them all


async def test_hop_by_hop_and_forwarded_headers(env: Env, upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`)", up)
    r = await get(env, "/", headers={
        "Host": "www.localhost:8000", "X-Forwarded-For": "203.0.113.9",
        "X-Real-IP": "6.6.6.6", "X-Forwarded-Host": "evil", "Connection": "keep-alive, X-Secret",
        "X-Secret": "s", "Keep-Alive": "timeout=5", "TE": "trailers", "Proxy-Authorization": "x",
        "X-Custom": "kept",
    })
    seen = {k.lower(): v for k, v in r.json()["headers"]}
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the client is no trusted proxy
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "www.localhost:8000"
    assert seen["x-forwarded-port"] == "8000"
    assert seen["host"] == "www.localhost:8000"
    assert seen["x-custom"] == "kept"
    for hop in ("x-secret", "keep-alive", "te", "proxy-authorization", "connection"):
        assert hop not in seen
    # the upstream's own hop-by-hop headers do not reach the client
    assert "keep-alive" not in r.headers
    assert r.headers.get("connection") is None


async def test_chunked_request_and_response(env: Env, upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`)", up)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(10):
            yield f"piece {i};".encode()

    async with httpx.AsyncClient() as c:
        r = await c.post(f"{env.router.url}/sink", headers={"Host": "www.localhost"},
                         content=pieces())
        sent = b"".join(f"piece {i};".encode() for i in range(10))
        assert r.json()["body_sha256"] == hashlib.sha256(sent).hexdigest()
        assert ["transfer-encoding", "chunked"] in [
            [k.lower(), v] for k, v in r.json()["headers"]]
        r = await c.get(f"{env.router.url}/chunked?n=7", headers={"Host": "www.localhost"})
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.text == "".join(f"chunk {i}\n" for i in range(7))


async def test_a_repeated_answer_reads_the_same(env: Env, upstream: MakeUpstream) -> None:
    # the second answer with a head seen before takes a shorter path: same bytes out
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`)", up)
    reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)
    answers = []
    async with asyncio.timeout(10):
        for _ in range(3):
            writer.write(b"GET /fixed HTTP/1.1\r\nHost: www.localhost\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            answers.append(head + await reader.readexactly(6))
        writer.write(b"GET /fixed HTTP/1.0\r\nHost: www.localhost\r\nConnection: keep-alive"
                     b"\r\n\r\n")
        http10 = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert answers[0] == answers[1] == answers[2]
    assert answers[0] == (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Upstream: web\r\n"
                          b"X-Conn: 1\r\n\r\nfixed\n")
    assert http10.endswith(b"X-Conn: 1\r\nconnection: keep-alive\r\n\r\n")
    assert up.connections == 1


async def test_a_repeated_request_is_forwarded_the_same(env: Env,
                                                         upstream: MakeUpstream) -> None:
    # from the third time on, a request seen before skips the request parser: same result
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`) && Path(`/same`)", up)
    request = (b"GET /same?q=1 HTTP/1.1\r\nHost: www.localhost\r\nX-Forwarded-For: 203.0.113.9"
               b"\r\nX-Real-IP: 6.6.6.6\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)
    async with asyncio.timeout(10):
        for _ in range(4):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.write(b"HEAD /same?q=1 HTTP/1.1\r\nHost: www.localhost\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
    writer.close()
    assert [s["target"] for s in up.seen] == ["/same?q=1"] * 4 + ["/same?q=1"]
    first = up.seen[0]["headers"]
    assert all(s["headers"] == first for s in up.seen[1:4])
    seen = {k.lower(): v for k, v in first}
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-real-ip"] == "127.0.0.1"
    assert "x-secret" not in seen and "connection" not in seen
    assert up.seen[4]["method"] == "HEAD"


async def test_a_body_that_ends_with_the_connection_is_rechunked(
        env: Env, upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`)", up)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as c:
        r = await c.get(f"{env.router.url}/until-close", headers={"Host": "www.localhost"})
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.text == "all of it, then EOF"
        # the client connection stays usable: the end was framed for it
        r = await c.get(f"{env.router.url}/", headers={"Host": "www.localhost"})
        assert r.status_code == 200


async def test_expect_100_continue(env: Env, upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`)", up)
    reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)
    writer.write(b"PUT /sink HTTP/1.1\r\nHost: www.localhost\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    async with asyncio.timeout(10):
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"hello")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_twenty_megabytes_stream_both_ways(env: Env, upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`)", up)
    size = 20 * 1024 * 1024
    block = hashlib.sha256(b"kade").digest() * 2048  # 64 KiB
    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            sent.update(block)
            yield block

    before = env.router.memory_peak_kib()
    # the upstream streams the body back while it still arrives: chunked both ways, both at
    # once (a client that only reads once it has sent everything would block both sides)
    reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)

    async def send() -> None:
        writer.write(b"POST /echo-body HTTP/1.1\r\nHost: www.localhost\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        async for piece in body():
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def receive() -> tuple[int, str]:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
        got = hashlib.sha256()
        count = 0
        while True:
            n = int(await reader.readline(), 16)
            if n == 0:
                await reader.readline()
                return count, got.hexdigest()
            got.update(await reader.readexactly(n))
            count += n
            await reader.readexactly(2)

    async with asyncio.timeout(60):
        _, (count, digest) = await asyncio.gather(send(), receive())
    writer.close()
    assert count == size
    assert digest == sent.hexdigest()
    async with httpx.AsyncClient(timeout=60) as c:
        # sized both ways
        r = await c.post(f"{env.router.url}/sink", headers={"Host": "www.localhost"},
                         content=block * (size // len(block)))
        assert r.json()["body_size"] == size
        big = hashlib.sha256()
        async with c.stream("GET", f"{env.router.url}/big?size={size}",
                            headers={"Host": "www.localhost"}) as r:
            assert r.headers["content-length"] == str(size)
            async for piece in r.aiter_raw():
                big.update(piece)
        expected = hashlib.sha256((bytes(range(256)) * 256) * (size // 65536)).hexdigest()
        assert big.hexdigest() == expected
    # nothing was held whole: the router's peak memory grew by far less than one body
    assert env.router.memory_peak_kib() - before < 10 * 1024


async def test_websocket_echo_through_the_router(env: Env) -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with ws_serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        await env.route_one("PathPrefix(`/ws`)", f"http://127.0.0.1:{port}")
        async with ws_connect(f"ws://127.0.0.1:{env.router.port}/ws") as ws:
            for text in ("hello", "x" * 100_000, "bye"):
                await ws.send(text)
                assert await ws.recv() == text
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"


async def test_retry_when_a_pooled_connection_was_closed(env: Env,
                                                         upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`)", up)
    async with httpx.AsyncClient() as c:
        for _ in range(3):
            # each second request on an upstream connection finds it closed: retried fresh
            r = await c.get(f"{env.router.url}/drop-second", headers={"Host": "www.localhost"})
            assert r.status_code == 200
        assert up.connections >= 2
        # not idempotent: not retried, the client learns the upstream broke
        r = await c.post(f"{env.router.url}/drop-second", headers={"Host": "www.localhost"},
                         content=b"x")
        assert r.status_code == 502


async def test_a_get_whose_server_died_with_it_is_retried_on_another(
        env: Env, upstream: MakeUpstream) -> None:
    dying, healthy = await upstream("dying"), await upstream("healthy")
    dying.dying = True
    await env.route_one("Host(`www.localhost`)", dying, healthy)
    for _ in range(4):  # fresh connections closed before any answer: retried elsewhere
        r = await get(env, "/")
        assert r.status_code == 200 and r.json()["server"] == "healthy"
    assert dying.requests >= 1


async def test_connect_failure_tries_another_server(env: Env, upstream: MakeUpstream) -> None:
    up = await upstream("web")
    dead = f"http://127.0.0.1:{free_port()}"
    await env.route_one("Host(`www.localhost`)", dead, up)
    for _ in range(4):
        assert (await get(env, "/")).status_code == 200


async def test_gateway_errors(env: Env, upstream: MakeUpstream) -> None:
    up = await upstream("web")
    dead = f"http://127.0.0.1:{free_port()}"
    await env.route(
        [{"name": "dead", "rule": "Host(`dead.localhost`)", "service": "dead"},
         {"name": "empty", "rule": "Host(`empty.localhost`)", "service": "empty"},
         {"name": "web", "rule": "Host(`www.localhost`)", "service": "web"}],
        {"dead": {"servers": [{"url": dead}]}, "empty": {"servers": []},
         "web": {"servers": [{"url": up.url}]}},
    )
    r = await get(env, "/", host="dead.localhost")
    assert (r.status_code, r.text) == (502, "502 Bad Gateway\n")
    r = await get(env, "/", host="empty.localhost")
    assert (r.status_code, r.text) == (503, "no available server\n")
    r = await get(env, "/slow?s=5")  # the router waits 2 s for a response head here
    assert (r.status_code, r.text) == (504, "504 Gateway Timeout\n")
    # an upstream that breaks off half-way: the client sees the connection cut, not a 200
    with pytest.raises(httpx.RemoteProtocolError):
        await get(env, "/cut")
    assert (await get(env, "/")).status_code == 200  # and the router is fine


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST / HTTP/1.1\r\nHost: www.localhost\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: www.localhost\r\nContent-Length: 3, 4\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: www.localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n"
     b"\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: www.localhost\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: www.localhost\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: www.localhost\r\n"
     + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 200) for i in range(200)) + b"\r\n", 431),
    (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: www.localhost\r\n\r\n", 414),
    (b"CONNECT www.localhost:443 HTTP/1.1\r\nHost: www.localhost:443\r\n\r\n", 405),
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
])
async def test_bad_requests_are_refused(env: Env, upstream: MakeUpstream, request_bytes: bytes,
                                        status: int) -> None:
    up = await upstream("web")
    await env.route_one("PathPrefix(`/`)", up)
    answer = await raw_request(env.router.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"connection: close" in answer.lower()
    assert up.requests == 0  # nothing reached the upstream


async def test_pipelined_requests_are_answered_in_order(env: Env,
                                                        upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route_one("PathPrefix(`/`)", up)
    requests = b"".join(
        b"GET /%d HTTP/1.1\r\nHost: www.localhost\r\n\r\n" % i for i in range(5)
    ) + b"GET /last HTTP/1.1\r\nHost: www.localhost\r\nConnection: close\r\n\r\n"
    answer = await raw_request(env.router.port, requests)
    targets = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["target"]
               for part in answer.split(b"HTTP/1.1 200 OK")[1:]]
    assert targets == ["/0", "/1", "/2", "/3", "/4", "/last"]


async def test_head_no_content_and_http10(env: Env, upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route_one("PathPrefix(`/`)", up)
    async with httpx.AsyncClient() as c:
        for _ in range(2):  # twice: the connection stays usable after a HEAD
            r = await c.head(f"{env.router.url}/big?size=5000", headers={"Host": "x"})
            assert r.status_code == 200 and r.headers["content-length"] == "5000"
            assert r.content == b""
        r = await c.get(f"{env.router.url}/status?code=204", headers={"Host": "x"})
        assert r.status_code == 204 and r.content == b""
        r = await c.get(f"{env.router.url}/status?code=304", headers={"Host": "x"})
        assert r.status_code == 304
        assert (await c.get(f"{env.router.url}/", headers={"Host": "x"})).status_code == 200
    # HTTP/1.0 client, chunked upstream answer: close-delimited, no chunk framing
    answer = await raw_request(env.router.port, b"GET /chunked?n=3 HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"chunk 0\nchunk 1\nchunk 2\n"
    # HTTP/1.0 with keep-alive
    answer = await raw_request(
        env.router.port,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", read_timeout=1)
    assert b"connection: keep-alive" in answer.lower()


async def test_slow_client_header_timeout(tmp_path: Path, upstream: MakeUpstream) -> None:
    cp = await ControlPlane().start()
    router = RouterProcess(tmp_path / "state", cp.url, "--header-timeout", "1",
                           "--idle-timeout", "2")
    try:
        await router.start()
        up = await upstream("web")
        await Env(cp, router).route_one("PathPrefix(`/`)", up)
        # half a request head, then nothing: 408 and the connection closes
        answer = await raw_request(router.port, b"GET / HTTP/1.1\r\nHost: a\r\n", read_timeout=15)
        assert answer.startswith(b"HTTP/1.1 408 ")
        # an idle keep-alive client is let go too
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        async with asyncio.timeout(15):
            while await reader.read(65536):
                pass  # the router closes the idle connection
        writer.close()
    finally:
        await router.stop()
        await cp.stop()


async def test_access_log_and_metrics(env: Env, upstream: MakeUpstream, tmp_path: Path) -> None:
    up = await upstream("web")
    await env.route_one("Host(`www.localhost`)", up)
    for _ in range(3):
        assert (await get(env, "/hello?x=1")).status_code == 200
    assert (await get(env, "/", host="nope")).status_code == 404
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"{env.router.admin}/metrics")).text
        assert 'kade_router_requests_total{router="web",service="web",code="2xx"} 3' in text
        assert 'kade_service_requests_total{service="web",code="2xx"} 3' in text
        assert 'kade_router_requests_total{router="",service="",code="4xx"} 1' in text
        assert 'kade_router_request_duration_seconds_count{router="web",service="web"} 3' in text
        assert "# TYPE kade_router_request_duration_seconds histogram" in text
        view = (await c.get(f"{env.router.admin}/table")).json()
        assert view["table"]["routers"][0]["name"] == "web"
        assert view["control_plane"]["connected"] is True

    def lines() -> list[dict[str, object]]:
        path = tmp_path / "access.log"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    entries = await wait_until(lambda: len(lines()) >= 4 and lines(), 10, "access log lines")
    first = entries[0]
    assert {k: first[k] for k in ("client", "method", "host", "path", "status", "router",
                                  "service", "upstream")} == {
        "client": "127.0.0.1", "method": "GET", "host": "www.localhost", "path": "/hello?x=1",
        "status": 200, "router": "web", "service": "web", "upstream": up.url}
    assert isinstance(first["duration_ms"], float) and first["bytes"] > 0
    assert entries[3]["status"] == 404


async def test_router_rejects_a_bad_rule_and_serves_the_rest(env: Env,
                                                             upstream: MakeUpstream) -> None:
    up = await upstream("web")
    await env.route(
        [{"name": "bad", "rule": "Host(`a`) && Nope(`b`)", "service": "web"},
         {"name": "good", "rule": "Host(`www.localhost`)", "service": "web"}],
        {"web": {"servers": [{"url": up.url}]}},
    )
    assert (await get(env, "/")).status_code == 200
    async with httpx.AsyncClient() as c:
        view = (await c.get(f"{env.router.admin}/table")).json()
    assert view["errors"] == [{"app": "", "router": "bad",
                               "message": "rule `Host(`a`) && Nope(`b`)`: unknown matcher Nope "
                                          "at column 14"}]

