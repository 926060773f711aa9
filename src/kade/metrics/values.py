"""The values a PromQL expression yields, and how Prometheus' HTTP API writes them.

Times are integer milliseconds, as Prometheus keeps them; the API writes them as seconds
and sample values as strings (`"0.5"`, `"NaN"`, `"+Inf"`), which is what clients of
Prometheus' API (Grafana, prometheus-api-client) read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kade.metrics.series import NAME, Labels


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float
    time: int | None = None  # the stored sample's time where it matters (timestamp())

    def without_name(self) -> Sample:
        return Sample(drop_name(self.labels), self.value, self.time)


@dataclass(frozen=True)
class Scalar:
    value: float


@dataclass(frozen=True)
class String:
    value: str


@dataclass
class RangeSeries:
    labels: Labels
    times: list[int]
    values: list[float]


@dataclass
class Vector:
    samples: list[Sample]


@dataclass
class Matrix:
    series: list[RangeSeries]


Value = Scalar | String | Vector | Matrix


def drop_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != NAME)


def format_value(v: float) -> str:
    """As Go's strconv.FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(v)
    if "e" in text:
        text = format(Decimal(text), "f")
    elif text.endswith(".0"):
        text = text[:-2]
    return text


def _time(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def result_json(value: Value, time_ms: int) -> dict[str, Any]:
    """`data` of an API answer: resultType and result."""
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [_time(time_ms), format_value(value.value)]}
    if isinstance(value, String):
        return {"resultType": "string", "result": [_time(time_ms), value.value]}
    if isinstance(value, Matrix):
        return matrix_json(value)
    return {"resultType": "vector", "result": [
        {"metric": dict(s.labels), "value": [_time(time_ms), format_value(s.value)]}
        for s in value.samples
    ]}


def matrix_json(matrix: Matrix) -> dict[str, Any]:
    return {"resultType": "matrix", "result": [
        {"metric": dict(s.labels),
         "values": [[_time(t), format_value(v)] for t, v in zip(s.times, s.values, strict=True)]}
        for s in matrix.series
    ]}
