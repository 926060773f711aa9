"""Range queries evaluated for every step at once, with numpy: what dashboards ask for.

The step evaluator (kade.metrics.promql) evaluates the whole expression once per step, in
Python: a day at a minute's step over 50 series is 72,000 windows, most of a second. Here an
instant vector over all steps is, per label set, an array of values and an array saying at
which steps it is present; a selector's windows for every step come from one
`searchsorted`, `rate` from prefix sums, an aggregation from adding arrays in the order the
step evaluator adds samples, so the answers are the same (the Prometheus comparison tests
run both).

What it covers is what dashboards and alert rules mostly use: selectors with `offset`,
`rate`/`increase`/`delta`/`irate`/`idelta`, `sum`/`avg`/`min`/`max`/`count`/`last`
`_over_time`, `sum`/`avg`/`min`/`max`/`count`/`group` by or without, arithmetic and
comparisons with scalars and between vectors (one-to-one, `on`/`ignoring`), `and`/`unless`,
`histogram_quantile`, `time()`, `vector()`, the simple math functions. Anything else
raises `Unsupported` and the query runs step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import promql_parser as pp

from kade.metrics.aggregate import group_key
from kade.metrics.binary import COMPARE, DROPS_NAME, SETS, signature
from kade.metrics.series import Labels, millis
from kade.metrics.values import Matrix, RangeSeries, drop_name

if TYPE_CHECKING:
    from kade.metrics.promql import Evaluator


def selector_matchers(vs: Any) -> Any:
    from kade.metrics.promql import selector_matchers as matchers
    return matchers(vs)

Arr = Any  # numpy arrays (float64 values, bool presence)


class Unsupported(Exception):
    """Not evaluated here: the step evaluator answers it."""


class Col:
    """An instant vector at every step: label set → (values, present)."""

    def __init__(self) -> None:
        self.series: dict[Labels, tuple[Arr, Arr]] = {}

    def add(self, labels: Labels, values: Arr, present: Arr) -> None:
        if present.any():
            self.series[labels] = (values, present)


_SIMPLE: dict[str, Callable[[Arr], Arr]] = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "sqrt": np.sqrt, "exp": np.exp,
    "ln": np.log, "log2": np.log2, "log10": np.log10, "sgn": np.sign,
}
_RANGE = {"rate", "increase", "delta", "irate", "idelta", "sum_over_time", "avg_over_time",
          "min_over_time", "max_over_time", "count_over_time", "last_over_time"}
_AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group"}


class Columnar:
    def __init__(self, ev: Evaluator, steps: list[int]) -> None:
        self.ev = ev
        self.steps = np.asarray(steps, dtype=np.int64)
        self.n = len(steps)

    def matrix(self, expr: Any) -> Matrix:
        with np.errstate(all="ignore"):
            value = self.eval(expr)
        out = []
        if isinstance(value, Col):
            for labels, (values, present) in value.series.items():
                out.append(RangeSeries(labels, self.steps[present].tolist(),
                                       values[present].tolist()))
        else:
            out.append(RangeSeries((), self.steps.tolist(), np.asarray(value).tolist()))
        return Matrix(sorted(out, key=lambda s: s.labels))

    # -- the tree ------------------------------------------------------------------------

    def eval(self, node: Any) -> Col | Arr:  # noqa: PLR0911 - one case per node kind
        if isinstance(node, pp.NumberLiteral):
            return np.full(self.n, float(node.val))
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr)
        if isinstance(node, pp.UnaryExpr):
            inner = self.eval(node.expr)
            if isinstance(inner, Col):
                out = Col()
                for labels, (v, p) in inner.series.items():
                    out.add(drop_name(labels), -v, p)
                return out
            return -inner
        if isinstance(node, pp.VectorSelector):
            return self._vector(node)
        if isinstance(node, pp.Call):
            return self._call(node)
        if isinstance(node, pp.AggregateExpr):
            return self._aggregate(node)
        if isinstance(node, pp.BinaryExpr):
            return self._binary(node)
        raise Unsupported(type(node).__name__)

    def _selection(self, vs: Any, back: int) -> list[tuple[Labels, Arr, Arr]]:
        if vs.at is not None:
            raise Unsupported("@")
        self.ev._check_time()
        arrays = getattr(self.ev.source, "select_arrays", None)
        if arrays is None:  # a source of lists (kade.metrics.series.MemorySource)
            return [(s.labels, np.asarray(s.times, dtype=np.int64),
                     np.asarray(s.values, dtype=np.float64)) for s in self.ev._select(vs, back, 0)]
        offset = millis(vs.offset)
        low = self.ev.start - offset - back - self.ev._extra
        got: list[tuple[Labels, Arr, Arr]] = arrays(selector_matchers(vs), low,
                                                    self.ev.end - offset)
        for _, times, _ in got:
            self.ev.count_loaded(len(times))
        return got

    def _vector(self, vs: Any) -> Col:
        lookback = self.ev.lookback
        refs = self.steps - millis(vs.offset)
        out = Col()
        for labels, times, values in self._selection(vs, lookback):
            idx = np.searchsorted(times, refs, side="right") - 1
            safe = np.clip(idx, 0, len(times) - 1)
            present = (idx >= 0) & (times[safe] >= refs - lookback)
            out.add(labels, values[safe], present)
        return out

    def _call(self, node: Any) -> Col | Arr:
        name = node.func.name
        args = list(node.args)
        if name in _RANGE:
            if not isinstance(args[0], pp.MatrixSelector):
                raise Unsupported(f"{name} of a subquery")
            return self._range_function(name, args[0])
        if name == "time":
            return self.steps / 1000.0
        if name == "vector":
            scalar = self.eval(args[0])
            if isinstance(scalar, Col):
                raise Unsupported("vector of a vector")
            out = Col()
            out.add((), np.asarray(scalar, dtype=np.float64), np.ones(self.n, dtype=bool))
            return out
        if name in _SIMPLE and len(args) == 1:
            inner = self._col(args[0])
            out = Col()
            for labels, (v, p) in inner.series.items():
                out.add(drop_name(labels), _SIMPLE[name](v), p)
            return out
        if name == "histogram_quantile":
            q = self.eval(args[0])
            if isinstance(q, Col):
                raise Unsupported("histogram_quantile of a vector's quantile")
            return self._histogram_quantile(np.asarray(q), self._col(args[1]))
        raise Unsupported(name)

    def _col(self, node: Any) -> Col:
        value = self.eval(node)
        if not isinstance(value, Col):
            raise Unsupported("a scalar where a vector was expected")
        return value

    def _range_function(self, name: str, ms: Any) -> Col:
        vs = ms.vector_selector
        rng = millis(ms.range)
        ends = self.steps - millis(vs.offset)
        starts = ends - rng
        out = Col()
        for labels, times, values in self._selection(vs, rng):
            lo = np.searchsorted(times, starts, side="left")
            hi = np.searchsorted(times, ends, side="right")
            count = hi - lo
            result, present = _window(name, times, values, lo, hi, count, starts, ends,
                                      rng / 1000)
            out.add(labels if name == "last_over_time" else drop_name(labels), result,
                    present)
        return out

    def _aggregate(self, node: Any) -> Col:
        op = str(node.op)
        if op not in _AGGREGATIONS or node.param is not None:
            raise Unsupported(op)
        mod = node.modifier
        by = mod is None or mod.type == pp.AggModifierType.By
        names = tuple(mod.labels) if mod is not None else ()
        inner = self._col(node.expr)
        groups: dict[Labels, list[tuple[Arr, Arr]]] = {}
        for labels, vp in inner.series.items():
            groups.setdefault(group_key(labels, by, names), []).append(vp)
        out = Col()
        for key, members in groups.items():
            out.add(key, *_aggregate(op, members, self.n))
        return out

    def _binary(self, node: Any) -> Col | Arr:
        op = str(node.op)
        mod = node.modifier
        return_bool = bool(mod is not None and mod.return_bool)
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if not isinstance(lhs, Col) and not isinstance(rhs, Col):
            if op in SETS:
                raise Unsupported("set operator on scalars")
            if op in COMPARE:
                return _compare(op, lhs, rhs).astype(np.float64)
            return _arith(op, lhs, rhs)
        if isinstance(lhs, Col) and isinstance(rhs, Col):
            return self._vectors(op, lhs, rhs, mod, return_bool)
        if op in SETS:
            raise Unsupported("set operator with a scalar")
        vec, scalar, swap = (lhs, rhs, False) if isinstance(lhs, Col) else (rhs, lhs, True)
        assert isinstance(vec, Col)
        out = Col()
        for labels, (v, p) in vec.series.items():
            a, b = (scalar, v) if swap else (v, scalar)
            if op in COMPARE:
                keep = _compare(op, a, b)
                if return_bool:
                    out.add(drop_name(labels), keep.astype(np.float64), p)
                else:
                    out.add(labels, v, p & keep)
            else:
                out.add(drop_name(labels) if op in DROPS_NAME else labels, _arith(op, a, b), p)
        return out

    def _vectors(self, op: str, lhs: Col, rhs: Col, mod: Any, return_bool: bool) -> Col:
        card = mod.card if mod is not None else pp.VectorMatchCardinality.OneToOne
        if card not in (pp.VectorMatchCardinality.OneToOne, pp.VectorMatchCardinality.ManyToMany):
            raise Unsupported("group_left/group_right")
        on = bool(mod is not None and mod.matching is not None
                  and mod.matching.type == pp.LabelModifierType.Include)
        names = tuple(mod.matching.labels) if mod is not None and mod.matching else ()
        right: dict[Labels, list[tuple[Arr, Arr]]] = {}
        for labels, vp in rhs.series.items():
            right.setdefault(signature(labels, on, names), []).append(vp)
        out = Col()
        if op in ("and", "unless"):
            for labels, (v, p) in lhs.series.items():
                there = np.zeros(self.n, dtype=bool)
                for _, rp in right.get(signature(labels, on, names), []):
                    there |= rp
                out.add(labels, v, p & (there if op == "and" else ~there))
            return out
        if op == "or":
            raise Unsupported("or")
        left_sigs: dict[Labels, int] = {}
        for labels in lhs.series:
            sig = signature(labels, on, names)
            left_sigs[sig] = left_sigs.get(sig, 0) + 1
        for labels, (v, p) in lhs.series.items():
            sig = signature(labels, on, names)
            others = right.get(sig, [])
            if not others:
                continue
            if len(others) > 1 or left_sigs[sig] > 1:
                raise Unsupported("several series match: the step evaluator says which")
            rv, rp = others[0]
            both = p & rp
            result_labels = labels
            if op in DROPS_NAME or return_bool:
                result_labels = drop_name(result_labels)
            if on:
                result_labels = tuple(kv for kv in result_labels if kv[0] in names)
            else:
                result_labels = tuple(kv for kv in result_labels if kv[0] not in names)
            if op in COMPARE:
                keep = _compare(op, v, rv)
                if return_bool:
                    out.add(result_labels, keep.astype(np.float64), both)
                else:
                    out.add(result_labels, v, both & keep)
            else:
                out.add(result_labels, _arith(op, v, rv), both)
        return out

    def _histogram_quantile(self, q: Arr, vec: Col) -> Col:
        groups: dict[Labels, list[tuple[float, Arr, Arr]]] = {}
        for labels, (v, p) in vec.series.items():
            got = dict(labels)
            le = got.pop("le", None)
            if le is None:
                continue
            try:
                bound = float(le)
            except ValueError:
                continue
            got.pop("__name__", None)
            groups.setdefault(tuple(sorted(got.items())), []).append((bound, v, p))
        out = Col()
        for key, buckets in groups.items():
            out.add(key, *_bucket_quantile(q, buckets, self.n))
        return out


def _arith(op: str, a: Arr, b: Arr) -> Arr:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return np.divide(a, b)
    if op == "%":
        return np.where(np.isinf(a), np.nan, np.fmod(a, b))
    if op == "^":
        return np.power(a, b)
    if op == "atan2":
        return np.arctan2(a, b)
    raise Unsupported(op)


def _compare(op: str, a: Arr, b: Arr) -> Arr:
    table: dict[str, Callable[[Arr, Arr], Arr]] = {
        "==": np.equal, "!=": np.not_equal, ">": np.greater, "<": np.less,
        ">=": np.greater_equal, "<=": np.less_equal}
    if op not in table:
        raise Unsupported(op)
    return np.asarray(table[op](a, b), dtype=bool)


def _window(name: str, times: Arr, values: Arr, lo: Arr, hi: Arr, count: Arr, starts: Arr,
            ends: Arr, range_s: float) -> tuple[Arr, Arr]:
    """A range function's value at every step from its windows [lo, hi)."""
    last = np.clip(hi - 1, 0, len(times) - 1)
    first = np.clip(lo, 0, len(times) - 1)
    if name in ("rate", "increase", "delta"):
        present = count >= 2
        result = values[last] - values[first]
        counter = name != "delta"
        if counter:
            drops = np.zeros(len(values))
            drops[1:] = np.where(values[1:] < values[:-1], values[:-1], 0.0)
            carried = np.cumsum(drops)
            result = result + (carried[last] - carried[first])
        to_start = (times[first] - starts) / 1000.0
        to_end = (ends - times[last]) / 1000.0
        sampled = (times[last] - times[first]) / 1000.0
        average = sampled / np.maximum(count - 1, 1)
        if counter:
            grows = (result > 0) & (values[first] >= 0)
            to_zero = np.where(grows, sampled * (values[first] / np.where(grows, result, 1.0)),
                               np.inf)
            to_start = np.minimum(to_start, to_zero)
        threshold = average * 1.1
        interval = (sampled + np.where(to_start < threshold, to_start, average / 2)
                    + np.where(to_end < threshold, to_end, average / 2))
        result = result * (interval / np.where(sampled == 0, np.nan, sampled))
        if name == "rate":
            result = result / range_s
        return result, present
    if name in ("irate", "idelta"):
        prev = np.clip(hi - 2, 0, len(times) - 1)
        present = count >= 2
        a, b = values[prev], values[last]
        result = np.where((name == "irate") & (b < a), b, b - a)
        gap = (times[last] - times[prev]).astype(np.float64)
        present &= gap != 0
        if name == "irate":
            result = result / (np.where(gap == 0, np.nan, gap) / 1000.0)
        return result, present
    present = count >= 1
    if name == "count_over_time":
        return count.astype(np.float64), present
    if name == "last_over_time":
        return values[last], present
    if name in ("sum_over_time", "avg_over_time", "min_over_time", "max_over_time"):
        if len(values) == 0:
            return np.zeros(len(lo)), present
        starts_ok = np.where(present, lo, 0)
        reducer = {"sum_over_time": np.add, "avg_over_time": np.add,
                   "min_over_time": np.minimum, "max_over_time": np.maximum}[name]
        # reduceat over [lo, lo+1, hi) pairs: each window reduced on its own, in order
        idx = np.empty(2 * len(lo), dtype=np.int64)
        idx[0::2] = starts_ok
        idx[1::2] = np.minimum(np.where(present, hi, starts_ok + 1), len(values))
        padded = np.append(values, 0.0)
        reduced = reducer.reduceat(padded, idx)[0::2]
        if name == "avg_over_time":
            reduced = reduced / np.maximum(count, 1)
        return reduced, present
    raise Unsupported(name)


