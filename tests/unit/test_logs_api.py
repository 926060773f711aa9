"""`/v1/logs` over real log stores (filled directly), served by a real uvicorn on loopback:
the local store of `kade up`, and a server's fan-out to two nodes' listeners."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from kade import model
from kade.api.app import create_app
from kade.api.closing import closing_event
from kade.api.logs import logs_router
from kade.api.node_api import ServerKeys, node_api
from kade.auth.assertions import HEADER, ServerKey
from kade.auth.tokens import create_token
from kade.logs.fanout import FanOut, publish_key
from kade.logs.record import LogLine, TaskLog
from kade.logs.store import LogStore
from kade.store import SqliteStore
from tests.unit.test_remote_store import free_port

S = 10**9
T0 = 1_764_522_000 * S


def line(t: float, task: str, text: str, node: str = "n1", stream: str = "stdout",
         seq: int = 0) -> LogLine:
    return LogLine(time=T0 + int(t * S), app="/shop/web", task=task, version="v1", node=node,
                   stream=stream, line=text, seq=seq)  # type: ignore[arg-type]


async def fill(store: LogStore, node: str, task: str, offset: float) -> None:
    await store.task_started(TaskLog(task, "/shop/web", "v1", node, started=T0))
    await store.append([line(offset, task, f"GET / {task}", node),
                        line(offset + 1, task, f"ERROR timeout {task}", node, "stderr"),
                        line(offset + 2, task, '{"level":"error","msg":"payment declined"}',
                             node),
                        line(offset + 3, task, '{"level":"info","msg":"ok"}', node)])


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def serve(app: ASGIApp) -> Served:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="off", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
        await asyncio.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", server, task)


@pytest.fixture
async def kstore(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store")
    yield store
    await store.close()


@pytest.fixture
async def local(tmp_path: Path, kstore: SqliteStore
                ) -> AsyncIterator[tuple[httpx.AsyncClient, LogStore]]:
    logs = await LogStore(tmp_path / "node").open()
    await fill(logs, "n1", "shop_web.a", 0)
    await fill(logs, "n1", "shop_web.b", 0.5)
    await logs.task_ended("shop_web.a", 3, "exited with code 3", T0 + 10 * S)
    app = create_app(kstore, extra=[logs_router(logs)])
    served = await serve(app)
    token, _ = await create_token(kstore, role="read", now=time.time())
    async with httpx.AsyncClient(base_url=served.url, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client, logs
    closing_event(app).set()
    await served.stop()
    await logs.close()


async def lines(client: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await client.get("/v1/logs", params=params)
    assert response.status_code == 200, response.text
    return response.text.splitlines()


async def test_an_app_merged_and_prefixed_one_task_plain(
        local: tuple[httpx.AsyncClient, LogStore]) -> None:
    client, _ = local
    assert (await lines(client, app="/shop/web"))[:3] == [
        "shop_web.a GET / shop_web.a", "shop_web.b GET / shop_web.b",
        "shop_web.a ERROR timeout shop_web.a"]
    assert await lines(client, task="shop_web.b", tail="1") == ['{"level":"info","msg":"ok"}']
    assert await lines(client, app="/shop/web", grep="ERROR|timeout", stream="stderr") == [
        "shop_web.a ERROR timeout shop_web.a", "shop_web.b ERROR timeout shop_web.b"]
    assert len(await lines(client, app="/shop/web", q="payment declined")) == 2
    assert len(await lines(client, app="/shop/web", where=["level=error"])) == 2
    assert await lines(client, app="/shop/web", since="1764522003.5") == [
        'shop_web.b {"level":"info","msg":"ok"}']
    rows = [json.loads(x) for x in await lines(client, app="/shop/web", format="json",
                                                 tail="2")]
    assert rows == [{"time": 1764522003.0, "app": "/shop/web", "task": "shop_web.a",
                     "version": "v1", "node": "n1", "stream": "stdout",
                     "line": '{"level":"info","msg":"ok"}'},
                    {**rows[0], "time": 1764522003.5, "task": "shop_web.b"}]
    # the older endpoint, from the store
    response = await client.get("/v1/tasks/shop_web.a/logs", params={"tail": 2})
    assert response.text.splitlines() == ['{"level":"error","msg":"payment declined"}',
                                          '{"level":"info","msg":"ok"}']
    assert (await client.get("/v1/tasks/shop_web.zz/logs")).status_code == 404
    unknown = await client.get("/v1/tasks/shop_web.zz/logs", params={"follow": "true"})
    assert unknown.status_code == 404  # not a stream that waits forever


async def test_a_download_is_the_same_selection_as_a_file(
        local: tuple[httpx.AsyncClient, LogStore]) -> None:
    client, _ = local
    params = {"app": "/shop/web", "stream": "stderr"}
    shown = await client.get("/v1/logs", params=params)
    saved = await client.get("/v1/logs", params={**params, "download": "1"})
    assert saved.text == shown.text
    assert "content-disposition" not in shown.headers
    disposition = saved.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="logs-shop-web-')
    assert disposition.endswith('.txt"')
    as_json = await client.get("/v1/logs", params={"task": "shop_web.a", "format": "json",
                                                   "download": "true"})
    assert as_json.headers["content-disposition"].endswith('.ndjson"')
    assert "logs-shop_web.a-" in as_json.headers["content-disposition"]
    refused = await client.get("/v1/logs", params={**params, "download": "please"})
    assert refused.status_code == 400
    assert refused.json()["message"] == "download: 'please' must be true or false"


async def test_previous_tasks_with_how_they_ended(
        local: tuple[httpx.AsyncClient, LogStore]) -> None:
    client, _ = local
    text = await lines(client, app="/shop/web", previous="true")
    assert text[0] == ("--- shop_web.a on n1, version v1: exited with code 3 at "
                       "2025-11-30T17:00:10.000Z")
    assert text[1:] == ["GET / shop_web.a", "ERROR timeout shop_web.a",
                        '{"level":"error","msg":"payment declined"}',
                        '{"level":"info","msg":"ok"}']
    tasks = (await client.get("/v1/logs/tasks", params={"app": "/shop/web"})).json()
    assert [(t["task"], t["exitCode"]) for t in tasks["tasks"]] == [
        ("shop_web.a", 3), ("shop_web.b", None)]


async def test_refusals_name_the_parameter(local: tuple[httpx.AsyncClient, LogStore]) -> None:
    client, _ = local
    response = await client.get("/v1/logs", params={"app": "/shop/web", "since": "10x"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("since: '10x' is neither a duration")
    anonymous = await client.get("/v1/logs", params={"app": "/shop/web"},
                                 headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def sse_lines(response: httpx.Response, n: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    event = ""
    async for text in response.aiter_lines():
        if text.startswith("event: "):
            event = text[7:]
        elif text.startswith("data: "):
            out.append((event, json.loads(text[6:])))
            if len(out) == n:
                break
    return out


async def test_follow_sends_history_then_new_lines(
        local: tuple[httpx.AsyncClient, LogStore]) -> None:
    client, logs = local
    async with client.stream("GET", "/v1/logs", params={
            "app": "/shop/web", "follow": "1", "tail": "1"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        reading = asyncio.ensure_future(sse_lines(response, 2))
        await asyncio.sleep(0.2)
        await logs.append([line(9, "shop_web.b", "a new line")])
        got = await asyncio.wait_for(reading, 10)
    assert [(e, d["line"]) for e, d in got] == [("line", '{"level":"info","msg":"ok"}'),
                                               ("line", "a new line")]


@pytest.fixture
async def cluster(tmp_path: Path, kstore: SqliteStore
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, LogStore], str]]:
    key = ServerKey("s1")
    await publish_key(kstore, key, time.time())
    closing = asyncio.Event()
    stores: dict[str, LogStore] = {}
    listeners: list[Served] = []
    for i, node in enumerate(("n1", "n2")):
        stores[node] = await LogStore(tmp_path / node).open()
        await fill(stores[node], node, f"shop_web.{node}", i * 0.5)
        listeners.append(await serve(node_api(stores[node], node, ServerKeys(kstore),
                                              closing)))
        await kstore.put(model.node_key(node), model.Node(
            name=node, address="127.0.0.1", cpus=1, mem=1, api_url=listeners[-1].url).dump())
    await kstore.put(model.node_key("n3"), model.Node(  # its listener does not answer
        name="n3", address="127.0.0.1", cpus=1, mem=1,
        api_url=f"http://127.0.0.1:{free_port()}").dump())
    await kstore.put(model.node_key("n4"), model.Node(  # down: no alive/ key, not asked
        name="n4", address="127.0.0.1", cpus=1, mem=1, liveness_ttl=10,
        api_url="http://192.0.2.1:7410").dump())
    fanout = FanOut(kstore, key, timeout=2)
    app = create_app(kstore, extra=[logs_router(fanout)])
    served = await serve(app)
    token, _ = await create_token(kstore, role="read", now=time.time())
    async with httpx.AsyncClient(base_url=served.url, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client, stores, listeners[0].url
    closing.set()
    closing_event(app).set()
    for s in (served, *listeners):
        with contextlib.suppress(Exception):
            await s.stop()
    await fanout.close()
    for store in stores.values():
        await store.close()


async def test_a_server_merges_every_node_and_names_those_that_did_not_answer(
        cluster: tuple[httpx.AsyncClient, dict[str, LogStore], str]) -> None:
    client, _, _ = cluster
    response = await client.get("/v1/logs", params={"app": "/shop/web", "tail": "3"})
    assert response.headers["x-kade-unanswered"] == "n3,n4"
    assert response.text.splitlines() == [  # the last 3 of the merge
        'shop_web.n2 {"level":"error","msg":"payment declined"}',
        'shop_web.n1 {"level":"info","msg":"ok"}', 'shop_web.n2 {"level":"info","msg":"ok"}']
    merged = await lines(client, app="/shop/web")
    assert [x.split(" ", 1)[0] for x in merged] == ["shop_web.n1", "shop_web.n2"] * 4
    rows = [json.loads(x) for x in await lines(client, app="/shop/web", format="json",
                                                 where="level=info")]
    assert [r.get("node") for r in rows[:2]] == ["n1", "n2"]
    assert rows[2]["unanswered"][1] == {"node": "n3", "reason": rows[2]["unanswered"][1][
        "reason"]}
    assert rows[2]["unanswered"][1]["reason"].startswith("unreachable")
    assert rows[2]["unanswered"][0] == {"node": "n4", "reason": "down (its agent is not alive)"}
    tasks = (await client.get("/v1/logs/tasks", params={"app": "/shop/web"})).json()
    assert [t["node"] for t in tasks["tasks"]] == ["n1", "n2"]


async def test_a_server_follows_every_node(
        cluster: tuple[httpx.AsyncClient, dict[str, LogStore], str]) -> None:
    client, stores, _ = cluster
    async with client.stream("GET", "/v1/logs", params={
            "app": "/shop/web", "follow": "1", "tail": "2"}) as response:
        reading = asyncio.ensure_future(sse_lines(response, 5))
        await asyncio.sleep(0.5)
        await stores["n2"].append([line(9, "shop_web.n2", "new on n2", "n2")])
        got = await asyncio.wait_for(reading, 10)
    assert got[0] == ("unanswered", {"node": "n4", "reason": "down (its agent is not alive)"})
    assert got[1] == ("unanswered", {"node": "n3", "reason": got[1][1]["reason"]})
    assert [(d["node"], d["line"]) for _, d in got[2:]] == [
        ("n1", '{"level":"info","msg":"ok"}'), ("n2", '{"level":"info","msg":"ok"}'),
        ("n2", "new on n2")]


async def test_a_node_answers_only_what_a_server_signed_for_it(
        cluster: tuple[httpx.AsyncClient, dict[str, LogStore], str]) -> None:
    _, _, n1 = cluster
    path = "/node/v1/logs?app=%2Fshop%2Fweb"
    async with httpx.AsyncClient(base_url=n1) as node:
        response = await node.get(path)
        assert response.status_code == 401
        assert response.json()["message"].startswith("a node answers only servers")
        forged = ServerKey("s1").sign("n1", "GET", path, time.time())
        response = await node.get(path, headers={HEADER: forged})
        assert response.status_code == 401
        assert response.json()["message"] == "X-Kade-Assertion: the signature is not server s1's"


async def test_a_node_too_slow_is_named_and_the_rest_answered(
        cluster: tuple[httpx.AsyncClient, dict[str, LogStore], str], kstore: SqliteStore
        ) -> None:
    client, _, _ = cluster

    done = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()  # accepts, never answers
        writer.close()
        await writer.wait_closed()

    silent = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    await kstore.put(model.node_key("n5"), model.Node(
        name="n5", address="127.0.0.1", cpus=1, mem=1, api_url=f"http://127.0.0.1:{port}").dump())
    try:
        found = (await client.get("/v1/logs/tasks", params={"app": "/shop/web"})).json()
    finally:
        done.set()
        silent.close()
        await silent.wait_closed()
        await asyncio.sleep(0.1)  # the handler closes its connection
    assert [t["node"] for t in found["tasks"]] == ["n1", "n2"]
    assert {"node": "n5", "reason": "no answer within 2s"} in found["unanswered"]
