"""Series as the query engine reads them, and the selection of series by label matchers.

A series is a label set and its samples (integer milliseconds, float values) in time order.
Whatever keeps samples (the node's metrics store, a list in a test) answers `select` with the
series whose labels match and their samples in a time window; the engine does the rest.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, Protocol, TypeVar, runtime_checkable

from kade.regexps import compile_pattern

MatchOp = Literal["=", "!=", "=~", "!~"]
NAME = "__name__"

Labels = tuple[tuple[str, str], ...]  # sorted by name; no empty values


def millis(d: timedelta | None) -> int:
    """A duration of the parsed query (`5m`, an offset) in milliseconds; None: 0."""
    return 0 if d is None else int(round(d.total_seconds() * 1000))


def labels_of(mapping: dict[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


@dataclass(frozen=True)
class Matcher:
    name: str
    op: MatchOp
    value: str
    _regex: object = field(default=None, compare=False, repr=False)

    @staticmethod
    def of(name: str, op: MatchOp, value: str) -> Matcher:
        regex = None
        if op in ("=~", "!~"):
            try:  # anchored at both ends, `.` matching newlines: as Prometheus' matchers
                regex = compile_pattern(f"^(?s:{value})$")
            except ValueError as e:
                raise ValueError(f"{name}{op}{value!r}: not a valid regular expression: "
                                 f"{e}") from None
        return Matcher(name, op, value, regex)

    def matches(self, value: str) -> bool:
        """A label that is not there matches as the empty value."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = self._regex.search(value) is not None  # type: ignore[attr-defined]
        return found if self.op == "=~" else not found



def selector_text(matchers: Sequence[Matcher]) -> str:
    """Matchers as a PromQL series selector (`{__name__="up",job=~"a.*"}`) that parses back
    to the same matchers: what a server sends a node (JSON's string escapes are PromQL's)."""
    return "{" + ",".join(f"{m.name}{m.op}{json.dumps(m.value, ensure_ascii=False)}"
                          for m in matchers) + "}"


def matches_all(labels: Labels, matchers: Sequence[Matcher]) -> bool:
    got = dict(labels)
    return all(m.matches(got.get(m.name, "")) for m in matchers)


@dataclass
class Series:
    labels: Labels
    times: list[int]  # ms, ascending
    values: list[float]

    def window(self, low: int, high: int) -> tuple[int, int]:
        """The indexes [i, j) of the samples with low <= time <= high."""
        return bisect_left(self.times, low), bisect_right(self.times, high)


class Source(Protocol):
    def select(self, matchers: Sequence[Matcher], low: int, high: int) -> Iterable[Series]:
        """The series matching every matcher, with (at least) their samples in
        [low, high] ms; series with no sample there may be left out."""
        ...


S_co = TypeVar("S_co", covariant=True)


@runtime_checkable
class QuerySources(Protocol[S_co]):
    """Where each query (or round of alert rules) gets the source it reads: a server's is its
    own for each, which reads once which nodes to ask and records those that did not answer."""

    async def for_query(self, timeout: float | None = None) -> S_co:
        """The source of one query; `timeout`: seconds the query may take in all, which
        bounds its waiting for the nodes too (None: only each node's own bound)."""
        ...


@runtime_checkable
class Partial(Protocol):
    """A source that may have answered without some nodes' series."""

    def warnings(self) -> list[str]:
        """Every node left out of the answers so far, and why (down ones included)."""
        ...

    def silent(self) -> list[str]:
        """The nodes that should have answered (their agent is alive) and did not."""
        ...


class MemorySource:
    """Series held in memory: the engine's tests, and answers built from several nodes'."""

    def __init__(self, series: Iterable[Series] = ()) -> None:
        self.series = {s.labels: s for s in series}

    def add(self, labels: dict[str, str], time_ms: int, value: float) -> None:
        key = labels_of(labels)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series(key, [], [])
        i = bisect_right(s.times, time_ms)
        s.times.insert(i, time_ms)
        s.values.insert(i, value)

    def select(self, matchers: Sequence[Matcher], low: int, high: int) -> Iterable[Series]:
        for s in self.series.values():
            if matches_all(s.labels, matchers):
                i, j = s.window(low, high)
                if i < j:
                    yield s