def _aggregate(op: str, members: list[tuple[Arr, Arr]], n: int) -> tuple[Arr, Arr]:
    present = np.zeros(n, dtype=bool)
    count = np.zeros(n)
    value = np.zeros(n)
    mean = np.zeros(n)
    for v, p in members:
        first = p & ~present
        more = p & present
        count = count + p
        if op == "sum":
            value = np.where(first, v, np.where(more, value + v, value))
        elif op == "avg":
            step = np.where(more, v / np.where(more, count, 1)
                            - mean / np.where(more, count, 1), 0.0)
            keep_inf = more & np.isinf(mean) & (
                (np.isinf(v) & ((mean > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v)))
            mean = np.where(first, v, np.where(keep_inf, mean, mean + step))
        elif op == "max":
            better = more & ((value < v) | np.isnan(value))
            value = np.where(first | better, v, value)
        elif op == "min":
            better = more & ((value > v) | np.isnan(value))
            value = np.where(first | better, v, value)
        present |= p
    if op == "avg":
        return mean, present
    if op == "count":
        return count, present
    if op == "group":
        return np.ones(n), present
    return value, present


def _bucket_quantile(q: Arr, buckets: list[tuple[float, Arr, Arr]], n: int) -> tuple[Arr, Arr]:
    """kade.metrics.functions.bucket_quantile at every step (a bucket absent at a step is
    left out of that step, as it is from the step's vector)."""
    buckets = sorted(buckets, key=lambda b: b[0])
    bounds = sorted({b for b, _, _ in buckets})
    counts = np.zeros((len(bounds), n))
    has = np.zeros((len(bounds), n), dtype=bool)
    for bound, v, p in buckets:
        i = bounds.index(bound)
        counts[i] = counts[i] + np.where(p, v, 0.0)
        has[i] |= p
    present = has.any(axis=0)
    everywhere = np.asarray(has.all(axis=0))
    if not math.isinf(bounds[-1]) or not everywhere[present].all():
        raise Unsupported("buckets absent at some steps")
    counts = np.maximum.accumulate(counts, axis=0)
    result = np.full(n, np.nan)
    if len(bounds) < 2:
        return result, present
    total = counts[-1]
    rank = q * total
    reached = counts[:-1] >= rank
    b = np.where(reached.any(axis=0), reached.argmax(axis=0), len(bounds) - 1)
    upper = np.asarray(bounds)
    bucket_end = upper[np.minimum(b, len(bounds) - 1)]
    bucket_start = np.where(b > 0, upper[np.maximum(b - 1, 0)], 0.0)
    below = np.where(b > 0, counts[np.maximum(b - 1, 0), np.arange(n)], 0.0)
    in_bucket = counts[np.minimum(b, len(bounds) - 1), np.arange(n)] - below
    value = bucket_start + (bucket_end - bucket_start) * ((rank - below) / in_bucket)
    value = np.where(b == len(bounds) - 1, upper[-2], value)
    value = np.where((b == 0) & (upper[0] <= 0), upper[0], value)
    value = np.where(total == 0, np.nan, value)
    value = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, value))
    value = np.where(np.isnan(q), np.nan, value)
    return value, present
