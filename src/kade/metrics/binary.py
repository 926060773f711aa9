"""PromQL's binary operators: arithmetic, comparisons (filtering, or 0/1 with `bool`), and
the set operators, between scalars and vectors, with Prometheus' vector matching."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import promql_parser as pp

from kade.metrics.series import NAME, Labels
from kade.metrics.values import Sample, Scalar, Value, Vector, drop_name

if TYPE_CHECKING:
    from kade.metrics.promql import Evaluator

COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SETS = frozenset({"and", "or", "unless"})
DROPS_NAME = frozenset({"+", "-", "*", "/", "%", "^"})  # not atan2, as in Prometheus


def _div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _mod(a: float, b: float) -> float:
    if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return math.nan
    return math.fmod(a, b)


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return math.inf
    except ValueError:  # a negative number to a fractional power, 0 to a negative one
        if a == 0:
            return math.inf
        return math.nan


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _div,
    "%": _mod,
    "^": _pow,
    "atan2": math.atan2,
}
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


def _apply(op: str, a: float, b: float) -> tuple[float, bool]:
    """The value and whether to keep it (comparisons keep the left value when true)."""
    if op in COMPARE:
        return a, COMPARE[op](a, b)
    return ARITHMETIC[op](a, b), True


def binary(ev: Evaluator, node: Any, t: int) -> Value:
    op = str(node.op)
    mod = node.modifier
    return_bool = bool(mod is not None and mod.return_bool)
    lhs, rhs = ev.eval(node.lhs, t), ev.eval(node.rhs, t)
    if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
        value, keep = _apply(op, lhs.value, rhs.value)
        if op in COMPARISONS:
            return Scalar(1.0 if keep else 0.0)
        return Scalar(value)
    if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
        return _with_scalar(op, lhs, rhs.value, return_bool, swap=False)
    if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
        return _with_scalar(op, rhs, lhs.value, return_bool, swap=True)
    if isinstance(lhs, Vector) and isinstance(rhs, Vector):
        if op in SETS:
            return _set_op(op, lhs, rhs, mod)
        return _vectors(op, lhs, rhs, mod, return_bool)
    from kade.metrics.promql import QueryError
    raise QueryError(f"binary {op}: operands must be scalars or instant vectors")


def _with_scalar(op: str, vec: Vector, scalar: float, return_bool: bool, swap: bool) -> Vector:
    out = []
    for s in vec.samples:
        a, b = (scalar, s.value) if swap else (s.value, scalar)
        value, keep = _apply(op, a, b)
        if op in COMPARISONS:
            value = s.value  # the vector's value, on whichever side it stands
            if return_bool:
                out.append(Sample(drop_name(s.labels), 1.0 if keep else 0.0))
            elif keep:
                out.append(Sample(s.labels, value))
        else:
            out.append(Sample(drop_name(s.labels) if op in DROPS_NAME else s.labels, value))
    return Vector(out)


def _matching(mod: Any) -> tuple[bool, tuple[str, ...]]:
    """(on, labels): `on(...)` keeps only those labels for matching; otherwise the name and
    the `ignoring(...)` labels are left out."""
    if mod is None or mod.matching is None:
        return False, ()
    return mod.matching.type == pp.LabelModifierType.Include, tuple(mod.matching.labels)


def signature(labels: Labels, on: bool, names: tuple[str, ...]) -> Labels:
    if on:
        return tuple(kv for kv in labels if kv[0] in names)
    return tuple(kv for kv in labels if kv[0] != NAME and kv[0] not in names)


def _set_op(op: str, lhs: Vector, rhs: Vector, mod: Any) -> Vector:
    on, names = _matching(mod)
    right = {signature(s.labels, on, names) for s in rhs.samples}
    if op == "and":
        return Vector([s for s in lhs.samples if signature(s.labels, on, names) in right])
    if op == "unless":
        return Vector([s for s in lhs.samples if signature(s.labels, on, names) not in right])
    left = {signature(s.labels, on, names) for s in lhs.samples}
    return Vector(lhs.samples + [s for s in rhs.samples
                                 if signature(s.labels, on, names) not in left])


def _vectors(op: str, lhs: Vector, rhs: Vector, mod: Any, return_bool: bool) -> Vector:
    from kade.metrics.promql import QueryError

    on, names = _matching(mod)
    card = mod.card if mod is not None else pp.VectorMatchCardinality.OneToOne
    include = tuple(mod.group_labels or ()) if mod is not None else ()
    swap = card == pp.VectorMatchCardinality.OneToMany
    many, one = (rhs, lhs) if swap else (lhs, rhs)
    by_sig: dict[Labels, Sample] = {}
    for s in one.samples:
        sig = signature(s.labels, on, names)
        if sig in by_sig:
            side = "left" if swap else "right"
            raise QueryError(f"found duplicate series for the match group {dict(sig)} on the "
                             f"{side} hand-side of the operation: "
                             f"[{dict(by_sig[sig].labels)}, {dict(s.labels)}];many-to-many "
                             f"matching not allowed: matching labels must be unique on one side")
        by_sig[sig] = s
    one_to_one = card == pp.VectorMatchCardinality.OneToOne
    seen: set[Labels] = set()
    out: list[Sample] = []
    for s in many.samples:
        sig = signature(s.labels, on, names)
        other = by_sig.get(sig)
        if other is None:
            continue
        a, b = (other.value, s.value) if swap else (s.value, other.value)
        value, keep = _apply(op, a, b)
        if return_bool:
            value, keep = (1.0 if keep else 0.0), True
        if not keep:
            continue
        labels = _result_labels(s.labels, other.labels, op, on, names, one_to_one, include)
        if return_bool:
            labels = drop_name(labels)
        if one_to_one:
            if sig in seen:
                raise QueryError("multiple matches for labels: many-to-one matching must be "
                                 "explicit (group_left/group_right)")
            seen.add(sig)
        elif labels in seen:
            raise QueryError("multiple matches for labels: grouping labels must ensure "
                             "unique matches")
        else:
            seen.add(labels)
        out.append(Sample(labels, value))
    return Vector(out)


def _result_labels(many: Labels, one: Labels, op: str, on: bool, names: tuple[str, ...],
                   one_to_one: bool, include: tuple[str, ...]) -> Labels:
    got = dict(many)
    if op in DROPS_NAME:
        got.pop(NAME, None)
    if one_to_one:
        if on:
            got = {k: v for k, v in got.items() if k in names}
        else:
            for name in names:
                got.pop(name, None)
    other = dict(one)
    for name in include:  # group_left(...)/group_right(...) labels come from the "one" side
        if other.get(name):
            got[name] = other[name]
        else:
            got.pop(name, None)
    return tuple(sorted(got.items()))
