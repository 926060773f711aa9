"""kade's PromQL engine with plain values: what Prometheus' own engine tests check, where the
comparison with a real Prometheus (tests/integration/test_promql_prometheus.py) cannot
reach — bounds, errors, edge values."""

from __future__ import annotations

import math

import pytest

from kade.metrics.functions import bucket_quantile, extrapolated
from kade.metrics.promql import QueryError, instant_query, range_query
from kade.metrics.series import Matcher, MemorySource
from kade.metrics.values import RangeSeries, Scalar, Vector, format_value, result_json


def _source() -> MemorySource:
    source = MemorySource()
    for i in range(0, 41):
        source.add({"__name__": "up", "job": "a"}, i * 15_000, 1.0)
        source.add({"__name__": "reqs_total", "job": "a"}, i * 15_000, 10.0 * i)
    return source


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1"), (0.1, "0.1"), (-0.0, "-0"), (1e21, "1000000000000000000000"),
    (1.5e-7, "0.00000015"), (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (123456789.125, "123456789.125"),
])
def test_values_are_written_as_prometheus_writes_them(value: float, text: str) -> None:
    assert format_value(value) == text


def test_regex_matchers_are_anchored_and_see_newlines() -> None:
    m = Matcher.of("job", "=~", "a.c")
    assert m.matches("abc") and not m.matches("xabc") and m.matches("a\nc")
    assert Matcher.of("job", "!~", "a|b").matches("")
    with pytest.raises(ValueError, match="job=~'\\(': not a valid regular expression"):
        Matcher.of("job", "=~", "(")


def test_a_missing_label_matches_the_empty_value() -> None:
    got = instant_query(_source(), 'up{zone=""}', 600_000)
    assert isinstance(got, Vector) and len(got.samples) == 1


def test_stale_after_the_lookback() -> None:
    assert isinstance(got := instant_query(_source(), "up", 600_000 + 300_000), Vector)
    assert len(got.samples) == 1
    assert instant_query(_source(), "up", 600_000 + 300_001) == Vector([])


def test_rate_of_a_steady_counter() -> None:
    got = instant_query(_source(), "rate(reqs_total[1m])", 600_000)
    assert isinstance(got, Vector)
    assert got.samples[0].value == pytest.approx(10 / 15)
    assert dict(got.samples[0].labels) == {"job": "a"}  # the name is dropped


def test_rate_needs_two_samples() -> None:
    series = RangeSeries((), [1000], [5.0])
    assert extrapolated(series, 0, 60_000, counter=True, rate=True, range_s=60) is None


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, [(0.1, 0), (1.0, 10), (math.inf, 10)], 0.55),
    (0.99, [(0.1, 5), (math.inf, 10)], 0.1),  # in the +Inf bucket: the highest finite bound
    (0.5, [(0.1, 5)], math.nan),  # no +Inf bucket
    (0.5, [(0.1, 0), (math.inf, 0)], math.nan),  # no observations
    (-1, [(0.1, 5), (math.inf, 10)], -math.inf),
    (2, [(0.1, 5), (math.inf, 10)], math.inf),
    (0.5, [(1.0, 6), (0.1, 7), (math.inf, 10)], 0.1 * 5 / 7),  # counts made monotonic
])
def test_histogram_quantile(q: float, buckets: list[tuple[float, float]],
                            expected: float) -> None:
    got = bucket_quantile(q, buckets)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


@pytest.mark.parametrize(("query", "message"), [
    ("hour(up)", "function hour\\(\\) is not supported"),
    ("count_values(\"v\", up)", "aggregation count_values is not supported"),
    ("up{job=~\"(\"}", "parse error: illegal regex"),
    ("up +", "parse error"),
])
def test_unsupported_and_invalid_queries_say_what(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        instant_query(_source(), query, 600_000)


def test_range_queries_need_an_instant_vector_or_a_scalar() -> None:
    with pytest.raises(QueryError, match='invalid expression type "range vector"'):
        range_query(_source(), "up[5m]", 0, 600_000, 60_000)


def test_range_queries_are_bounded() -> None:
    with pytest.raises(QueryError, match="11,000 points"):
        range_query(_source(), "up", 0, 12_000_000, 1_000)
    with pytest.raises(QueryError, match="zero or negative"):
        range_query(_source(), "up", 0, 60_000, 0)
    with pytest.raises(QueryError, match="end timestamp must not be before start"):
        range_query(_source(), "up", 60_000, 0, 1_000)


def test_a_query_loading_too_many_samples_stops() -> None:
    with pytest.raises(QueryError, match="too many samples"):
        instant_query(_source(), "sum_over_time(up[10m])", 600_000, max_samples=10)


def test_a_slow_query_times_out() -> None:
    ticks = iter(range(1000))
    with pytest.raises(QueryError, match="timed out"):
        range_query(_source(), "up", 0, 600_000, 15_000, timeout=3, columnar=False,
                    clock=lambda: float(next(ticks)))


def test_instant_answers_as_the_http_api_writes_them() -> None:
    assert result_json(Scalar(0.5), 1_500) == {"resultType": "scalar", "result": [1.5, "0.5"]}
    got = result_json(instant_query(_source(), "up", 600_000), 600_000)
    assert got == {"resultType": "vector", "result": [
        {"metric": {"__name__": "up", "job": "a"}, "value": [600, "1"]}]}
