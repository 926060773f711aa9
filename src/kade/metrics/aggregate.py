"""PromQL's aggregation operators (`sum by (app) (...)`), computed the way Prometheus 2.x
computes them (its running mean and variance), so that answers agree to the last digits."""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any

import promql_parser as pp

from kade.metrics.series import NAME, Labels
from kade.metrics.values import Sample, Value, Vector

if TYPE_CHECKING:
    from kade.metrics.promql import Evaluator


def group_key(labels: Labels, by: bool, names: tuple[str, ...]) -> Labels:
    if by:
        return tuple(kv for kv in labels if kv[0] in names)
    return tuple(kv for kv in labels if kv[0] != NAME and kv[0] not in names)


class _Group:
    __slots__ = ("count", "mean", "value", "samples")

    def __init__(self, first: float) -> None:
        self.count = 1
        self.mean = first
        self.value = first
        self.samples: list[Sample] = []


def quantile(q: float, values: list[float]) -> float:
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    values = sorted(values)
    n = len(values)
    rank = q * (n - 1)
    low = max(0, math.floor(rank))
    high = min(n - 1, low + 1)
    weight = rank - math.floor(rank)
    return values[low] * (1 - weight) + values[high] * weight


def _add(op: str, g: _Group, v: float) -> None:
    g.count += 1
    if op == "sum":
        g.value += v
    elif op == "avg":
        if math.isinf(g.mean):
            if math.isinf(v) and (g.mean > 0) == (v > 0):
                return
            if not math.isinf(v) and not math.isnan(v):
                return
        g.mean += v / g.count - g.mean / g.count
    elif op == "max":
        if g.value < v or math.isnan(g.value):
            g.value = v
    elif op == "min":
        if g.value > v or math.isnan(g.value):
            g.value = v
    elif op in ("stddev", "stdvar"):
        delta = v - g.mean
        g.mean += delta / g.count
        g.value += delta * (v - g.mean)


def aggregate(ev: Evaluator, node: Any, t: int) -> Value:
    from kade.metrics.promql import QueryError

    op = str(node.op)
    mod = node.modifier
    by = mod is None or mod.type == pp.AggModifierType.By
    names = tuple(mod.labels) if mod is not None else ()
    vec = ev.vector_of(node.expr, t)
    if op in ("topk", "bottomk"):
        return _topk(op, ev.scalar_of(node.param, t), vec, by, names)
    if op == "quantile":
        q = ev.scalar_of(node.param, t)
        groups: dict[Labels, list[float]] = {}
        for s in vec.samples:
            groups.setdefault(group_key(s.labels, by, names), []).append(s.value)
        return Vector([Sample(k, quantile(q, v)) for k, v in groups.items()])
    if op not in ("sum", "avg", "max", "min", "count", "group", "stddev", "stdvar"):
        raise QueryError(f"aggregation {op} is not supported")
    found: dict[Labels, _Group] = {}
    for s in vec.samples:
        key = group_key(s.labels, by, names)
        g = found.get(key)
        if g is None:
            g = found[key] = _Group(s.value)
            if op in ("stddev", "stdvar"):
                g.value = 0.0
            continue
        _add(op, g, s.value)
    out = []
    for key, g in found.items():
        if op == "avg":
            value = g.mean
        elif op == "count":
            value = float(g.count)
        elif op == "group":
            value = 1.0
        elif op == "stdvar":
            value = g.value / g.count
        elif op == "stddev":
            value = math.sqrt(g.value / g.count)
        else:
            value = g.value
        out.append(Sample(key, value))
    return Vector(out)


def _topk(op: str, k: float, vec: Vector, by: bool, names: tuple[str, ...]) -> Vector:
    if math.isnan(k) or k < 1:
        return Vector([])
    n = int(min(k, len(vec.samples)))
    groups: dict[Labels, list[Sample]] = {}
    for s in vec.samples:
        groups.setdefault(group_key(s.labels, by, names), []).append(s)

    def rank(s: Sample) -> float:  # NaN ranks last either way
        if math.isnan(s.value):
            return -math.inf
        return s.value if op == "topk" else -s.value

    out: list[Sample] = []
    for members in groups.values():
        out.extend(heapq.nlargest(n, members, key=rank))
    return Vector(out)
