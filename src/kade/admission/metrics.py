"""Admission of Prometheus HTTP API parameters (`/api/v1/query`, `query_range`, `series`,
`labels`, `label/<name>/values`, and a node's `/node/v1/metrics/select`): times as RFC 3339
or unix seconds, steps and timeouts as seconds or Prometheus durations (`15s`, `1m`), the
bounds kade keeps. Each refusal names the parameter, in the words Prometheus uses, so
clients show it as they would Prometheus'."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import promql_parser

from kade.metrics.promql import QueryError, selector_matchers
from kade.metrics.series import Matcher

MAX_QUERY = 10_000  # characters of one PromQL expression
MAX_MATCHES = 100  # match[] selectors of one series/labels request
MAX_RANGE = 32 * 24 * 3600.0  # seconds a range query may span (rollups reach 30 days)
MAX_TIMEOUT = 120.0


class BadData(ValueError):
    """Prometheus' `bad_data`: the request itself is wrong."""


def parse_time(value: str | None, name: str, default: float) -> float:
    """Unix seconds (fractions allowed) or RFC 3339; `default` when left out. Not
    `kade.addresses.parse_time`: in Prometheus' API a bare number is always a time, never a
    duration ago, and clients send `1.5`."""
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid '
                          "timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        seconds = parsed.timestamp()
    if not math.isfinite(seconds) or abs(seconds) > 1e13:
        raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid '
                      "timestamp")
    return seconds


def parse_seconds(value: str | None, name: str, default: float | None = None) -> float:
    """Seconds (`15`, `0.5`) or a duration (`15s`, `1m30s`)."""
    if value is None or value == "":
        if default is None:
            raise BadData(f'invalid parameter "{name}": is required')
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = promql_parser.parse_duration(value).total_seconds()
        except (ValueError, RuntimeError):
            raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid '
                          "duration") from None
    if not math.isfinite(seconds):
        raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid duration')
    return seconds


def admit_query(query: str | None) -> str:
    if not query:
        raise BadData('invalid parameter "query": is required')
    if len(query) > MAX_QUERY:
        raise BadData(f'invalid parameter "query": longer than {MAX_QUERY} characters')
    return query


@dataclass(frozen=True)
class RangeParams:
    query: str
    start: float
    end: float
    step: float
    timeout: float


def admit_range(query: str | None, start: str | None, end: str | None, step: str | None,
                timeout: str | None) -> RangeParams:
    q = admit_query(query)
    if start is None or start == "":
        raise BadData('invalid parameter "start": is required')
    if end is None or end == "":
        raise BadData('invalid parameter "end": is required')
    s, e = parse_time(start, "start", 0), parse_time(end, "end", 0)
    if e < s:
        raise BadData('invalid parameter "end": end timestamp must not be before start time')
    width = parse_seconds(step, "step")
    if width <= 0:
        raise BadData('invalid parameter "step": zero or negative query resolution step '
                      "widths are not accepted. Try a positive integer")
    if e - s > MAX_RANGE:
        raise BadData(f'invalid parameter "end": a range query spans at most '
                      f"{MAX_RANGE / 86400:.0f} days")
    return RangeParams(q, s, e, width, admit_timeout(timeout))


def admit_timeout(value: str | None) -> float:
    seconds = parse_seconds(value, "timeout", 30.0)
    if seconds <= 0 or seconds > MAX_TIMEOUT:
        raise BadData(f'invalid parameter "timeout": between 0 and {MAX_TIMEOUT:g} seconds')
    return seconds


def admit_matches(matches: list[str], required: bool) -> list[str]:
    if required and not matches:
        raise BadData("no match[] parameter provided")
    if len(matches) > MAX_MATCHES:
        raise BadData(f"at most {MAX_MATCHES} match[] parameters")
    for m in matches:
        admit_query(m)
    return matches


def selectors(matches: list[str]) -> list[list[Matcher]]:
    """Each `match[]` as the matchers of its series selector."""
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


Want = Literal["samples", "latest", "labels"]
WANTS: tuple[Want, ...] = ("samples", "latest", "labels")
NODE_SELECT_PARAMS = frozenset({"match[]", "start", "end", "want"})


@dataclass(frozen=True)
class NodeSelect:
    """What a server asks a node for: the series of any of `selectors` (none: every series)
    with samples in [start, end] ms, and of them every sample, the last one, or none."""

    selectors: list[list[Matcher]]
    start: int
    end: int
    want: Want = "samples"


def admit_node_select(params: Sequence[tuple[str, str]]) -> NodeSelect:
    unknown = sorted({k for k, _ in params} - NODE_SELECT_PARAMS)
    if unknown:
        raise BadData(f'unknown parameter "{unknown[0]}"')
    one = {k: v for k, v in params}
    matches = admit_matches([v for k, v in params if k == "match[]"], required=False)
    start, end = _millis(one.get("start"), "start"), _millis(one.get("end"), "end")
    if end < start:
        raise BadData('invalid parameter "end": end timestamp must not be before start time')
    want = one.get("want", "samples")
    if want not in WANTS:
        raise BadData(f'invalid parameter "want": {want!r} is not one of {", ".join(WANTS)}')
    return NodeSelect(selectors(matches) or [[]], start, end, want)


def _millis(value: str | None, name: str) -> int:
    if value is None or value == "":
        raise BadData(f'invalid parameter "{name}": is required')
    try:
        ms = int(value)
    except ValueError:
        raise BadData(f'invalid parameter "{name}": {value!r} is not a time in integer '
                      "milliseconds") from None
    if abs(ms) > 10**16:
        raise BadData(f'invalid parameter "{name}": {value!r} is out of range')
    return ms
