"""The agent's own task hooks (see hooks.py): host ports, templates, health checks, drains.

Log capture is a hook too (`kade.agent.logs`), added when the node keeps its tasks' output.
"""

from __future__ import annotations

import asyncio
import logging

from kade import model
from kade.agent.drain import wait_drained
from kade.agent.env import task_env
from kade.agent.health import HealthMonitor, SystemClock
from kade.agent.hooks import Host, Launch, Refused, TaskHook, TaskState
from kade.agent.ports import PortGuard
from kade.agent.templating import ConfigWaiting, TaskConfig, Templating
from kade.drivers.base import ExecResult, Workload
from kade.model import HealthResult, Task
from kade.spec import AppSpec
from kade.templates import TemplateError

log = logging.getLogger("kade.agent")


class PortsHook(TaskHook):
    """A task's host ports must bind before it starts: a port another process holds fails
    the start and is reported on the node for the planner to avoid (ports.py)."""

    def __init__(self, ports: PortGuard) -> None:
        self.ports = ports

    async def prestart(self, state: TaskState, task: Task, app: AppSpec,
                       launch: Launch) -> None:
        busy = await self.ports.before_start(zip(
            task.host_ports, (p.protocol for p in app.ports()), strict=False))
        if busy is not None:
            raise Refused(busy)


class TemplatesHook(TaskHook):
    """Templates rendered before the start (a missing key holds the task in staging), then
    re-rendered while it runs when the KV or the catalog they read changes."""

    def __init__(self, host: Host, templating: Templating) -> None:
        self.host = host
        self.templating = templating
        self._configs: dict[str, TaskConfig] = {}  # by task id: its rendered templates
        self._task_env: dict[str, dict[str, str]] = {}
        self._waiting: set[str] = set()  # a template reads a key that does not exist yet

    def changed(self, keys: set[str], services: set[str]) -> None:
        """KV keys or catalog services changed: the tasks that read them look again."""
        now = self.host.clock()
        for task_id in self._waiting:
            self.host.poke(task_id)
        for task_id, config in self._configs.items():
            if task_id not in self._waiting and config.touched(keys, services, now):
                self.host.wake_at(task_id, config.due() or now)

    async def prestart(self, state: TaskState, task: Task, app: AppSpec,
                       launch: Launch) -> None:
        if not app.templates:
            return
        try:
            config = await self.templating.prepare_async(app, task.id, launch.env)
        except ConfigWaiting as e:
            self._waiting.add(task.id)
            raise Refused(f"waiting: {e}", wait=True) from None
        except TemplateError as e:
            raise Refused(str(e)) from None
        self._waiting.discard(task.id)
        self._configs[task.id] = config
        self._task_env[task.id] = dict(launch.env)
        launch.env.update(config.env)
        launch.mounts.extend(config.mounts)

    async def poststart(self, state: TaskState, task: Task, app: AppSpec,
                        wl: Workload) -> None:
        config = self._configs.get(task.id)
        if app.templates and config is None:
            self._task_env[task.id] = task_env(app, task)
            config = self._configs[task.id] = self.templating.adopt(
                app, task.id, self.host.clock())
        if config is None:
            return
        due = config.due()
        if due is None:
            return
        if due > self.host.clock():
            self.host.wake_at(task.id, due)
            return
        change = await self.templating.refresh_async(
            config, self._task_env.get(task.id, {}), self.host.clock())
        for sig in change.signals:
            await self.host.driver.signal(wl.id, sig)
        stale = state.status is not None and state.status.config_stale
        await self.host.set_status(state, task, config_stale=stale or change.restart,
                                   config_error="; ".join(change.errors))

    async def cleanup(self, state: TaskState, task_id: str) -> None:
        if self._configs.pop(task_id, None) is not None:
            self.templating.forget(task_id)

    def forget(self, task_id: str) -> None:
        self._configs.pop(task_id, None)
        self._task_env.pop(task_id, None)
        self._waiting.discard(task_id)
        self.templating.forget(task_id)


class HealthHook(TaskHook):
    """Health checks from the start of a workload to its stop; a task that turns unhealthy
    for good is marked for the agent to stop (`kill_reason`)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._monitors: dict[str, asyncio.Task[None]] = {}

    async def poststart(self, state: TaskState, task: Task, app: AppSpec,
                        wl: Workload) -> None:
        if app.health_checks and task.id not in self._monitors:
            started = wl.started_at or self.host.clock()
            self._monitors[task.id] = self.host.spawn(
                self._monitor(state, task, app, wl, started))

    async def stop(self, state: TaskState, task_id: str) -> None:
        monitor = self._monitors.pop(task_id, None)
        if monitor is not None and monitor is not asyncio.current_task():
            monitor.cancel()
            try:
                await monitor
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    async def cleanup(self, state: TaskState, task_id: str) -> None:
        await self.stop(state, task_id)

    async def _monitor(self, state: TaskState, task: Task, app: AppSpec, wl: Workload,
                       started: float) -> None:
        host = self.host

        async def exec_in(command: str, timeout: float) -> ExecResult:
            return await host.driver.exec(wl.id, command, timeout)

        async def on_change(health: model.Health, results: list[HealthResult]) -> None:
            if health == "unknown" and state.adopted:
                return  # keep the health an adopted task had until a check says otherwise
            if health == "healthy" and not await self._still_runs(state, wl):
                # The probe raced the task's exit (it may have reached another process on
                # the port): it never counts. The exit is on its way and fails the task.
                log.info("task %s: a health check passed as it exited: not counted", task.id)
                return
            state.adopted = False
            if state.task is not None and state.task.desired == "run":
                await host.set_status(state, task, health=health, health_results=results)

        async def on_kill(reason: str) -> None:
            log.warning("task %s unhealthy: %s", task.id, reason)
            state.kill_reason = reason
            host.poke(task.id)

        monitor = HealthMonitor(
            list(app.health_checks), host=task.host, ports=list(task.host_ports),
            exec=exec_in, started_at=started, clock=SystemClock(),
            on_change=on_change, on_kill=on_kill,
        )
        await monitor.run()

    async def _still_runs(self, state: TaskState, wl: Workload) -> bool:
        """The workload is the task's current one and its process runs, as the runtime says
        now (an exit event may not have arrived yet)."""
        current = state.workload
        if current is None or current.id != wl.id or current.state != "running":
            return False
        return await self.host.driver.alive(wl.id)


class DrainHook(TaskHook):
    """Routers finish the requests in flight to a task before it gets SIGTERM."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def prekill(self, state: TaskState, task: Task, wl: Workload) -> None:
        await wait_drained(self.host.store, task.id, self.host.clock)
