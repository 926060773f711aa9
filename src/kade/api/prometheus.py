"""Prometheus' HTTP API over kade's metrics, so that what reads Prometheus (Grafana's data
source, prometheus-api-client, promtool) reads kade:

    GET|POST /api/v1/query           query, time, timeout
    GET|POST /api/v1/query_range     query, start, end, step, timeout
    GET|POST /api/v1/series          match[], start, end
    GET|POST /api/v1/labels          match[], start, end
    GET      /api/v1/label/<name>/values
    GET      /api/v1/metadata, /api/v1/status/buildinfo
    GET      /metrics                the latest sample of every series, text format

Answers and errors are shaped as Prometheus shapes them (`{"status": "error", "errorType":
"bad_data", "error": ...}`). Queries run in a worker thread, bounded in time and samples
(kade.metrics.promql). Reading needs a `read` token, like the rest of the API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl

import promql_parser
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

import kade
from kade.admission.metrics import (
    BadData,
    admit_matches,
    admit_query,
    admit_range,
    admit_timeout,
    parse_time,
)
from kade.metrics.exposition import write
from kade.metrics.promql import (
    LOOKBACK_MS,
    QueryError,
    instant_query,
    range_query,
    selector_matchers,
)
from kade.metrics.series import Labels, Matcher, Series
from kade.metrics.values import matrix_json, result_json

MAX_FORM = 1024 * 1024  # bytes of a POSTed form
MAX_SERIES = 10_000  # label sets in one /series answer


class MetricsSource(Protocol):
    def select(self, matchers: Sequence[Matcher], low: int, high: int) -> Iterable[Series]: ...

    def latest(self, since_ms: int) -> list[tuple[Labels, int, float]]: ...


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "errorType": kind, "error": message},
                        status_code=status)


def _ok(data: Any) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data})


async def _params(request: Request) -> list[tuple[str, str]]:
    """Query string and, for POST, the form body (Grafana posts its queries)."""
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await request.body()
        if len(body) > MAX_FORM:
            raise BadData(f"form body over {MAX_FORM // 1024} KiB")
        params += parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return params


def _one(params: list[tuple[str, str]], name: str) -> str | None:
    found = [v for k, v in params if k == name]
    return found[-1] if found else None


def _selectors(matches: list[str]) -> list[list[Matcher]]:
    out = []
    for text in matches:
        try:
            expr = promql_parser.parse(text)
        except (ValueError, RuntimeError) as e:
            raise BadData(f'invalid parameter "match[]": {e}') from None
        if not isinstance(expr, promql_parser.VectorSelector):
            raise BadData(f'invalid parameter "match[]": {text} is not a series selector')
        try:
            out.append(selector_matchers(expr))
        except (ValueError, QueryError) as e:
            raise BadData(f'invalid parameter "match[]": {e}') from None
    return out


def prometheus_router(source: MetricsSource, metadata: Callable[[], dict[str, tuple[str, str]]],
                      clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter()

    async def answer(request: Request, work: Callable[[list[tuple[str, str]]], Any]) -> Any:
        try:
            params = await _params(request)
            return _ok(await asyncio.to_thread(work, params))
        except BadData as e:
            return _error(400, "bad_data", str(e))
        except QueryError as e:
            message = str(e)
            if "timed out" in message:
                return _error(503, "timeout", message)
            if message.startswith("parse error"):
                return _error(400, "bad_data", message)
            return _error(422, "execution", message)

    def query(params: list[tuple[str, str]]) -> Any:
        q = admit_query(_one(params, "query"))
        t = int(parse_time(_one(params, "time"), "time", clock()) * 1000)
        timeout = admit_timeout(_one(params, "timeout"))
        return result_json(instant_query(source, q, t, timeout=timeout), t)

    def query_range(params: list[tuple[str, str]]) -> Any:
        p = admit_range(_one(params, "query"), _one(params, "start"), _one(params, "end"),
                        _one(params, "step"), _one(params, "timeout"))
        step = max(int(p.step * 1000), 1)
        return matrix_json(range_query(source, p.query, int(p.start * 1000),
                                       int(p.end * 1000), step, timeout=p.timeout))

    def window(params: list[tuple[str, str]]) -> tuple[int, int]:
        now = clock()
        start = parse_time(_one(params, "start"), "start", now - 6 * 3600)
        end = parse_time(_one(params, "end"), "end", now)
        return int(start * 1000), int(end * 1000)

    def label_sets(params: list[tuple[str, str]], required: bool) -> list[Labels]:
        matches = admit_matches([v for k, v in params if k == "match[]"], required)
        low, high = window(params)
        found: dict[Labels, None] = {}
        for matchers in _selectors(matches) or [[]]:
            for s in source.select(matchers, low, high):
                found[s.labels] = None
                if len(found) > MAX_SERIES:
                    raise BadData(f"more than {MAX_SERIES} series match: narrow the selectors")
        return list(found)

    def series(params: list[tuple[str, str]]) -> Any:
        return [dict(labels) for labels in sorted(label_sets(params, required=True))]

    def labels(params: list[tuple[str, str]]) -> Any:
        return sorted({k for labels in label_sets(params, required=False) for k, _ in labels})

    @r.api_route("/api/v1/query", methods=["GET", "POST"])
    async def query_endpoint(request: Request) -> Any:
        return await answer(request, query)

    @r.api_route("/api/v1/query_range", methods=["GET", "POST"])
    async def query_range_endpoint(request: Request) -> Any:
        return await answer(request, query_range)

    @r.api_route("/api/v1/series", methods=["GET", "POST"])
    async def series_endpoint(request: Request) -> Any:
        return await answer(request, series)

    @r.api_route("/api/v1/labels", methods=["GET", "POST"])
    async def labels_endpoint(request: Request) -> Any:
        return await answer(request, labels)

    @r.get("/api/v1/label/{name}/values")
    async def label_values_endpoint(name: str, request: Request) -> Any:
        def values(params: list[tuple[str, str]]) -> Any:
            return sorted({v for labels in label_sets(params, required=False)
                           for k, v in labels if k == name})
        return await answer(request, values)

    @r.get("/api/v1/metadata")
    async def metadata_endpoint() -> Any:
        return _ok({name: [{"type": kind, "help": text, "unit": ""}]
                    for name, (kind, text) in sorted(metadata().items())})

    @r.get("/api/v1/status/buildinfo")
    async def buildinfo() -> Any:
        return _ok({"version": "2.42.0", "revision": "", "branch": "kade",
                    "buildUser": "", "buildDate": "", "goVersion": "",
                    "application": f"kade {kade.__version__}"})

    @r.get("/metrics")
    async def metrics() -> PlainTextResponse:
        since = int(clock() * 1000) - LOOKBACK_MS
        text = await asyncio.to_thread(lambda: write(source.latest(since), metadata()))
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return r
