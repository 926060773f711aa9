"""What kade itself knows, as series: apps' wanted/running/healthy tasks, tasks that failed,
deployments that ended and how, nodes up or down, and how full the disk under kade's data is.
The built-in alert rules (kade.alerts.builtin) are PromQL over these, so they are written,
read and tested like any operator's rule.

Gauges are read off a store mirror at each collection; counters count the transitions the
mirror saw since this process started leading (a restart is a counter reset, which `rate`
and `increase` handle as Prometheus does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kade import model
from kade.metrics.tsdb import TSDB
from kade.model import Alive, Deployment, Node, Task, TaskStatus
from kade.spec import AppSpec
from kade.store.base import Store
from kade.store.mirror import Batch, Mirror, records

log = logging.getLogger("kade.metrics")

APPS = records(model.APPS, AppSpec, name=model.app_id_of_key)
TASKS = records(model.TASKS, Task)
STATUSES = records(model.STATUS, TaskStatus)
NODES = records(model.NODES, Node)
ALIVE = records(model.ALIVE, Alive)
DEPLOYMENTS = records(model.DEPLOYMENTS, Deployment)

Sample = tuple[dict[str, str], int, float]

METRICS: tuple[tuple[str, str, str], ...] = (
    ("kade_app_instances", "gauge", "Tasks the app wants."),
    ("kade_app_tasks", "gauge", "The app's tasks by state (running, healthy, staging, ...)."),
    ("kade_app_task_failures_total", "counter",
     "The app's tasks that failed: exited by themselves, or killed as unhealthy."),
    ("kade_app_tasks_lost_total", "counter",
     "The app's tasks whose container disappeared (its node or its engine lost it)."),
    ("kade_deployments_total", "counter", "Deployments that ended, by kind and status."),
    ("kade_node_up", "gauge", "1 while the node's agent keeps its liveness lease, else 0."),
    ("kade_disk_free_bytes", "gauge", "Free bytes of the file system under kade's data."),
    ("kade_disk_size_bytes", "gauge", "Size of the file system under kade's data."),
)
_FINAL = ("succeeded", "failed", "cancelled", "superseded")


@dataclass
class ClusterMetrics:
    store: Store
    data_dirs: Callable[[], dict[str, Path]] = dict  # label "store" → a directory of kade's
    disk_labels: dict[str, str] = field(default_factory=dict)  # a server's `server`
    mirror: Mirror = field(init=False)
    failures: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    deployments: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.mirror = Mirror(self.store, [APPS, TASKS, STATUSES, NODES, ALIVE, DEPLOYMENTS],
                             name="metrics")
        self.mirror.on_batch(self._on_batch)

    def _on_batch(self, batch: Batch) -> None:
        if batch.reload:
            return  # a snapshot: nothing happened, the tables were (re)read
        count_transitions(batch, self.failures, self.lost, self.deployments)

    def samples(self, now_ms: int) -> list[Sample]:
        return state_samples(
            self.mirror.table(APPS).items, self.mirror.table(TASKS).items,
            self.mirror.table(STATUSES).items, self.mirror.table(NODES).items,
            set(self.mirror.table(ALIVE).items), self.failures, self.lost, self.deployments,
            self.data_dirs(), now_ms, self.disk_labels)

    async def keep(self, db: TSDB, interval: float) -> None:
        """Write the samples into `db` every `interval` seconds (a server: it has no
        collector, having no tasks)."""
        while True:
            started = time.monotonic()
            try:
                await asyncio.to_thread(db.append, self.samples(int(time.time() * 1000)))
            except Exception:  # one bad pass must not end the series
                log.exception("cluster metrics: writing samples failed")
            await asyncio.sleep(max(interval - (time.monotonic() - started), 0.5))


def count_transitions(batch: Batch, failures: Counter[str], lost: Counter[str],
                      deployments: Counter[tuple[str, str, str]]) -> None:
    """A crash loop is tasks failing (kade's own rule counts those); a task lost with its
    container (an engine restarted, a node gone) is counted apart."""
    for change in batch.of(STATUSES):
        new, old = change.new, change.old
        if isinstance(new, TaskStatus) and new.state in ("failed", "lost") and (
                not isinstance(old, TaskStatus) or old.state != new.state):
            (failures if new.state == "failed" else lost)[new.app_id] += 1
    for change in batch.of(DEPLOYMENTS):
        new, old = change.new, change.old
        if isinstance(new, Deployment) and new.status in _FINAL and (
                not isinstance(old, Deployment) or old.status != new.status):
            deployments[(new.app_id, new.kind, new.status)] += 1


def state_samples(apps: dict[str, AppSpec], tasks: dict[str, Task],
                  statuses: dict[str, TaskStatus], nodes: dict[str, Node], alive: set[str],
                  failures: Counter[str], lost: Counter[str],
                  deployments: Counter[tuple[str, str, str]],
                  data_dirs: dict[str, Path], now: int,
                  labels: dict[str, str] | None = None) -> list[Sample]:
    out: list[Sample] = []
    by_app: dict[str, Counter[str]] = {app_id: Counter() for app_id in apps}
    for task in tasks.values():
        if task.desired != "run" or task.app_id not in by_app:
            continue
        status = statuses.get(task.id)
        counts = by_app[task.app_id]
        current = status.state if status is not None else "staging"
        counts[current] += 1
        if status is not None and status.health == "healthy" and current == "running":
            counts["healthy"] += 1
    for app_id, app in apps.items():
        out.append(({"__name__": "kade_app_instances", "app": app_id}, now,
                    float(app.instances)))
        counts = by_app[app_id]
        for shown in ("staging", "starting", "running", "healthy", "killing"):
            out.append(({"__name__": "kade_app_tasks", "app": app_id, "state": shown}, now,
                        float(counts[shown])))
        out.append(({"__name__": "kade_app_task_failures_total", "app": app_id}, now,
                    float(failures[app_id])))
        out.append(({"__name__": "kade_app_tasks_lost_total", "app": app_id}, now,
                    float(lost[app_id])))
    for (app_id, kind, ended), n in deployments.items():
        out.append(({"__name__": "kade_deployments_total", "app": app_id, "kind": kind,
                     "status": ended}, now, float(n)))
    for name, node in nodes.items():
        out.append(({"__name__": "kade_node_up", "node": name}, now,
                    1.0 if node.alive(alive) else 0.0))
    return out + disk_samples(data_dirs, labels or {}, now)


def disk_samples(data_dirs: dict[str, Path], labels: dict[str, str], now: int
                 ) -> list[Sample]:
    """Free and total bytes of the file system under each of kade's data directories
    (label `store`), with `labels` (an agent's `node`, a server's `server`)."""
    out: list[Sample] = []
    for label, path in data_dirs.items():
        try:
            st = os.statvfs(path)
        except OSError:
            continue
        out.append(({**labels, "__name__": "kade_disk_free_bytes", "store": label}, now,
                    float(st.f_bavail * st.f_frsize)))
        out.append(({**labels, "__name__": "kade_disk_size_bytes", "store": label}, now,
                    float(st.f_blocks * st.f_frsize)))
    return out
