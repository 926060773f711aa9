"""kade's PromQL engine and a real Prometheus answer the same queries on the same samples
the same way: series, labels and values (to 1e-9 relative: sums may add in another order).

The samples are two hours of what kade keeps: request counters per app, status and task (one
restarts, one task appears midway, one stops), memory gauges, latency histograms. Prometheus
gets them as TSDB blocks built by promtool; kade's engine reads them from memory.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kade.metrics.promql import QueryError, instant_query, range_query
from kade.metrics.series import MemorySource
from kade.metrics.values import format_value, matrix_json, result_json
from kade.testing.prometheus import PrometheusServer

BASE = 1_700_000_400_000  # ms, a whole hour of the epoch... plus 400 s
STEP = 15_000
POINTS = 480  # two hours
BOUNDS = ("0.05", "0.1", "0.25", "0.5", "1", "+Inf")


def _samples() -> Iterator[tuple[dict[str, str], int, float]]:
    rnd = random.Random(7)
    tasks = {"/shop/web": ["web.1", "web.2", "web.3"], "/shop/api": ["api.1", "api.2"],
             "/billing": ["bill.1"]}
    for app, names in tasks.items():
        for task in names:
            for code in ("200", "404", "500"):
                labels = {"__name__": "kade_http_requests_total", "app": app, "task": task,
                          "code": code}
                total = 0.0
                first, last = 0, POINTS
                if task == "web.3":
                    first = 200  # a task started midway
                if task == "api.2" and code == "200":
                    last = 300  # a task that stopped
                for i in range(first, last):
                    if task == "web.1" and code == "200" and i == 240:
                        total = 0.0  # its counter restarted
                    weight = {"200": 20, "404": 3, "500": 1}[code]
                    total += rnd.randint(0, weight * 5)
                    jitter = rnd.randint(-400, 400)  # scrapes are never exactly on time
                    yield labels, BASE + i * STEP + jitter, total
            mem = 50e6 * rnd.random() + 20e6
            for i in range(POINTS):
                mem = max(1e6, mem + rnd.gauss(0, 2e6))
                yield ({"__name__": "kade_task_memory_bytes", "app": app, "task": task},
                       BASE + i * STEP, round(mem))
        counts = [0.0] * len(BOUNDS)
        total_sum = 0.0
        for i in range(POINTS):
            for _ in range(rnd.randint(5, 40)):
                latency = rnd.expovariate(1 / (0.08 if app != "/billing" else 0.4))
                total_sum += latency
                for b, bound in enumerate(BOUNDS):
                    if latency <= float(bound):
                        counts[b] += 1
            for b, bound in enumerate(BOUNDS):
                yield ({"__name__": "kade_http_request_duration_seconds_bucket", "app": app,
                        "le": bound}, BASE + i * STEP, counts[b])
            yield ({"__name__": "kade_http_request_duration_seconds_sum", "app": app},
                   BASE + i * STEP, round(total_sum, 6))
            yield ({"__name__": "kade_http_request_duration_seconds_count", "app": app},
                   BASE + i * STEP, counts[-1])


def _openmetrics(samples: list[tuple[dict[str, str], int, float]]) -> str:
    lines = []
    for labels, t, v in sorted(samples, key=lambda s: (sorted(s[0].items()), s[1])):
        name = labels["__name__"]
        rest = ",".join(f'{k}="{val}"' for k, val in sorted(labels.items()) if k != "__name__")
        lines.append(f"{name}{{{rest}}} {format_value(v)} {t / 1000:.3f}")
    return "\n".join(lines) + "\n# EOF\n"


QUERIES = [
    "kade_http_requests_total",
    'kade_http_requests_total{app="/shop/web",code!="200"}',
    'kade_http_requests_total{app=~"/shop/.*",task!~"web\\\\.[12]"}',
    "rate(kade_http_requests_total[5m])",
    "rate(kade_http_requests_total[1m])",
    "increase(kade_http_requests_total[10m])",
    "irate(kade_http_requests_total[5m])",
    "delta(kade_task_memory_bytes[5m])",
    "idelta(kade_task_memory_bytes[2m])",
    "sum by (app) (rate(kade_http_requests_total[5m]))",
    "sum without (task) (rate(kade_http_requests_total[5m]))",
    'sum by (app) (rate(kade_http_requests_total{code=~"5.."}[5m])) '
    "/ sum by (app) (rate(kade_http_requests_total[5m]))",
    "avg by (app) (kade_task_memory_bytes)",
    "max by (app) (kade_task_memory_bytes) / 1024 / 1024",
    "min(kade_task_memory_bytes)",
    "count by (app) (kade_task_memory_bytes)",
    "stddev by (app) (kade_task_memory_bytes)",
    "topk(2, kade_task_memory_bytes)",
    "bottomk(1, sum by (app) (kade_task_memory_bytes))",
    "quantile(0.9, kade_task_memory_bytes)",
    "histogram_quantile(0.99, sum by (app, le) "
    "(rate(kade_http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(kade_http_request_duration_seconds_bucket[10m]))",
    "rate(kade_http_request_duration_seconds_sum[5m]) "
    "/ rate(kade_http_request_duration_seconds_count[5m])",
    "kade_task_memory_bytes > 40e6",
    "kade_task_memory_bytes > bool 40e6",
    "50e6 < kade_task_memory_bytes",
    "kade_task_memory_bytes * 2 - 1",
    "-kade_task_memory_bytes",
    '2 ^ 3 % 5',
    "kade_task_memory_bytes / on(app, task) group_left "
    "sum by (app, task) (kade_http_requests_total)",
    'kade_http_requests_total and on(task) kade_task_memory_bytes > 40e6',
    'kade_http_requests_total{code="200"} unless on(task) kade_task_memory_bytes < 40e6',
    'kade_task_memory_bytes{app="/billing"} or kade_task_memory_bytes{app="/shop/api"}',
    "avg_over_time(kade_task_memory_bytes[10m])",
    "max_over_time(kade_task_memory_bytes[10m])",
    "min_over_time(kade_task_memory_bytes[3m])",
    "sum_over_time(kade_task_memory_bytes[2m])",
    "count_over_time(kade_http_requests_total[5m])",
    "last_over_time(kade_task_memory_bytes[5m])",
    "quantile_over_time(0.75, kade_task_memory_bytes[10m])",
    "stddev_over_time(kade_task_memory_bytes[10m])",
    "changes(kade_task_memory_bytes[5m])",
    "resets(kade_http_requests_total[30m])",
    "deriv(kade_task_memory_bytes[10m])",
    "predict_linear(kade_task_memory_bytes[30m], 3600)",
    "kade_task_memory_bytes offset 10m",
    "rate(kade_http_requests_total[5m] offset 5m)",
    f"rate(kade_http_requests_total[5m] @ {(BASE + 50 * 60_000) // 1000})",
    f"kade_task_memory_bytes @ {(BASE + 20 * 60_000) // 1000} offset 1m",
    "max_over_time(sum by (app) (rate(kade_http_requests_total[1m]))[10m:1m])",
    "abs(delta(kade_task_memory_bytes[5m]))",
    "round(kade_task_memory_bytes / 1e6, 0.5)",
    "clamp(kade_task_memory_bytes, 30e6, 60e6)",
    "clamp_max(kade_task_memory_bytes, 30e6)",
    "ceil(rate(kade_http_requests_total[5m]))",
    "sqrt(kade_task_memory_bytes)",
    "ln(kade_task_memory_bytes)",
    "timestamp(kade_task_memory_bytes)",
    "time()",
    "vector(1)",
    "scalar(sum(kade_task_memory_bytes))",
    'absent(kade_task_memory_bytes{app="/nowhere"})',
    "absent(kade_task_memory_bytes)",
    'label_replace(kade_task_memory_bytes, "short", "$1", "app", "/(?:shop/)?(.*)")',
    'label_join(kade_task_memory_bytes, "where", "@", "task", "app")',
    "sum(kade_http_requests_total) by (code)",
    "group by (app) (kade_task_memory_bytes)",
]
RANGE_QUERIES = [
    "sum by (app) (rate(kade_http_requests_total[5m]))",
    'sum(rate(kade_http_requests_total{code="500"}[2m])) / sum(rate(kade_http_requests_total[2m]))',
    "histogram_quantile(0.9, sum by (le) (rate(kade_http_request_duration_seconds_bucket[5m])))",
    "kade_task_memory_bytes",
    "avg_over_time(kade_task_memory_bytes[5m]) > 45e6",
    "time()",
    "increase(kade_http_requests_total[15m])",
    f"sum(kade_task_memory_bytes @ {(BASE + 20 * 60_000) // 1000})",
]
TIMES = [BASE + 30 * 60_000, BASE + 61 * 60_000 + 7_123, BASE + 119 * 60_000,
         BASE + 130 * 60_000]  # the last: 10 minutes after the samples end


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemorySource,
                                                                      PrometheusServer]]:
    samples = list(_samples())
    source = MemorySource()
    for labels, t, v in samples:
        source.add(labels, t, v)
    prom = PrometheusServer(Path(tmp_path_factory.mktemp("prometheus")))
    prom.load_openmetrics(_openmetrics(samples))
    prom.start()
    try:
        yield source, prom
    finally:
        prom.stop()


def _close(a: str, b: str) -> bool:
    if a == b:
        return True
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def _same(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert ours["resultType"] == theirs["resultType"]
    if ours["resultType"] in ("scalar", "string"):
        assert ours["result"][0] == pytest.approx(theirs["result"][0])
        assert _close(ours["result"][1], theirs["result"][1])
        return
    key = "value" if ours["resultType"] == "vector" else "values"

    def by_labels(result: list[dict[str, Any]]) -> dict[str, Any]:
        return {str(sorted(r["metric"].items())): r[key] for r in result}

    mine, reference = by_labels(ours["result"]), by_labels(theirs["result"])
    assert sorted(mine) == sorted(reference)
    for labels, points in reference.items():
        got = mine[labels]
        if key == "value":
            got, points = [got], [points]
        assert [p[0] for p in got] == pytest.approx([p[0] for p in points]), labels
        for (_, a), (_, b) in zip(got, points, strict=True):
            assert _close(a, b), f"{labels}: {a} != {b}"


@pytest.mark.parametrize("query", QUERIES)
def test_instant_queries_agree(both: tuple[MemorySource, PrometheusServer], query: str) -> None:
    source, prom = both
    for t in TIMES:
        theirs = prom.api("/api/v1/query", query=query, time=f"{t / 1000:.3f}")
        ours = result_json(instant_query(source, query, t), t)
        _same(ours, theirs)


@pytest.mark.parametrize("query", RANGE_QUERIES + QUERIES)
@pytest.mark.parametrize("step", [60_000, 37_000])
@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "by-step"])
def test_range_queries_agree(both: tuple[MemorySource, PrometheusServer], query: str,
                             step: int, columnar: bool) -> None:
    """Both of kade's ways to answer a range query (every step at once where it can, else
    step by step) give Prometheus' answer."""
    source, prom = both
    start, end = BASE + 10 * 60_000, BASE + 125 * 60_000
    try:
        theirs = prom.api("/api/v1/query_range", query=query, start=f"{start / 1000:.3f}",
                          end=f"{end / 1000:.3f}", step=f"{step / 1000:g}")
    except RuntimeError as e:  # not a range query (a range vector, a string): both refuse
        with pytest.raises(QueryError):
            range_query(source, query, start, end, step, columnar=columnar)
        assert "range" in str(e) or "invalid" in str(e)
        return
    ours = matrix_json(range_query(source, query, start, end, step, columnar=columnar))
    _same(ours, theirs)


@pytest.mark.parametrize(("query", "message"), [
    ("sum(", "parse error"),
    ("rate(kade_task_memory_bytes)", "parse error"),
    ("kade_task_memory_bytes + on(app) kade_task_memory_bytes",
     "found duplicate series for the match group"),
])
def test_errors_are_refused_like_prometheus(both: tuple[MemorySource, PrometheusServer],
                                            query: str, message: str) -> None:
    source, prom = both
    with pytest.raises(RuntimeError):
        prom.api("/api/v1/query", query=query, time=f"{TIMES[0] / 1000:.3f}")
    with pytest.raises(QueryError, match=message):
        instant_query(source, query, TIMES[0])
