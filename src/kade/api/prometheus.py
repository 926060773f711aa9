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

On `kade up` the source is the node's store; on a `kade server` each request gets its own
(kade.metrics.remote: the server's series and every node's), and the nodes that did not
answer are named in the answer's `warnings`, as Prometheus names a partial answer's causes
(Grafana and prometheus-api-client show them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl

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
    selectors,
)
from kade.metrics.exposition import write
from kade.metrics.promql import (
    LOOKBACK_MS,
    QueryError,
    instant_query,
    range_query,
)
from kade.metrics.series import Labels, Matcher, Partial, QuerySources, Series
from kade.metrics.values import matrix_json, result_json

MAX_FORM = 1024 * 1024  # bytes of a POSTed form
MAX_SERIES = 10_000  # label sets in one /series answer
WARNINGS_HEADER = "X-Kade-Warnings"  # /metrics: the nodes that did not answer
MAX_HEADER = 2048  # characters of the warnings header


class MetricsSource(Protocol):
    def select(self, matchers: Sequence[Matcher], low: int, high: int) -> Iterable[Series]: ...

    def latest(self, since_ms: int) -> list[tuple[Labels, int, float]]: ...


def header_text(text: str, limit: int = MAX_HEADER) -> str:
    """`text` as a header's value: printable ASCII only (a node's message may carry line
    breaks or any character, which a header cannot), at most `limit` characters."""
    safe = "".join(c if " " <= c <= "~" else "?" if c.isprintable() else " " for c in text)
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "errorType": kind, "error": message},
                        status_code=status)


def _ok(data: Any, warnings: list[str] | None = None) -> JSONResponse:
    body = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    return JSONResponse(body)


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


def prometheus_router(source: MetricsSource | QuerySources[MetricsSource],
                      metadata: Callable[[], dict[str, tuple[str, str]]],
                      clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter()

    async def source_for(timeout: float | None = None) -> MetricsSource:
        if isinstance(source, QuerySources):
            return await source.for_query(timeout)
        return source

    async def answer(request: Request,
                     work: Callable[[MetricsSource, list[tuple[str, str]]], Any]) -> Any:
        try:
            params = await _params(request)
            src = await source_for(admit_timeout(_one(params, "timeout")))
            data = await asyncio.to_thread(work, src, params)
            return _ok(data, src.warnings() if isinstance(src, Partial) else None)
        except BadData as e:
            return _error(400, "bad_data", str(e))
        except QueryError as e:
            message = str(e)
            if "timed out" in message:
                return _error(503, "timeout", message)
            if message.startswith("parse error"):
                return _error(400, "bad_data", message)
            return _error(422, "execution", message)

    def query(src: MetricsSource, params: list[tuple[str, str]]) -> Any:
        q = admit_query(_one(params, "query"))
        t = int(parse_time(_one(params, "time"), "time", clock()) * 1000)
        timeout = admit_timeout(_one(params, "timeout"))
        return result_json(instant_query(src, q, t, timeout=timeout), t)

    def query_range(src: MetricsSource, params: list[tuple[str, str]]) -> Any:
        p = admit_range(_one(params, "query"), _one(params, "start"), _one(params, "end"),
                        _one(params, "step"), _one(params, "timeout"))
        step = max(int(p.step * 1000), 1)
        return matrix_json(range_query(src, p.query, int(p.start * 1000),
                                       int(p.end * 1000), step, timeout=p.timeout))

    def window(params: list[tuple[str, str]]) -> tuple[int, int]:
        now = clock()
        start = parse_time(_one(params, "start"), "start", now - 6 * 3600)
        end = parse_time(_one(params, "end"), "end", now)
        return int(start * 1000), int(end * 1000)

    def label_sets(src: MetricsSource, params: list[tuple[str, str]],
                   required: bool) -> list[Labels]:
        matches = admit_matches([v for k, v in params if k == "match[]"], required)
        low, high = window(params)
        found: dict[Labels, None] = {}
        # a source that can leave the samples out does (a server: the nodes send labels only)
        sets = getattr(src, "label_sets", None)
        for matchers in selectors(matches) or [[]]:
            for labels in (sets(matchers, low, high) if sets is not None else
                           (s.labels for s in src.select(matchers, low, high))):
                found[labels] = None
                if len(found) > MAX_SERIES:
                    raise BadData(f"more than {MAX_SERIES} series match: narrow the selectors")
        return list(found)

    def series(src: MetricsSource, params: list[tuple[str, str]]) -> Any:
        return [dict(labels) for labels in sorted(label_sets(src, params, required=True))]

    def labels(src: MetricsSource, params: list[tuple[str, str]]) -> Any:
        return sorted({k for labels in label_sets(src, params, required=False)
                       for k, _ in labels})

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
        def values(src: MetricsSource, params: list[tuple[str, str]]) -> Any:
            return sorted({v for labels in label_sets(src, params, required=False)
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
        src = await source_for()
        text = await asyncio.to_thread(lambda: write(src.latest(since), metadata()))
        # the text format has no place for them: the nodes left out are named in a header
        missing = src.warnings() if isinstance(src, Partial) else []
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8",
                                 headers={WARNINGS_HEADER: header_text("; ".join(missing))}
                                 if missing else None)

    return r
