"""The agent: makes the tasks placed on its node run, and reports what runs.

It learns of placements, and of the KV its templates read, from a store mirror of `tasks/`
and `kv/` (a snapshot at one revision, then one watch), and of containers that die from the
driver's event stream: nothing is polled. Each task is reconciled level-triggered by
`_sync` (look at the task, its workload and its last status; do the one next step), one
worker per task so that steps of one task never overlap.

On start it adopts: workloads that carry kade's labels and belong to a task still placed here
keep running untouched; workloads of unknown tasks are stopped (orphans).

What happens around the transitions (templates and host ports before a start, health
checks and log capture while it runs, drains before a kill, cleanup after) is done by the
task lifecycle hooks (hooks.py, steps.py, logs.py); this module keeps the transitions. A
task that fails is logged with its reason, one line each, besides its status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kade import model
from kade.agent import ports as host_ports
from kade.agent.env import task_env
from kade.agent.hooks import Hooks, Launch, Refused, TaskHook, TaskState
from kade.agent.logs import LogCapture, LogSink
from kade.agent.node_drivers import driver_names
from kade.agent.steps import DrainHook, HealthHook, PortsHook, TemplatesHook
from kade.agent.templating import Services, Templating
from kade.drivers.base import (
    LABEL_NODE,
    Driver,
    DriverError,
    LaunchSpec,
    Workload,
    WorkloadEvent,
)
from kade.model import Node, Task, TaskStatus, Unreadable, decode, decode_all
from kade.spec import AppSpec
from kade.store.base import Store, StoreError
from kade.store.mirror import Batch, Mirror, records
from kade.templates import KV_VALUES

log = logging.getLogger("kade.agent")

RETRY_AFTER = 2.0  # seconds before a task whose step failed is looked at again
DEFAULT_GRACE = 10.0  # SIGTERM → SIGKILL when the task's app version is not known

TASKS = records(model.TASKS, Task)


@dataclass
class AgentConfig:
    node: str = "local"
    address: str = "127.0.0.1"
    cpus: float | None = None  # default: what the driver reports
    mem: float | None = None
    attributes: dict[str, str] = field(default_factory=dict)  # checked by kade.admission.nodes
    hostname: str = ""  # the machine's, shown beside the node's name
    port_range: tuple[int, int] | None = None  # host ports for its tasks; None: the scheduler's
    liveness_ttl: float = 0.0  # its liveness lease (kade.agent.liveness); 0: none kept
    publish_ip: str = "0.0.0.0"  # where task ports are bound: checked free before a start
    api_url: str = ""  # its node listener, which servers ask for logs (`kade agent --listen`)


class Agent:
    def __init__(
        self,
        store: Store,
        driver: Driver,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        data_dir: Path | None = None,
        services: Services | None = None,
        logs: LogSink | None = None,
        hooks: list[TaskHook] | None = None,
    ) -> None:
        """`logs`: the node's log store, into which every task's output is captured (None:
        not captured). `hooks`: more task hooks, called after kade's own."""
        self.store = store
        self.driver = driver
        self.config = config
        self.clock = clock
        self.mirror = Mirror(store, [TASKS, KV_VALUES], name=f"agent {config.node}")
        self.mirror.on_batch(self._on_batch)
        self._kv = self.mirror.table(KV_VALUES).items
        self._adopted = False  # placements are acted upon once what runs has been adopted
        self.templating = Templating(
            (data_dir or Path("/var/lib/kade")) / "tasks", lambda: self._kv,
            services or (lambda: {}), command_user=driver.default_user,
            sandbox=getattr(driver, "sandbox", None))  # the exec driver's
        self._tasks: dict[str, TaskState] = {}
        self._dirty: set[str] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._apps: dict[tuple[str, str], AppSpec] = {}
        self._tg: asyncio.TaskGroup | None = None
        self.ports = host_ports.PortGuard(store, config.node, config.publish_ip)
        self.templates = TemplatesHook(self, self.templating)
        own: list[TaskHook] = [self.templates, PortsHook(self.ports), HealthHook(self),
                               DrainHook(self)]
        self.capture = LogCapture(self, logs, config.node) if logs is not None else None
        if self.capture is not None:
            own.append(self.capture)
        self.hooks = Hooks(own + list(hooks or ()))
        self.ready = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            await self._register_node()
            tg.create_task(self.mirror.run())
            if not await self.mirror.ready():
                return
            await self._adopt()
            tg.create_task(self._follow_driver())
            tg.create_task(self.ports.run())
            self._adopted = True
            for task_id in list(self._tasks):
                self._poke(task_id)
            self.ready.set()
            log.info("agent %s ready: %d tasks adopted", self.config.node, len(self._tasks))

    async def _register_node(self) -> None:
        cpus, mem = self.config.cpus, self.config.mem
        if cpus is None or mem is None:
            got_cpus, got_mem = await self.driver.resources()
            cpus = got_cpus if cpus is None else cpus
            mem = got_mem if mem is None else mem
        node = Node(
            name=self.config.node,
            address=self.config.address,
            hostname=self.config.hostname,
            port_range=list(self.config.port_range or ()),
            liveness_ttl=self.config.liveness_ttl,
            cpus=cpus,
            mem=mem,
            attributes=dict(self.config.attributes),
            drivers=driver_names(self.driver),
            updated_at=self.clock(),
            api_url=self.config.api_url,
        )
        key = model.node_key(node.name)
        old = await self.store.get(key)
        previous = decode(old, Node) if old is not None else None
        if isinstance(previous, Node):  # an unreadable one is replaced (and was logged)
            node = node.model_copy(update={
                "draining": previous.draining,
                "ports_in_use": self.ports.registering(previous.ports_in_use)})
        await self.store.put(key, node.dump())

    async def _adopt(self) -> None:
        """The last statuses this node reported, and the workloads that run: kept as they are
        (placed tasks) or stopped (orphans) once every task is looked at."""
        statuses, _ = await self.store.range(model.STATUS)
        # Unreadable records are skipped (quarantined): the scheduler forgets such a task,
        # and a workload of it is then an orphan like any other.
        for status in decode_all(statuses, TaskStatus)[0]:
            if status.node == self.config.node:
                self._state(status.task_id).status = status
        for workload in await self.driver.list():
            if workload.labels.get(LABEL_NODE, self.config.node) != self.config.node:
                continue
            state = self._state(workload.task_id)
            state.workload = workload
            state.adopted = workload.state == "running"

    def _state(self, task_id: str) -> TaskState:
        state = self._tasks.get(task_id)
        if state is None:
            state = self._tasks[task_id] = TaskState()
        return state

    def _on_batch(self, batch: Batch) -> None:
        """Placements and KV changed (or were reloaded: the changes are what differs)."""
        for change in batch.of(TASKS):
            task_id = change.name
            if change.bad is not None:
                continue  # quarantined: what runs is left as it is until replaced or deleted
            task: Task | None = change.new
            if task is None or task.node != self.config.node:
                if task_id in self._tasks and self._tasks[task_id].task is not None:
                    self._tasks[task_id].task = None  # forgotten, or no longer placed here
                    self._poke(task_id)
                continue
            self._state(task_id).task = task
            self._poke(task_id)
        keys = {change.name for change in batch.of(KV_VALUES)}
        if keys:
            self.templates.changed(keys, set())

    def services_changed(self, services: set[str]) -> None:
        """The catalog changed these services (wired by the composition root)."""
        self.templates.changed(set(), services)

    # -- what hooks may use (hooks.Host) -------------------------------------------------------

    def poke(self, task_id: str) -> None:
        if task_id in self._tasks:
            self._poke(task_id)

    def wake_at(self, task_id: str, when: float) -> None:
        state = self._tasks.get(task_id)
        if state is not None:
            self._wake_at(task_id, state, when)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self._spawn(coro)

    async def set_status(self, state: TaskState, task: Task, /, **changes: object) -> None:
        await self._set_status(state, task, **changes)

    def _wake_at(self, task_id: str, state: TaskState, when: float) -> None:
        if state.timer is not None:
            state.timer.cancel()

        async def wake() -> None:
            await asyncio.sleep(max(when - self.clock(), 0))
            state.timer = None
            self._poke(task_id)

        state.timer = self._spawn(wake())

    async def _follow_driver(self) -> None:
        async for event in self.driver.events():
            self._on_workload_event(event)

    def _on_workload_event(self, event: WorkloadEvent) -> None:
        state = self._tasks.get(event.task_id)
        if state is None:
            if event.kind == "started":  # a workload we did not start: is it ours to stop?
                self._spawn(self._look_at_unknown(event))
            return
        wl = state.workload
        if event.kind == "removed":
            if wl is not None and wl.id == event.id:  # not an older leftover of the task
                state.workload = None
        elif event.kind == "exited" and wl is not None and wl.id == event.id:
            state.workload = Workload(
                id=wl.id, task_id=wl.task_id, app_id=wl.app_id, spec_hash=wl.spec_hash,
                state="exited", exit_code=event.exit_code, started_at=wl.started_at,
                labels=wl.labels,
            )
        self._poke(event.task_id)

    async def _look_at_unknown(self, event: WorkloadEvent) -> None:
        """A workload of a task this agent does not know started: an orphan of this node is
        stopped like the ones found at start (another node's workloads are left alone)."""
        for wl in await self.driver.list():
            if (wl.id == event.id and wl.task_id not in self._tasks
                    and wl.labels.get(LABEL_NODE, self.config.node) == self.config.node):
                self._state(wl.task_id).workload = wl
                self._poke(wl.task_id)

    # -- per-task reconcile ------------------------------------------------------------------

    def _poke(self, task_id: str) -> None:
        self._dirty.add(task_id)
        if task_id not in self._workers and self._tg is not None and self._adopted:
            self._workers[task_id] = self._tg.create_task(self._work(task_id))

    async def _work(self, task_id: str) -> None:
        try:
            while task_id in self._dirty:
                self._dirty.discard(task_id)
                try:
                    await self._sync(task_id)
                except (StoreError, DriverError) as e:
                    log.warning("task %s: %s (trying again in %.0fs)", task_id, e, RETRY_AFTER)
                    self._retry(task_id)
                except Exception:
                    # One task's trouble must not take the agent (and every task) down.
                    log.exception("task %s: unexpected error", task_id)
                    self._retry(task_id)
        finally:
            del self._workers[task_id]

    def _retry(self, task_id: str) -> None:
        state = self._tasks.get(task_id)
        if state is not None:
            self._wake_at(task_id, state, self.clock() + RETRY_AFTER)

    async def _sync(self, task_id: str) -> None:
        state = self._tasks.get(task_id)
        if state is None:
            return
        task, wl, status = state.task, state.workload, state.status

        if task is None:  # forgotten by the scheduler, or never known: nothing may run
            await self.hooks.stop(state, task_id)
            if wl is not None and wl.state == "running":
                log.info("stopping %s: no task placed for it", task_id)
                code = await self.driver.stop(wl.id, DEFAULT_GRACE)
                state.workload = replace(wl, state="exited", exit_code=code)
            await self.hooks.cleanup(state, task_id)
            if wl is not None:
                await self.driver.remove(wl.id)
            if state.timer is not None:
                state.timer.cancel()
            self.hooks.forget(task_id)
            del self._tasks[task_id]
            return

        if task.desired == "stop":
            if status is not None and status.state in model.TERMINAL and (
                wl is None or wl.state != "running"
            ):
                await self._cleanup(state, task_id)
                return
            await self._stop(state, task, "killed", task.stop_reason or "stopped")
            return

        if status is not None and status.state in model.TERMINAL:
            await self._cleanup(state, task_id)  # the scheduler replaces it
            return

        if state.kill_reason:
            reason, state.kill_reason = state.kill_reason, ""
            await self._stop(state, task, "failed", reason)
            return

        if wl is not None and wl.spec_hash != task.spec_hash:
            await self._stop(state, task, "failed", "its container runs another spec: replaced")
            return

        if wl is None:
            if status is not None and status.container_id:
                await self._set_status(state, task, state="lost",
                                       message="its container disappeared")
                return
            await self._start(state, task)
            return

        if wl.state == "running":
            await self._running(state, task, wl)
            return

        # exited or created but not running: it failed
        await self.hooks.stop(state, task_id)
        code = wl.exit_code
        await self._set_status(
            state, task,
            state="finished" if code == 0 else "failed",
            exit_code=code,
            message=f"exited with code {code}" if code is not None else "exited",
            container_id=wl.id,
        )

    async def _start(self, state: TaskState, task: Task) -> None:
        await self._set_status(state, task, state="staging", message="")
        try:
            app = await self._app(task)
            launch = Launch(env=task_env(app, task))
            try:
                await self.hooks.prestart(state, task, app, launch)
            except Refused as e:
                if e.wait:
                    await self._set_status(state, task, message=e.message)
                else:
                    await self._set_status(state, task, state="failed", message=e.message)
                return
            spec = LaunchSpec(
                task_id=task.id, app=app, version=task.version, spec_hash=task.spec_hash,
                node=task.node, host=task.host, host_ports=list(task.host_ports),
                env=launch.env, mounts=launch.mounts,
            )

            shown = [0.0]

            def progress(line: str) -> None:
                # e.g. an image pull: shown on the task (at most once a second) and logged
                log.info("task %s: %s", task.id, line)
                if self.clock() - shown[0] >= 1.0:
                    shown[0] = self.clock()
                    self._spawn(self._staging_message(state, task, line))

            wl = await self.driver.start(spec, progress)
        except DriverError as e:
            await self._set_status(state, task, state="failed", message=str(e))
            return
        # The task may have been stopped or forgotten while we were starting it.
        state.workload = wl
        self._poke(task.id)

    async def _staging_message(self, state: TaskState, task: Task, line: str) -> None:
        if state.status is not None and state.status.state == "staging":
            await self._set_status(state, task, message=line)

    async def _running(self, state: TaskState, task: Task, wl: Workload) -> None:
        app = await self._app(task)
        if state.status is None or state.status.state not in ("starting", "running") or (
            state.status.container_id != wl.id
        ):
            await self._set_status(
                state, task,
                state="running",
                container_id=wl.id,
                started_at=wl.started_at or self.clock(),
                health=(state.status.health if state.adopted and state.status else "unknown"),
                message="",
            )
        await self.hooks.poststart(state, task, app, wl)

    async def _stop(self, state: TaskState, task: Task, final: model.TaskState,
                    reason: str) -> None:
        await self.hooks.stop(state, task.id)
        wl = state.workload
        exit_code = None
        if wl is not None and wl.state == "running":
            await self._set_status(state, task, state="killing", message=reason)
            await self.hooks.prekill(state, task, wl)
            try:
                grace = (await self._app(task)).task_kill_grace_period_seconds
            except DriverError:  # its app version is gone: stop it all the same
                grace = DEFAULT_GRACE
            exit_code = await self.driver.stop(wl.id, grace)
        await self._set_status(state, task, state=final, message=reason, exit_code=exit_code,
                               health="unknown" if final != "failed" else "unhealthy")

    async def _cleanup(self, state: TaskState, task_id: str) -> None:
        await self.hooks.cleanup(state, task_id)
        wl = state.workload
        if wl is not None and wl.state != "running":
            await self.driver.remove(wl.id)
            state.workload = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._tg is not None
        return self._tg.create_task(coro)

    async def _app(self, task: Task) -> AppSpec:
        cache_key = (task.app_id, task.version)
        app = self._apps.get(cache_key)
        if app is None:
            entry = await self.store.get(model.version_key(task.app_id, task.version))
            if entry is None:
                raise DriverError(f"app {task.app_id} version {task.version} is not stored")
            read = decode(entry, AppSpec)
            if isinstance(read, Unreadable):
                raise DriverError(f"app {task.app_id} version {task.version} cannot be read: "
                                  f"{read.reason}")
            app = self._apps[cache_key] = read
        return app

    async def _set_status(self, state: TaskState, task: Task, /, **changes: object) -> None:
        old = state.status
        base = old.model_dump() if old is not None else {
            "task_id": task.id, "app_id": task.app_id, "node": task.node,
            "state": "staging", "updated_at": 0.0,
        }
        new = dict(base)
        new.update(changes)
        if old is not None and new == base:
            return
        new["updated_at"] = self.clock()
        status = TaskStatus.model_validate(new)
        state.status = status
        await self.store.put(model.status_key(task.id), status.dump())
        if status.state in ("failed", "lost") and (old is None or old.state != status.state):
            log.warning("task %s of %s %s: %s", task.id, task.app_id, status.state,
                        status.message or "no reason given")

    # -- used by the API -----------------------------------------------------------------------

    def workload_id(self, task_id: str) -> str | None:
        state = self._tasks.get(task_id)
        return state.workload.id if state and state.workload else None


def data_path(data_dir: Path) -> Path:
    return data_dir / "tasks"
