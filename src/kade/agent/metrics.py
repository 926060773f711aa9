"""The metrics hook: which of the node's tasks the collector measures (kade.metrics.collector).

A task hook (hooks.py): when the agent sees a task's workload run, the task becomes a
collector target — its labels (app, task, node, version), its main process (the cgroup and
network namespace to read), and the Prometheus endpoint its app declares
(`"metrics": {"path", "portIndex"}` or the label `kade.metrics.path`), reached on the
task's host port. When the workload stops, the target goes.
"""

from __future__ import annotations

from kade.agent.hooks import TaskHook, TaskState
from kade.drivers.base import LABEL_VERSION, Driver, Workload
from kade.metrics.collector import Target
from kade.model import Task, driver_for
from kade.spec import AppSpec


class MetricsHook(TaskHook):
    def __init__(self, driver: Driver, node: str) -> None:
        self.driver = driver
        self.node = node
        self._targets: dict[str, Target] = {}
        self._workloads: dict[str, str] = {}  # task id → the workload its target reads

    def targets(self) -> list[Target]:
        return list(self._targets.values())

    async def poststart(self, state: TaskState, task: Task, app: AppSpec,
                        wl: Workload) -> None:
        if self._workloads.get(task.id) == wl.id:
            return  # measured already (the agent looks at running tasks again and again)
        pid = await self.driver.pid(wl.id)
        if pid is None:
            return
        url = None
        endpoint = app.metrics_endpoint()
        if endpoint is not None and endpoint.port_index < len(task.host_ports):
            port = task.host_ports[endpoint.port_index]
            url = f"http://{task.host or '127.0.0.1'}:{port}{endpoint.path}"
        labels = {"app": task.app_id, "task": task.id, "node": self.node,
                  "version": wl.labels.get(LABEL_VERSION, task.version)}
        self._targets[task.id] = Target(labels, pid=pid,
                                        own_cgroup=driver_for(app) == "docker",
                                        scrape_url=url)
        self._workloads[task.id] = wl.id

    async def stop(self, state: TaskState, task_id: str) -> None:
        self.forget(task_id)

    def forget(self, task_id: str) -> None:
        self._targets.pop(task_id, None)
        self._workloads.pop(task_id, None)
