"""Prometheus' HTTP API served by kade, read by real clients: prometheus-api-client's
queries, and a real Prometheus scraping kade's /metrics with a token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import uvicorn
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect

from kade.api.app import create_app
from kade.api.prometheus import prometheus_router
from kade.auth import create_token
from kade.metrics.collector import OWN_METRICS, TASK_METRICS
from kade.metrics.tsdb import TSDB
from kade.store.sqlite import SqliteStore
from kade.testing.etcd import free_port
from kade.testing.prometheus import PrometheusServer


class Api(NamedTuple):
    url: str
    token: str
    now: float  # when its samples end: the fixture's time (an instant query sees 5 minutes)


def _fill(db: TSDB, now: float) -> None:
    start = int(now * 1000) - 3_600_000
    for i in range(360):  # an hour, every 10 s
        t = start + i * 10_000
        samples = []
        for task, app in (("web.1", "/shop/web"), ("web.2", "/shop/web"), ("api.1", "/api")):
            labels = {"app": app, "task": task, "node": "n1"}
            samples.append(({**labels, "__name__": "kade_task_cpu_seconds_total"}, t,
                            i * (0.5 if task == "web.1" else 0.1)))
            samples.append(({**labels, "__name__": "kade_task_memory_usage_bytes"}, t,
                            50e6 + 1000 * i))
        db.append(samples)


@pytest.fixture
async def kade_api(tmp_path: Path) -> AsyncIterator[Api]:
    """kade's API with the metrics routes on a real port, the store and token as kade has."""
    now = time.time()
    db = TSDB(tmp_path / "metrics").open()
    _fill(db, now)
    store = SqliteStore(tmp_path / "state.db")
    token, _ = await create_token(store, role="read", now=now)
    meta = {name: (kind, text) for name, _, kind, text in TASK_METRICS}
    meta.update({name: (kind, text) for name, kind, text in OWN_METRICS})
    app = create_app(store, extra=[prometheus_router(db, lambda: meta)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    try:
        yield Api(f"http://127.0.0.1:{port}", token, now)
    finally:
        server.should_exit = True
        await serving
        db.close()
        await store.close()


async def test_prometheus_api_client_reads_kade(kade_api: Api) -> None:
    await asyncio.to_thread(_client_reads_kade, kade_api)


def _client_reads_kade(api: Api) -> None:
    url, token, now = api
    prom = PrometheusConnect(url=url, headers={"Authorization": f"Bearer {token}"})
    assert set(prom.all_metrics()) == {"kade_task_cpu_seconds_total",
                                       "kade_task_memory_usage_bytes"}
    got = prom.custom_query("sum by (app) (rate(kade_task_cpu_seconds_total[5m]))",
                            params={"time": now - 10})  # the last samples' time
    rates = {r["metric"]["app"]: float(r["value"][1]) for r in got}
    assert rates == pytest.approx({"/shop/web": 0.06, "/api": 0.01})
    current = prom.get_current_metric_value("kade_task_memory_usage_bytes",
                                            label_config={"task": "web.2"})
    assert len(current) == 1 and current[0]["metric"]["app"] == "/shop/web"
    from datetime import datetime, timedelta
    end = datetime.fromtimestamp(now)
    ranged = prom.custom_query_range("kade_task_memory_usage_bytes{task=\"api.1\"}",
                                     start_time=end - timedelta(minutes=30), end_time=end,
                                     step="60")
    assert len(ranged) == 1 and len(ranged[0]["values"]) == 31
    with pytest.raises(PrometheusApiClientException, match="bad_data"):
        prom.custom_query("sum(")


async def test_errors_series_and_labels_as_prometheus_shapes_them(
        kade_api: Api) -> None:
    await asyncio.to_thread(_errors_series_and_labels, kade_api)


def _errors_series_and_labels(api: Api) -> None:
    url, token, _ = api
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.get(f"{url}/api/v1/query", params={"query": "up"})
    assert r.status_code == 401
    r = httpx.post(f"{url}/api/v1/query", headers=auth,
                   data={"query": "count(kade_task_cpu_seconds_total)"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["result"][0]["value"][1] == "3"
    r = httpx.get(f"{url}/api/v1/query_range", headers=auth,
                  params={"query": "up", "start": "10", "end": "5", "step": "1"})
    assert r.status_code == 400 and r.json() == {
        "status": "error", "errorType": "bad_data",
        "error": 'invalid parameter "end": end timestamp must not be before start time'}
    r = httpx.get(f"{url}/api/v1/query", headers=auth, params={"query": "up", "time": "soon"})
    assert r.json()["error"] == ('invalid parameter "time": cannot parse "soon" to a valid '
                                 "timestamp")
    r = httpx.get(f"{url}/api/v1/series", headers=auth,
                  params={"match[]": 'kade_task_cpu_seconds_total{app="/api"}'})
    assert r.json()["data"] == [{"__name__": "kade_task_cpu_seconds_total", "app": "/api",
                                 "node": "n1", "task": "api.1"}]
    r = httpx.get(f"{url}/api/v1/series", headers=auth)
    assert r.status_code == 400 and r.json()["error"] == "no match[] parameter provided"
    r = httpx.get(f"{url}/api/v1/labels", headers=auth)
    assert r.json()["data"] == ["__name__", "app", "node", "task"]
    r = httpx.get(f"{url}/api/v1/label/task/values", headers=auth)
    assert r.json()["data"] == ["api.1", "web.1", "web.2"]


async def test_a_real_prometheus_scrapes_kade_with_a_token(kade_api: Api,
                                                           tmp_path: Path) -> None:
    await asyncio.to_thread(_prometheus_scrapes_kade, kade_api, tmp_path)


def _prometheus_scrapes_kade(api: Api, tmp_path: Path) -> None:
    url, token, _ = api
    prom = PrometheusServer(tmp_path / "prometheus")
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "token").write_text(token)
    target = url.removeprefix("http://")
    prom.start(f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: kade
    authorization: {{credentials_file: {tmp_path / 'prometheus' / 'token'}}}
    static_configs: [{{targets: ["{target}"]}}]
""")
    try:
        deadline = time.monotonic() + 60
        while True:
            got = prom.api("/api/v1/query", query='kade_task_memory_usage_bytes{task="web.1"}')
            if got["result"]:
                break
            assert time.monotonic() < deadline, prom.api("/api/v1/targets")
            time.sleep(0.5)
        up = prom.api("/api/v1/query", query='up{job="kade"}')["result"]
        assert up[0]["value"][1] == "1"
    finally:
        prom.stop()
