"""PromQL evaluated over kade's series, with Prometheus' semantics (its 2.x engine: the one
people's dashboards and alert rules were written against).

The expression is parsed by `promql-parser` (a maintained PromQL parser); this module walks
its tree. Instant queries evaluate at one time; range queries at every step, each step as
an instant query would (that is what Prometheus does). Series are fetched once per query
for the whole window a selector needs, then sliced per step.

Covered: selectors with every matcher, `offset`, `@`, subqueries; arithmetic, comparison
(with `bool`), set operators, vector matching with `on`/`ignoring` and
`group_left`/`group_right`; every aggregation but `count_values`; the functions of
`kade.metrics.functions`. Anything else is refused with its name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import promql_parser as pp

from kade.metrics import functions
from kade.metrics.aggregate import aggregate
from kade.metrics.binary import binary
from kade.metrics.columnar import Columnar, Unsupported
from kade.metrics.series import NAME, Matcher, MatchOp, Series, Source, millis
from kade.metrics.values import (
    Matrix,
    RangeSeries,
    Sample,
    Scalar,
    String,
    Value,
    Vector,
)

LOOKBACK_MS = 5 * 60 * 1000  # an instant selector sees a series' sample up to 5 minutes old
MAX_SAMPLES = 5_000_000  # samples one query may load
MAX_STEPS = 11_000  # points per series of a range query (Prometheus' limit)
TIMEOUT = 30.0  # seconds of evaluation

_OPS: list[tuple[Any, MatchOp]] = [(pp.MatchOp.Equal, "="), (pp.MatchOp.NotEqual, "!="),
                                   (pp.MatchOp.Re, "=~"), (pp.MatchOp.NotRe, "!~")]


def _op(op: Any) -> MatchOp:
    return next(name for value, name in _OPS if value == op)


class QueryError(ValueError):
    """The query cannot be answered; the message says why (Prometheus' `bad_data`)."""


def parse(query: str) -> Any:
    try:
        return pp.parse(query)
    except (ValueError, RuntimeError) as e:
        raise QueryError(f"parse error: {e}") from None



@dataclass
class _Selection:
    series: list[Series]


class Evaluator:
    """One query's evaluation: `start`..`end` are the times it will be evaluated at."""

    def __init__(self, source: Source, start: int, end: int, *,
                 lookback: int = LOOKBACK_MS, max_samples: int = MAX_SAMPLES,
                 timeout: float = TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.start, self.end = start, end
        self.lookback = lookback
        self.max_samples = max_samples
        self.loaded = 0
        self.deadline = clock() + timeout
        self.clock = clock
        self._cache: dict[tuple[str, int, int], _Selection] = {}
        self._extra = 0  # how far subqueries reach back beyond a selector's own window

    # -- entry points --------------------------------------------------------------------

    def instant(self, expr: Any, t: int) -> Value:
        self._extra = _subquery_reach(expr)
        return self.eval(expr, t)

    def range(self, expr: Any, step: int, columnar: bool = True) -> Matrix:
        """Every step at once (kade.metrics.columnar) where it can, else step by step."""
        self._extra = _subquery_reach(expr)
        kind = _kind(expr)
        if kind not in ("scalar", "vector"):
            raise QueryError(f'invalid expression type "{kind}" for range query, must be '
                             f"Scalar or instant Vector")
        if (self.end - self.start) // step + 1 > MAX_STEPS:
            raise QueryError("exceeded maximum resolution of 11,000 points per timeseries. "
                             "Try decreasing the query resolution (?step=XX)")
        if columnar:
            try:
                return Columnar(self, list(range(self.start, self.end + 1, step))).matrix(expr)
            except Unsupported:
                self._cache.clear()
                self.loaded = 0
        out: dict[tuple[tuple[str, str], ...], RangeSeries] = {}
        t = self.start
        while t <= self.end:
            self._check_time()
            value = self.eval(expr, t)
            samples = ([Sample((), value.value)] if isinstance(value, Scalar)
                       else value.samples if isinstance(value, Vector) else [])
            for s in samples:
                rs = out.get(s.labels)
                if rs is None:
                    rs = out[s.labels] = RangeSeries(s.labels, [], [])
                rs.times.append(t)
                rs.values.append(s.value)
            t += step
        return Matrix(sorted(out.values(), key=lambda s: s.labels))

    # -- the tree ------------------------------------------------------------------------

    def eval(self, node: Any, t: int) -> Value:  # noqa: PLR0911 - one case per node kind
        if isinstance(node, pp.NumberLiteral):
            return Scalar(node.val)
        if isinstance(node, pp.StringLiteral):
            return String(node.val)
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr, t)
        if isinstance(node, pp.UnaryExpr):
            return _negate(self.eval(node.expr, t))
        if isinstance(node, pp.VectorSelector):
            return self.vector(node, t)
        if isinstance(node, pp.MatrixSelector):
            return self.matrix(node, t)
        if isinstance(node, pp.SubqueryExpr):
            return self.subquery(node, t)
        if isinstance(node, pp.Call):
            return functions.call(self, node, t)
        if isinstance(node, pp.AggregateExpr):
            return aggregate(self, node, t)
        if isinstance(node, pp.BinaryExpr):
            return binary(self, node, t)
        raise QueryError(f"unsupported expression: {node}")

    def reference_time(self, node: Any, t: int) -> int:
        """The time a selector or subquery looks at when evaluated at `t` (@, offset)."""
        at = node.at
        if at is not None:
            if at.type == pp.AtModifierType.Start:
                t = self.start
            elif at.type == pp.AtModifierType.End:
                t = self.end
            else:
                t = round(at.at.timestamp() * 1000)
        return t - millis(node.offset)

    def _select(self, vs: Any, back: int, ref: int) -> list[Series]:
        matchers = selector_matchers(vs)
        fixed = vs.at is not None
        low = (ref if fixed else self.start - millis(vs.offset)) - back - self._extra
        high = ref if fixed else self.end - millis(vs.offset)
        key = (str(vs), back, low if fixed else 0)
        got = self._cache.get(key)
        if got is None:
            series = sorted(self.source.select(matchers, low, high), key=lambda s: s.labels)
            for s in series:
                i, j = s.window(low, high)
                self.count_loaded(j - i)
            got = self._cache[key] = _Selection(series)
        return got.series

    def count_loaded(self, samples: int) -> None:
        self.loaded += samples
        if self.loaded > self.max_samples:
            raise QueryError("query processing would load too many samples into memory in "
                             "query execution")

    def vector(self, vs: Any, t: int) -> Vector:
        ref = self.reference_time(vs, t)
        out = []
        for s in self._select(vs, self.lookback, ref):
            i, j = s.window(ref - self.lookback, ref)
            if i < j:
                out.append(Sample(s.labels, s.values[j - 1], s.times[j - 1]))
        return Vector(out)

    def matrix(self, ms: Any, t: int) -> Matrix:
        vs = ms.vector_selector
        ref = self.reference_time(vs, t)
        rng = millis(ms.range)
        out = []
        for s in self._select(vs, rng, ref):
            i, j = s.window(ref - rng, ref)
            if i < j:
                out.append(RangeSeries(s.labels, s.times[i:j], s.values[i:j]))
        return Matrix(out)

    def subquery(self, sq: Any, t: int) -> Matrix:
        ref = self.reference_time(sq, t)
        rng = millis(sq.range)
        step = millis(sq.step) or 60_000  # Prometheus' default evaluation interval
        first = (ref - rng) // step * step  # aligned to the step, as Prometheus does
        if first < ref - rng:
            first += step
        out: dict[tuple[tuple[str, str], ...], RangeSeries] = {}
        at = first
        while at <= ref:
            value = self.eval(sq.expr, at)
            samples = ([Sample((), value.value)] if isinstance(value, Scalar)
                       else value.samples if isinstance(value, Vector) else [])
            for s in samples:
                rs = out.setdefault(s.labels, RangeSeries(s.labels, [], []))
                rs.times.append(at)
                rs.values.append(s.value)
            at += step
        return Matrix(list(out.values()))

    def _check_time(self) -> None:
        if self.clock() > self.deadline:
            raise QueryError("query timed out in expression evaluation")

    # -- helpers for the operator modules ------------------------------------------------

    def vector_of(self, node: Any, t: int) -> Vector:
        value = self.eval(node, t)
        if not isinstance(value, Vector):
            raise QueryError(f"expected an instant vector, got {_kind(node)}: {node}")
        return value

    def scalar_of(self, node: Any, t: int) -> float:
        value = self.eval(node, t)
        if not isinstance(value, Scalar):
            raise QueryError(f"expected a scalar, got {_kind(node)}: {node}")
        return value.value

    def matrix_of(self, node: Any, t: int) -> Matrix:
        value = self.eval(node, t)
        if not isinstance(value, Matrix):
            raise QueryError(f"expected a range vector, got {_kind(node)}: {node}")
        return value


def selector_matchers(vs: Any) -> list[Matcher]:
    matchers = [Matcher.of(m.name, _op(m.op), m.value) for m in vs.matchers.matchers]
    if vs.name:
        matchers.append(Matcher.of(NAME, "=", vs.name))
    if vs.matchers.or_matchers:
        raise QueryError(f"{vs}: 'or' inside a selector is not supported")
    return matchers


def _negate(value: Value) -> Value:
    if isinstance(value, Scalar):
        return Scalar(-value.value)
    if isinstance(value, Vector):
        return Vector([Sample(s.labels, -s.value).without_name() for s in value.samples])
    raise QueryError("unary minus needs a scalar or an instant vector")


def _kind(node: Any) -> str:
    """The PromQL type of an expression: scalar, string, vector or range vector."""
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr):
        return _kind(node.expr)
    if isinstance(node, pp.NumberLiteral):
        return "scalar"
    if isinstance(node, pp.StringLiteral):
        return "string"
    if isinstance(node, pp.MatrixSelector | pp.SubqueryExpr):
        return "range vector"
    if isinstance(node, pp.Call):
        return {"scalar": "scalar", "time": "scalar", "pi": "scalar"}.get(
            node.func.name, "vector")
    if isinstance(node, pp.BinaryExpr):
        kinds = {_kind(node.lhs), _kind(node.rhs)}
        return "scalar" if kinds == {"scalar"} else "vector"
    return "vector"


def _subquery_reach(node: Any) -> int:
    """How far back (ms) subqueries make their inner selectors reach, at most."""
    reach = 0
    for child in _children(node):
        reach = max(reach, _subquery_reach(child))
    if isinstance(node, pp.SubqueryExpr):
        reach += millis(node.range) + millis(node.offset) + (millis(node.step) or 60_000)
    return reach


def _children(node: Any) -> list[Any]:
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
        return [node.expr]
    if isinstance(node, pp.AggregateExpr):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, pp.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, pp.Call):
        return list(node.args)
    return []


def instant_query(source: Source, query: str, t: int, **limits: Any) -> Value:
    expr = parse(query)
    return Evaluator(source, t, t, **limits).instant(expr, t)


def range_query(source: Source, query: str, start: int, end: int, step: int,
                columnar: bool = True, **limits: Any) -> Matrix:
    if step <= 0:
        raise QueryError("zero or negative query resolution step widths are not accepted. "
                         "Try a positive integer")
    if end < start:
        raise QueryError("end timestamp must not be before start time")
    expr = parse(query)
    return Evaluator(source, start, end, **limits).range(expr, step, columnar)

