"""The node's collector: every interval (10 s by default), each running task's usage from its
cgroup (kade.metrics.cgroups), the samples of every Prometheus endpoint the node knows (the
router's, and tasks' that declare one), and the collector's own cost, into the node's store.

One loop for the whole node, not one per task: a pass reads a few small files per task and
scrapes concurrently, then appends everything in one durable batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from kade.metrics.cgroups import Usage, cgroup_paths, read_cgroup, read_network, read_process_tree
from kade.metrics.scrape import Sample, scrape
from kade.metrics.tsdb import TSDB

log = logging.getLogger("kade.metrics")

INTERVAL = 10.0
T = TypeVar("T")
MAX_FAMILIES = 10_000  # metric families' HELP/TYPE kept from scrapes

# name, type, help: every series the collector itself writes (kade.metrics.exposition reads
# this table for /metrics' HELP and TYPE lines)
TASK_METRICS: tuple[tuple[str, str, str, str], ...] = (
    # (metric, Usage field, type, help)
    ("kade_task_cpu_seconds_total", "cpu_seconds", "counter",
     "CPU time the task used, user and system."),
    ("kade_task_memory_usage_bytes", "memory", "gauge",
     "Memory the task's cgroup uses, page cache included."),
    ("kade_task_memory_working_set_bytes", "working_set", "gauge",
     "Memory in use minus inactive file pages: what the OOM killer weighs."),
    ("kade_task_memory_limit_bytes", "memory_limit", "gauge", "The task's memory limit."),
    ("kade_task_oom_kills_total", "oom_kills", "counter",
     "Processes of the task killed for exceeding its memory limit."),
    ("kade_task_io_read_bytes_total", "io_read", "counter", "Bytes read from block devices."),
    ("kade_task_io_write_bytes_total", "io_write", "counter", "Bytes written to block devices."),
    ("kade_task_network_receive_bytes_total", "rx_bytes", "counter",
     "Bytes received by the task's network namespace."),
    ("kade_task_network_transmit_bytes_total", "tx_bytes", "counter",
     "Bytes sent by the task's network namespace."),
    ("kade_task_network_receive_packets_total", "rx_packets", "counter",
     "Packets received by the task's network namespace."),
    ("kade_task_network_transmit_packets_total", "tx_packets", "counter",
     "Packets sent by the task's network namespace."),
)
OWN_METRICS: tuple[tuple[str, str, str], ...] = (
    ("kade_collector_cpu_seconds_total", "counter",
     "CPU time kade's collector spent reading tasks' usage and scraping."),
    ("kade_collector_duration_seconds", "gauge", "How long the last collection took."),
    ("kade_collector_tasks", "gauge", "Tasks measured by the last collection."),
)


@dataclass(frozen=True)
class Target:
    """A running task as the collector sees it (built from the agent's state)."""

    labels: dict[str, str]  # app, task, node, version
    pid: int | None = None  # its main process: the cgroup and namespace to read
    own_cgroup: bool = True  # False: an exec task, measured over its process tree
    scrape_url: str | None = None  # its Prometheus endpoint, if it declares one


@dataclass
class Collector:
    db: TSDB
    targets: Callable[[], Sequence[Target]]
    node: str
    interval: float = INTERVAL
    endpoints: Callable[[], Sequence[tuple[str, dict[str, str]]]] = lambda: ()  # router's
    # more samples each pass (what the control plane knows: kade.metrics.cluster)
    extra: Callable[[int], list[Sample]] = lambda now: []
    # labels added to a scraped sample (the router's `service` → its app's `app`)
    relabel: Callable[[dict[str, str]], dict[str, str]] = lambda labels: labels
    clock: Callable[[], float] = time.time
    _spent: float = 0.0
    _meta: dict[str, tuple[str, str]] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    async def run(self) -> None:
        async with httpx.AsyncClient() as client:
            self._client = client
            while True:
                started = time.monotonic()
                try:
                    await self.collect()
                except Exception:  # one bad pass must not end collection
                    log.exception("metrics collection failed")
                await asyncio.sleep(max(self.interval - (time.monotonic() - started), 0.5))

    async def collect(self) -> int:
        """One pass; returns the samples stored."""
        now = int(self.clock() * 1000)
        started = time.monotonic()
        targets = list(self.targets())
        samples, cpu = await asyncio.to_thread(_timed, usage_samples, targets, now)
        scraped, scrape_cpu = await self._scrape_all(targets, now)
        samples += [(self.relabel(labels), t, v) for labels, t, v in scraped]
        samples += self.extra(now)
        self._spent += cpu + scrape_cpu
        node = {"node": self.node}
        samples += [
            ({**node, "__name__": "kade_collector_cpu_seconds_total"}, now, self._spent),
            ({**node, "__name__": "kade_collector_duration_seconds"}, now,
             round(time.monotonic() - started, 6)),
            ({**node, "__name__": "kade_collector_tasks"}, now, float(len(targets))),
        ]
        stored, cpu = await asyncio.to_thread(_timed, self.db.append, samples)
        self._spent += cpu  # storing counts too (shown at the next pass)
        return stored

    async def _scrape_all(self, targets: Sequence[Target],
                          now: int) -> tuple[list[Sample], float]:
        jobs = [(t.scrape_url, t.labels) for t in targets if t.scrape_url]
        jobs += [(url, labels) for url, labels in self.endpoints()]
        if not jobs:
            return [], 0.0
        client = self._client or httpx.AsyncClient()
        try:
            done = await asyncio.gather(*(scrape(client, url, labels, now)
                                          for url, labels in jobs))
        finally:
            if self._client is None:
                await client.aclose()
        for result in done:
            if len(self._meta) < MAX_FAMILIES:
                self._meta.update(result.meta)
        return [s for result in done for s in result.samples], sum(r.cpu for r in done)

    def metadata(self) -> dict[str, tuple[str, str]]:
        """Family → (type, help) of every series the node keeps, for /metrics."""
        meta = dict(self._meta)
        meta.update({name: (kind, text) for name, _, kind, text in TASK_METRICS})
        meta.update({name: (kind, text) for name, kind, text in OWN_METRICS})
        meta["up"] = ("gauge", "1 if the last scrape of the target succeeded, else 0.")
        meta["scrape_duration_seconds"] = ("gauge", "How long the last scrape took.")
        return meta


def _timed(fn: Callable[..., T], *args: object) -> tuple[T, float]:
    """`fn`'s answer and the CPU time its thread spent on it (not the rest of kade's)."""
    start = time.thread_time()
    out = fn(*args)
    return out, time.thread_time() - start


def usage_samples(targets: Sequence[Target], now: int) -> list[Sample]:
    out: list[Sample] = []
    for target in targets:
        if target.pid is None:
            continue
        if target.own_cgroup:
            usage = read_cgroup(cgroup_paths(target.pid))
            net = read_network(target.pid)
        else:
            usage, net = read_process_tree(target.pid), None
        values = dict(vars(usage)) if isinstance(usage, Usage) else {}
        if net:
            values.update(net)
        for metric, name, _, _ in TASK_METRICS:
            value = values.get(name)
            if value is not None:
                out.append(({**target.labels, "__name__": metric}, now, float(value)))
    return out
