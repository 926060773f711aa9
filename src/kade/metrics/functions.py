"""PromQL's functions, as Prometheus 2.x computes them (rate's extrapolation, the histogram
quantile's bucket interpolation, the linear regression of `deriv`/`predict_linear`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import promql_parser as pp

from kade.metrics.aggregate import quantile
from kade.metrics.series import NAME, Labels, millis
from kade.metrics.values import Matrix, RangeSeries, Sample, Scalar, Value, Vector, drop_name
from kade.regexps import compile_pattern

if TYPE_CHECKING:
    from kade.metrics.promql import Evaluator



def extrapolated(s: RangeSeries, start: int, end: int, counter: bool, rate: bool,
                 range_s: float) -> float | None:
    """rate/increase/delta of the samples in [start, end] (ms)."""
    if len(s.values) < 2:
        return None
    result = s.values[-1] - s.values[0]
    if counter:
        last = 0.0
        for v in s.values:
            if v < last:
                result += last
            last = v
    to_start = (s.times[0] - start) / 1000
    to_end = (end - s.times[-1]) / 1000
    sampled = (s.times[-1] - s.times[0]) / 1000
    average = sampled / (len(s.values) - 1)
    if counter and result > 0 and s.values[0] >= 0:
        to_zero = sampled * (s.values[0] / result)
        if to_zero < to_start:
            to_start = to_zero
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    result = result * (interval / sampled)
    if rate:
        result /= range_s
    return result


def _instant(s: RangeSeries, rate: bool) -> float | None:
    if len(s.values) < 2:
        return None
    last, prev = s.values[-1], s.values[-2]
    result = last if rate and last < prev else last - prev
    interval = s.times[-1] - s.times[-2]
    if interval == 0:
        return None
    if rate:
        result /= interval / 1000
    return result


def _kahan(inc: float, total: float, c: float) -> tuple[float, float]:
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def linear_regression(s: RangeSeries, intercept_time: int) -> tuple[float, float]:
    n = 0.0
    sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    init = s.values[0]
    const = True
    for i, (t, v) in enumerate(zip(s.times, s.values, strict=True)):
        if const and i > 0 and v != init:
            const = False
        n += 1
        x = (t - intercept_time) / 1000
        sum_x, c_x = _kahan(x, sum_x, c_x)
        sum_y, c_y = _kahan(v, sum_y, c_y)
        sum_xy, c_xy = _kahan(x * v, sum_xy, c_xy)
        sum_x2, c_x2 = _kahan(x * x, sum_x2, c_x2)
    if const:
        if math.isinf(init):
            return math.nan, math.nan
        return 0.0, init
    sum_x, sum_y, sum_xy, sum_x2 = sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2
    cov = sum_xy - sum_x * sum_y / n
    var = sum_x2 - sum_x * sum_x / n
    slope = cov / var
    return slope, sum_y / n - slope * sum_x / n


def _mean(values: list[float]) -> float:
    mean = c = 0.0
    count = 0.0
    for v in values:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean, c = _kahan(v / count - mean / count, mean, c)
    return mean + c if not math.isinf(mean) else mean


def _variance(values: list[float]) -> float:
    count = mean = c_mean = aux = c_aux = 0.0
    for v in values:
        count += 1
        delta = v - (mean + c_mean)
        mean, c_mean = _kahan(delta / count, mean, c_mean)
        aux, c_aux = _kahan(delta * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def _sum(values: list[float]) -> float:
    total = c = 0.0
    for v in values:
        total, c = _kahan(v, total, c)
    return total + c if not math.isinf(total) else total


def _changes(values: list[float]) -> float:
    changes = 0
    prev = values[0]
    for v in values[1:]:
        if not (v == prev or (math.isnan(v) and math.isnan(prev))):
            changes += 1
        prev = v
    return float(changes)


def _resets(values: list[float]) -> float:
    return float(sum(1 for a, b in zip(values, values[1:], strict=False) if b < a))


_OVER_TIME: dict[str, Callable[[list[float]], float]] = {
    "avg_over_time": _mean,
    "sum_over_time": _sum,
    "count_over_time": lambda v: float(len(v)),
    "min_over_time": lambda v: _nan_min(v),
    "max_over_time": lambda v: _nan_max(v),
    "stddev_over_time": lambda v: math.sqrt(_variance(v)),
    "stdvar_over_time": _variance,
    "changes": _changes,
    "resets": _resets,
    "present_over_time": lambda v: 1.0,
}


def _nan_min(values: list[float]) -> float:
    out = values[0]
    for v in values[1:]:
        if v < out or math.isnan(out):
            out = v
    return out


def _nan_max(values: list[float]) -> float:
    out = values[0]
    for v in values[1:]:
        if v > out or math.isnan(out):
            out = v
    return out


def _round(v: float, to: float = 1.0) -> float:
    inverse = 1.0 / to
    return math.floor(v * inverse + 0.5) / inverse


def _safe(f: Callable[[float], float]) -> Callable[[float], float]:
    def apply(v: float) -> float:
        try:
            return f(v)
        except (ValueError, OverflowError):
            if f is math.exp:
                return math.inf
            return -math.inf if v == 0 else math.nan
    return apply


_SIMPLE: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": lambda v: v if math.isinf(v) or math.isnan(v) else float(math.ceil(v)),
    "floor": lambda v: v if math.isinf(v) or math.isnan(v) else float(math.floor(v)),
    "exp": _safe(math.exp),
    "ln": _safe(math.log),
    "log2": _safe(math.log2),
    "log10": _safe(math.log10),
    "sqrt": _safe(math.sqrt),
    "sgn": lambda v: v if math.isnan(v) else float((v > 0) - (v < 0)),
}


def call(ev: Evaluator, node: Any, t: int) -> Value:  # noqa: C901, PLR0911, PLR0912
    from kade.metrics.promql import QueryError

    name = node.func.name
    args = list(node.args)
    if name in ("rate", "increase", "delta", "irate", "idelta", "deriv", "predict_linear",
                "quantile_over_time", "last_over_time", "absent_over_time") or (
                    name in _OVER_TIME):
        matrix_arg = args[1] if name == "quantile_over_time" else args[0]
        m = ev.matrix_of(matrix_arg, t)
        if name == "absent_over_time":
            if m.series:
                return Vector([])
            return Vector([Sample(_absent_labels(matrix_arg), 1.0)])
        return Vector(_over_range(ev, name, args, matrix_arg, m, t))
    if name in _SIMPLE:
        f = _SIMPLE[name]
        return Vector([Sample(drop_name(s.labels), f(s.value))
                       for s in ev.vector_of(args[0], t).samples])
    if name == "round":
        to = ev.scalar_of(args[1], t) if len(args) > 1 else 1.0
        return Vector([Sample(drop_name(s.labels), _round(s.value, to))
                       for s in ev.vector_of(args[0], t).samples])
    if name in ("clamp", "clamp_min", "clamp_max"):
        vec = ev.vector_of(args[0], t)
        low = ev.scalar_of(args[1], t) if name != "clamp_max" else -math.inf
        high = (ev.scalar_of(args[2], t) if name == "clamp"
                else ev.scalar_of(args[1], t) if name == "clamp_max" else math.inf)
        if low > high:
            return Vector([])
        return Vector([Sample(drop_name(s.labels),
                              s.value if math.isnan(s.value) else max(low, min(high, s.value)))
                       for s in vec.samples])
    if name == "time":
        return Scalar(t / 1000)
    if name == "pi":
        return Scalar(math.pi)
    if name == "vector":
        return Vector([Sample((), ev.scalar_of(args[0], t))])
    if name == "scalar":
        vec = ev.vector_of(args[0], t)
        return Scalar(vec.samples[0].value if len(vec.samples) == 1 else math.nan)
    if name == "timestamp":
        vec = ev.vector_of(args[0], t)
        return Vector([Sample(drop_name(s.labels), (s.time if s.time is not None else t) / 1000)
                       for s in vec.samples])
    if name == "absent":
        if ev.vector_of(args[0], t).samples:
            return Vector([])
        return Vector([Sample(_absent_labels(args[0]), 1.0)])
    if name in ("sort", "sort_desc"):
        vec = ev.vector_of(args[0], t)
        ordered = sorted(vec.samples, key=lambda s: (math.isnan(s.value), s.value),
                         reverse=name == "sort_desc")
        return Vector(ordered)
    if name == "histogram_quantile":
        return _histogram_quantile(ev.scalar_of(args[0], t), ev.vector_of(args[1], t))
    if name == "label_replace":
        return _label_replace(ev.vector_of(args[0], t), *[a.val for a in args[1:]])
    if name == "label_join":
        return _label_join(ev.vector_of(args[0], t), args[1].val, args[2].val,
                           [a.val for a in args[3:]])
    raise QueryError(f"function {name}() is not supported")


def _over_range(ev: Evaluator, name: str, args: list[Any], matrix_arg: Any, m: Matrix,
                t: int) -> list[Sample]:
    out = []
    # the window the range function looks at ends where its selector's does (offset, @)
    at = matrix_arg.vector_selector if isinstance(matrix_arg, pp.MatrixSelector) else matrix_arg
    end = ev.reference_time(at, t)
    range_ms = millis(matrix_arg.range)
    start = end - range_ms
    for s in m.series:
        value: float | None
        if name in ("rate", "increase", "delta"):
            value = extrapolated(s, start, end, counter=name != "delta", rate=name == "rate",
                                 range_s=range_ms / 1000)
        elif name in ("irate", "idelta"):
            value = _instant(s, rate=name == "irate")
        elif name == "deriv":
            value = linear_regression(s, s.times[0])[0] if len(s.values) >= 2 else None
        elif name == "predict_linear":
            if len(s.values) < 2:
                continue
            slope, intercept = linear_regression(s, t)
            value = slope * ev.scalar_of(args[1], t) + intercept
        elif name == "quantile_over_time":
            value = quantile(ev.scalar_of(args[0], t), s.values)
        elif name == "last_over_time":
            out.append(Sample(s.labels, s.values[-1]))
            continue
        else:
            value = _OVER_TIME[name](s.values)
        if value is not None:
            out.append(Sample(drop_name(s.labels), value))
    return out


def _absent_labels(arg: Any) -> Labels:
    vs = arg.vector_selector if isinstance(arg, pp.MatrixSelector) else arg
    if not isinstance(vs, pp.VectorSelector):
        return ()
    from kade.metrics.promql import selector_matchers
    found: dict[str, str] = {}
    twice: set[str] = set()
    for m in selector_matchers(vs):
        if m.name == NAME:
            continue
        if m.op == "=" and m.name not in found:
            found[m.name] = m.value
        elif m.op == "=":
            twice.add(m.name)
    return tuple(sorted((k, v) for k, v in found.items() if k not in twice))


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if not buckets or not math.isinf(buckets[-1][0]):
        return math.nan
    merged: list[list[float]] = []
    for bound, count in buckets:  # buckets of one bound (from several series) added up
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    for i in range(1, len(merged)):  # counts never fall (rounding in rates may make them)
        if merged[i][1] < merged[i - 1][1]:
            merged[i][1] = merged[i - 1][1]
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def _histogram_quantile(q: float, vec: Vector) -> Vector:
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for s in vec.samples:
        labels = dict(s.labels)
        le = labels.pop("le", None)
        if le is None:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        labels.pop(NAME, None)
        groups.setdefault(tuple(sorted(labels.items())), []).append((bound, s.value))
    return Vector([Sample(k, bucket_quantile(q, b)) for k, b in groups.items()])


_GO_GROUP = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand(template: str, match: Any) -> str:
    """Go's Regexp.Expand: $1, ${1}, $name; an unknown group expands to nothing."""
    def one(m: re.Match[str]) -> str:
        ref = m.group(1) or m.group(2)
        try:
            got = match.group(int(ref)) if ref.isdigit() else match.group(ref)
        except (IndexError, KeyError, ValueError):
            return ""
        return got or ""
    return _GO_GROUP.sub(one, template.replace("$$", "\0")).replace("\0", "$")


def _relabeled(vec: Vector, change: Callable[[dict[str, str]], str | None],
               dst: str) -> Vector:
    """Each sample with `dst` set to what `change` gives (None: as it was; "": removed)."""
    out = []
    for s in vec.samples:
        labels = dict(s.labels)
        value = change(labels)
        if value:
            labels[dst] = value
        elif value is not None:
            labels.pop(dst, None)
        out.append(Sample(tuple(sorted(labels.items())), s.value, s.time))
    return Vector(out)


def _label_replace(vec: Vector, dst: str, repl: str, src: str, regex: str) -> Vector:
    from kade.metrics.promql import QueryError
    try:
        pattern = compile_pattern(f"^(?s:{regex})$")
    except ValueError as e:
        raise QueryError(f"invalid regular expression in label_replace(): {regex}: {e}") \
            from None

    def change(labels: dict[str, str]) -> str | None:
        m = pattern.search(labels.get(src, ""))
        return None if m is None else _expand(repl, m)
    return _relabeled(vec, change, dst)


def _label_join(vec: Vector, dst: str, sep: str, srcs: list[str]) -> Vector:
    return _relabeled(vec, lambda labels: sep.join(labels.get(src, "") for src in srcs), dst)
