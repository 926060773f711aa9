"""Admission of Prometheus HTTP API parameters (`/api/v1/query`, `query_range`, `series`,
`labels`, `label/<name>/values`): times as RFC 3339 or unix seconds, steps and timeouts as
seconds or Prometheus durations (`15s`, `1m`), the bounds kade keeps. Each refusal names the
parameter, in the words Prometheus uses, so clients show it as they would Prometheus'."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import promql_parser

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
