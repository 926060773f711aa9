"""A `kade server`'s metrics: its own series and every node's, read when a query asks.

Who keeps what: each node keeps its tasks' samples, its router's and its disk's
(`<data>/metrics/` of `kade agent`); each server keeps what the control plane knows (apps,
tasks, deployments, nodes up, its own disk: kade.metrics.cluster) in its own store. A query
on a server reads its own store and asks every live node with a listener
(`GET /node/v1/metrics/select`, kade.fanout: signed, concurrent, each node bounded in time),
never another server, so no series is counted twice.

The query engine (kade.metrics.promql) runs in a worker thread and calls `select`
synchronously; a `ClusterQuery` is made for each query on the event loop (it reads once
which nodes to ask) and runs each fan-out on that loop from the worker thread. The nodes that
did not answer are recorded: named in the answer's `warnings`, not asked again for the
query's other selectors (a hung node costs one wait, not one per selector), and the alerting
resolves no alert whose series may be missing (kade.alerts.state). A query with a time bound
waits for the nodes no longer than the time it has left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from kade.fanout import NodeFanOut, Unanswered
from kade.metrics.promql import QueryError
from kade.metrics.series import Labels, Matcher, Series, selector_text
from kade.metrics.tsdb import TSDB
from kade.metrics.wire import Arrays, load_series
from kade.model import Node

SELECT = "/node/v1/metrics/select"
SLACK = 2.0  # seconds beyond the nodes' own bound a worker waits for a fan-out
TIMED_OUT = "query timed out waiting for the nodes' series"


class NodeMetrics:
    """The query sources of a server: its own store and the nodes."""

    def __init__(self, fanout: NodeFanOut, local: TSDB) -> None:
        self.fanout = fanout
        self.local = local

    async def for_query(self, timeout: float | None = None) -> ClusterQuery:
        nodes, down = await self.fanout.nodes()
        return ClusterQuery(self.fanout, self.local, nodes, down, asyncio.get_running_loop(),
                            None if timeout is None else time.monotonic() + timeout)


class ClusterQuery:
    """One query's source (kade.metrics.series.Source, Partial): call it from a worker
    thread, never from the loop's own (it waits for the loop). `deadline`: the query's end
    (time.monotonic), if it has one."""

    def __init__(self, fanout: NodeFanOut, local: TSDB, nodes: Sequence[Node],
                 down: Sequence[Unanswered], loop: asyncio.AbstractEventLoop,
                 deadline: float | None = None) -> None:
        self.fanout = fanout
        self.local = local
        self.nodes = list(nodes)
        self.loop = loop
        self.deadline = deadline
        self.missing: dict[str, Unanswered] = {m.node: m for m in down}

    # -- what the engine and the API read ------------------------------------------------

    def select_arrays(self, matchers: Sequence[Matcher], low: int, high: int) -> list[Arrays]:
        answers = self._ask(_match(matchers) + [("start", str(low)), ("end", str(high))])
        return merge([self.local.select_arrays(matchers, low, high), *answers])

    def select(self, matchers: Sequence[Matcher], low: int, high: int) -> list[Series]:
        return [Series(labels, times.tolist(), values.tolist())
                for labels, times, values in self.select_arrays(matchers, low, high)]

    def label_sets(self, matchers: Sequence[Matcher], low: int, high: int) -> list[Labels]:
        """The label sets of the matching series, without their samples (/api/v1/series,
        /labels, /label/<name>/values)."""
        answers = self._ask(_match(matchers) + [
            ("start", str(low)), ("end", str(high)), ("want", "labels")])
        found = {s.labels: None for s in self.local.select(matchers, low, high)}
        found.update({labels: None for answer in answers for labels, _, _ in answer})
        return sorted(found)

    def latest(self, since_ms: int) -> list[tuple[Labels, int, float]]:
        """The last sample of every series, the nodes' with the server's (/metrics)."""
        now = int(self.fanout.clock() * 1000)
        answers = self._ask([("start", str(since_ms)), ("end", str(now)), ("want", "latest")])
        out = {labels: (t, v) for labels, t, v in self.local.latest(since_ms)}
        for answer in answers:
            for labels, times, values in answer:
                if len(times) and (labels not in out or out[labels][0] < times[-1]):
                    out[labels] = (int(times[-1]), float(values[-1]))
        return [(labels, t, v) for labels, (t, v) in sorted(out.items())]

    def warnings(self) -> list[str]:
        return [f"node {m.node} did not answer ({m.reason}): its series are missing"
                for m in sorted(self.missing.values(), key=lambda m: m.node)]

    def silent(self) -> list[str]:
        return sorted(m.node for m in self.missing.values() if not m.down)

    # -- asking --------------------------------------------------------------------------

    def _ask(self, params: list[tuple[str, str]]) -> list[list[Arrays]]:
        nodes = [n for n in self.nodes if n.name not in self.missing]  # failed: not again
        if not nodes:
            return []
        if _on_loop(self.loop):
            raise RuntimeError("ClusterQuery waits for the event loop: call it from a worker "
                               "thread (asyncio.to_thread)")
        wait = self.fanout.timeout + SLACK
        left = wait if self.deadline is None else self.deadline - time.monotonic()
        if left <= 0:
            raise QueryError(TIMED_OUT)
        future = asyncio.run_coroutine_threadsafe(
            self.fanout.ask(nodes, SELECT, params, load_series), self.loop)
        try:
            answers, missing = future.result(min(wait, left))
        except TimeoutError:
            future.cancel()
            if left < wait:
                raise QueryError(TIMED_OUT) from None
            answers, missing = [], [Unanswered(n.name, "timed out") for n in nodes]
        for m in missing:
            if m.status == 422:  # the node's bounds: the query is too wide, not the node down
                raise QueryError(f"node {m.node}: {m.reason.removeprefix('422 ')}")
            self.missing[m.node] = m
        return [answer for _, answer in answers]


def merge(answers: Sequence[Sequence[Arrays]]) -> list[Arrays]:
    """Several sources' series as one list by labels; a label set two sources both have
    (it should not happen: each keeps its own) gets their samples merged by time."""
    found: dict[Labels, list[tuple[Any, Any]]] = {}
    for answer in answers:
        for labels, times, values in answer:
            found.setdefault(labels, []).append((times, values))
    out: list[Arrays] = []
    for labels, parts in sorted(found.items()):
        if len(parts) == 1:
            out.append((labels, *parts[0]))
            continue
        times = np.concatenate([t for t, _ in parts])
        values = np.concatenate([v for _, v in parts])
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
        keep = np.concatenate(([True], np.diff(times) > 0)) if len(times) else times > 0
        out.append((labels, times[keep], values[keep]))
    return out


def _match(matchers: Sequence[Matcher]) -> list[tuple[str, str]]:
    return [("match[]", selector_text(matchers))] if matchers else []


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # no loop runs in this thread
        return False
