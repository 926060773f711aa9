"""Metrics in a cluster: the binary format between a node and a server, the admission of a
node's select, and a server's Prometheus API over its own store and two nodes' listeners
(real metrics stores, real uvicorn on loopback), naming the nodes that did not answer."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from kade import model
from kade.admission.metrics import BadData, admit_node_select, selectors
from kade.api.app import create_app
from kade.api.node_api import ServerKeys, node_api
from kade.api.prometheus import MAX_HEADER, prometheus_router
from kade.auth.assertions import ServerKey
from kade.auth.tokens import create_token
from kade.fanout import NodeFanOut, Unanswered
from kade.logs.fanout import publish_key
from kade.logs.store import LogStore
from kade.metrics.promql import QueryError
from kade.metrics.remote import ClusterQuery, NodeMetrics, merge
from kade.metrics.series import Matcher, selector_text
from kade.metrics.tsdb import TSDB
from kade.metrics.wire import TooLarge, WireError, dump_series, load_series, select_answer
from kade.store import SqliteStore
from tests.unit.test_logs_api import Served, serve
from tests.unit.test_remote_store import free_port

CPU = (("__name__", "kade_task_cpu_seconds_total"), ("app", "/shop/web"), ("node", "n1"))


def test_series_cross_as_their_bytes_and_come_back_equal() -> None:
    series = [(CPU, [1000, 2000, 3000], [0.5, math.inf, math.nan]),
              ((("__name__", "up"), ("job", 'a"b\nc')), [5], [1.0]),
              ((("__name__", "empty"),), [], [])]
    data = dump_series(series)
    assert data.count(b"\n", 0, data.index(b"\n") + 1) == 1  # one header line
    assert len(data) - data.index(b"\n") - 1 == 16 * 4  # 8 bytes a time, 8 a value
    back = load_series(data)
    assert [labels for labels, _, _ in back] == [labels for labels, _, _ in series]
    assert back[0][1].dtype == np.int64 and back[0][1].tolist() == [1000, 2000, 3000]
    assert back[0][2][:2].tolist() == [0.5, math.inf] and math.isnan(back[0][2][2])
    assert back[1][2].tolist() == [1.0] and len(back[2][1]) == 0


@pytest.mark.parametrize(("data", "message"), [
    (b'{"series": [[[["__name__", "up"]], 2]]}', "no header line"),
    (b'{"series": [[[["__name__", "up"]], 2]]}\n' + bytes(16), "cut short"),
    (b'{"series": []}\nxx', "2 bytes after the last series"),
    (b'{"series": [["up", 1]]}\n' + bytes(16), "a series entry is [labels, count]"),
    (b'{"series": [[[["up"]], 1]]}\n' + bytes(16), "labels are [name, value] pairs"),
    (b'{"series": [[[], -1]]}\n', "a series entry is [labels, count]"),
    (b'<html>\n', "the header is not a series list"),
])
def test_an_answer_not_in_the_format_is_refused_saying_why(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_series(data)


@pytest.mark.parametrize("value", ["a\\.b", 'x"y', "é", "line\nbreak", "\x01", ""])
def test_matchers_sent_as_a_selector_parse_back_to_the_same_matchers(value: str) -> None:
    matchers = [Matcher.of("app", "=~", value), Matcher.of("job", "!=", value),
                Matcher.of("__name__", "=", "up")]
    [back] = selectors([selector_text(matchers)])
    assert [(m.name, m.op, m.value) for m in back] == [
        (m.name, m.op, m.value) for m in matchers]


def test_a_node_select_is_admitted_or_refused_naming_the_parameter() -> None:
    got = admit_node_select([("match[]", '{__name__="up"}'), ("start", "10"), ("end", "20")])
    assert [[m.value for m in s] for s in got.selectors] == [["up"]]
    assert (got.start, got.end, got.want) == (10, 20, "samples")
    every = admit_node_select([("start", "0"), ("end", "0"), ("want", "latest")])
    assert every.selectors == [[]] and every.want == "latest"
    for params, message in [
        ([("end", "20")], 'invalid parameter "start": is required'),
        ([("start", "1.5"), ("end", "2")], "'1.5' is not a time in integer milliseconds"),
        ([("start", "30"), ("end", "20")], "end timestamp must not be before start time"),
        ([("start", "0"), ("end", "1"), ("want", "all")], "'all' is not one of samples, "
                                                           "latest, labels"),
        ([("start", "0"), ("end", "1"), ("step", "5")], 'unknown parameter "step"'),
        ([("start", "0"), ("end", "1"), ("match[]", "rate(up[5m])")],
         "is not a series selector"),
    ]:
        with pytest.raises(BadData, match=message.replace("(", r"\(").replace("[", r"\[")):
            admit_node_select(params)


def test_a_node_answers_at_most_its_bounds(tmp_path: Path) -> None:
    db = TSDB(tmp_path / "m").open()
    now = int(time.time() * 1000)
    db.append([({"__name__": "up", "task": str(i)}, now - k * 1000, 1.0)
               for k in (2, 1) for i in range(3)])
    [up] = selectors(['{__name__="up"}'])
    assert len(load_series(select_answer(db, [up], now - 5000, now, "samples"))) == 3
    with pytest.raises(TooLarge, match="more than 2 series match"):
        select_answer(db, [up], now - 5000, now, "samples", max_series=2)
    with pytest.raises(TooLarge, match="too many samples"):
        select_answer(db, [up], now - 5000, now, "samples", max_samples=5)
    labels_only = load_series(select_answer(db, [up], now - 5000, now, "labels"))
    assert [len(t) for _, t, _ in labels_only] == [0, 0, 0]
    latest = load_series(select_answer(db, [[]], now - 5000, now, "latest"))
    assert [t.tolist() for _, t, _ in latest] == [[now - 1000]] * 3
    db.close()


def test_a_label_set_two_sources_have_is_merged_by_time() -> None:
    a = (CPU, np.array([1, 3]), np.array([1.0, 3.0]))
    b = (CPU, np.array([2, 3]), np.array([2.0, 3.5]))
    [(labels, times, values)] = merge([[a], [b]])
    assert times.tolist() == [1, 2, 3] and values.tolist() == [1.0, 2.0, 3.0]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """A server's API (its own store holds kade_node_up) over nodes n1 and n2 (each a real
    listener and store with a task's CPU), n3 (its listener does not answer) and n4 (down)."""
    kstore = SqliteStore(tmp_path / "store")
    key = ServerKey("s1")
    await publish_key(kstore, key, time.time())
    now = int(time.time() * 1000)


    closing = asyncio.Event()
    opened: list[Any] = []
    listeners: list[Served] = []
    for node in ("n1", "n2"):
        db = TSDB(tmp_path / node / "metrics").open()
        logs = await LogStore(tmp_path / node).open()
        opened += [db, logs]
        db.append([({"__name__": "kade_task_cpu_seconds_total", "app": "/shop/web",
                     "task": f"web.{node}", "node": node}, now - 60_000 + k * 10_000,
                    float(k)) for k in range(7)])
        listeners.append(await serve(node_api(logs, node, ServerKeys(kstore), closing,
                                              metrics=db)))
        await kstore.put(model.node_key(node), model.Node(
            name=node, address="127.0.0.1", cpus=1, mem=1, api_url=listeners[-1].url).dump())
    await kstore.put(model.node_key("n3"), model.Node(
        name="n3", address="127.0.0.1", cpus=1, mem=1,
        api_url=f"http://127.0.0.1:{free_port()}").dump())
    await kstore.put(model.node_key("n4"), model.Node(
        name="n4", address="127.0.0.1", cpus=1, mem=1, liveness_ttl=10,
        api_url="http://192.0.2.1:7410").dump())
    local = TSDB(tmp_path / "server" / "metrics").open()
    local.append([({"__name__": "kade_node_up", "node": n}, now, 1.0) for n in ("n1", "n2")])
    fanout = NodeFanOut(kstore, key, timeout=2)
    app = create_app(kstore, extra=[prometheus_router(NodeMetrics(fanout, local),
                                                      lambda: {})])
    served = await serve(app)
    token, _ = await create_token(kstore, role="read", now=time.time())
    async with httpx.AsyncClient(base_url=served.url, timeout=20,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client, now
    closing.set()
    for s in (served, *listeners):
        with contextlib.suppress(Exception):
            await s.stop()
    await fanout.close()
    for x in opened:
        if isinstance(x, TSDB):
            x.close()
        else:
            await x.close()
    local.close()
    await kstore.close()


async def test_a_server_answers_from_its_store_and_every_node_naming_those_left_out(
        cluster: tuple[httpx.AsyncClient, int]) -> None:
    client, now = cluster
    got = (await client.get("/api/v1/query", params={
        "query": "sum by (node) (kade_task_cpu_seconds_total) + on(node) kade_node_up",
        "time": str(now / 1000)})).json()
    assert got["status"] == "success"
    assert sorted((r["metric"]["node"], r["value"][1]) for r in got["data"]["result"]) == [
        ("n1", "7"), ("n2", "7")]
    assert got["warnings"][0] == ("node n3 did not answer (unreachable (connection refused "
                                  "or no route)): its series are missing")
    assert got["warnings"][1].startswith("node n4 did not answer (down")

    ranged = (await client.get("/api/v1/query_range", params={
        "query": 'rate(kade_task_cpu_seconds_total{node="n2"}[30s])',
        "start": str((now - 30_000) / 1000), "end": str(now / 1000), "step": "10"})).json()
    [series] = ranged["data"]["result"]
    assert series["metric"]["task"] == "web.n2" and len(series["values"]) == 4

    found = (await client.get("/api/v1/series", params={
        "match[]": '{__name__=~"kade_.*"}'})).json()
    assert sorted((s["__name__"], s["node"]) for s in found["data"]) == [
        ("kade_node_up", "n1"), ("kade_node_up", "n2"),
        ("kade_task_cpu_seconds_total", "n1"), ("kade_task_cpu_seconds_total", "n2")]
    values = (await client.get("/api/v1/label/task/values")).json()
    assert values["data"] == ["web.n1", "web.n2"] and len(values["warnings"]) == 2

    text = (await client.get("/metrics"))
    assert 'kade_task_cpu_seconds_total{app="/shop/web",node="n2",task="web.n2"} 6' in \
        text.text
    assert 'kade_node_up{node="n1"} 1' in text.text
    assert "node n3 did not answer" in text.headers["x-kade-warnings"]


async def test_a_node_listener_answers_only_signed_metrics_requests(
        cluster: tuple[httpx.AsyncClient, int]) -> None:
    client, _ = cluster
    nodes = {n["name"]: n for n in (await client.get("/v1/nodes")).json()["nodes"]}
    async with httpx.AsyncClient() as anyone:
        refused = await anyone.get(nodes["n1"]["apiUrl"] + "/node/v1/metrics/select",
                                   params={"start": "0", "end": "1"})
    assert refused.status_code == 401
    assert refused.json()["message"].startswith("a node answers only servers")


async def test_a_query_wider_than_a_nodes_bounds_is_refused_naming_the_node(
        cluster: tuple[httpx.AsyncClient, int], monkeypatch: pytest.MonkeyPatch) -> None:
    client, now = cluster
    monkeypatch.setattr("kade.api.node_api.select_answer",
                        functools.partial(select_answer, max_samples=3))
    got = await client.get("/api/v1/query", params={
        "query": "kade_task_cpu_seconds_total", "time": str(now / 1000)})
    assert got.status_code == 422
    body = got.json()
    assert body["errorType"] == "execution"
    assert body["error"].startswith("node n")
    assert "too many samples" in body["error"]


class Recording:
    """A fan-out whose node n2 does not answer (it timed out): what each call asked."""

    timeout = 60.0

    def __init__(self, hang: bool = False) -> None:
        self.asked: list[list[str]] = []
        self.hang = hang

    def clock(self) -> float:
        return time.time()

    async def ask(self, nodes: list[model.Node], path: str, params: Any, load: Any
                  ) -> tuple[list[tuple[str, list[Any]]], list[Unanswered]]:
        self.asked.append([n.name for n in nodes])
        if self.hang:
            await asyncio.Event().wait()
        return ([(n.name, []) for n in nodes if n.name != "n2"],
                [Unanswered(n.name, "timed out") for n in nodes if n.name == "n2"])


def _nodes(*names: str) -> list[model.Node]:
    return [model.Node(name=n, address="127.0.0.1", cpus=1, mem=1, api_url="http://x")
            for n in names]


async def test_a_node_that_did_not_answer_is_not_asked_again_in_the_same_query(
        tmp_path: Path) -> None:
    local = TSDB(tmp_path / "m").open()
    fanout = Recording()
    query = ClusterQuery(fanout, local, _nodes("n1", "n2"), [],  # type: ignore[arg-type]
                         asyncio.get_running_loop())
    for name in ("a", "b", "c"):  # a query of three selectors
        await asyncio.to_thread(query.select, [Matcher.of("__name__", "=", name)], 0, 1)
    assert fanout.asked == [["n1", "n2"], ["n1"], ["n1"]]
    assert query.silent() == ["n2"]
    assert query.warnings() == ["node n2 did not answer (timed out): its series are missing"]
    local.close()


async def test_a_query_waits_for_the_nodes_no_longer_than_its_own_time(
        tmp_path: Path) -> None:
    local = TSDB(tmp_path / "m").open()
    up = [Matcher.of("__name__", "=", "up")]
    fanout = Recording(hang=True)  # 60 s a node; the query has far less
    query = ClusterQuery(fanout, local, _nodes("n1"), [],  # type: ignore[arg-type]
                         asyncio.get_running_loop(), time.monotonic() + 0.2)
    with pytest.raises(QueryError, match="query timed out waiting for the nodes' series"):
        await asyncio.to_thread(query.select, up, 0, 1)
    over = ClusterQuery(fanout, local, _nodes("n1"), [],  # type: ignore[arg-type]
                        asyncio.get_running_loop(), time.monotonic() - 1)
    with pytest.raises(QueryError, match="timed out"):
        await asyncio.to_thread(over.select, up, 0, 1)
    assert len(fanout.asked) == 1  # the query past its time asked no node
    local.close()


class Unclear:
    """A server's source whose node answered its refusal with line breaks and any text."""

    def select(self, matchers: Any, low: int, high: int) -> list[Any]:
        return []

    def latest(self, since_ms: int) -> list[Any]:
        return []

    def warnings(self) -> list[str]:
        return ["node n2 did not answer (500 oops\r\nSet-Cookie: a=b ✓ é \x00" + "x" * 5000
                + "): its series are missing"]

    def silent(self) -> list[str]:
        return ["n2"]


async def test_metrics_names_a_node_whose_message_no_header_could_carry() -> None:
    app = FastAPI()
    app.include_router(prometheus_router(Unclear(), lambda: {}))
    served = await serve(app)
    try:
        async with httpx.AsyncClient() as client:
            got = await client.get(served.url + "/metrics")
    finally:
        await served.stop()
    assert got.status_code == 200 and "set-cookie" not in got.headers
    header = got.headers["x-kade-warnings"]
    assert header.startswith("node n2 did not answer (500 oops  Set-Cookie: a=b ? ?  xxx")
    assert len(header) == MAX_HEADER and header.endswith("...")
