"""Task lifecycle hooks: what the agent does around a task's transitions, apart from them.

Nomad's taskrunner is the model. The agent (`agent.py`) decides the transitions of a task
(start it, see it run, stop it, clean up after it); each concern that has something to do
at those moments is a hook, and the agent calls every hook, in order, at each one:

- `prestart`: before the workload starts. A hook may add to the launch (environment,
  mounts) or hold the start back (`Refused`): templates rendered, host ports checked.
- `poststart`: each time the agent looks at a running workload (level-triggered, so a hook
  does its work once and then checks that it still runs): health checks, templates that
  re-render, log capture.
- `prekill`: before the agent stops a running workload: routers drain it.
- `stop`: the workload no longer runs, or is about to be stopped: health checks end.
- `cleanup`: the task is done on this node, before its workload is removed: the rest of its
  output is captured, its rendered files dropped. `forget`: the task is gone from the node.

Every step is optional (the base class does nothing) and must be harmless when repeated:
a step that failed is tried again, from the top of the agent's reconcile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from kade.drivers.base import Driver, Mount, Workload
from kade.model import Task, TaskStatus
from kade.spec import AppSpec
from kade.store.base import Store


@dataclass
class TaskState:
    """What the agent knows of one task of its node."""

    task: Task | None = None
    workload: Workload | None = None
    status: TaskStatus | None = None
    adopted: bool = False  # running before this agent started: keep its published health
    kill_reason: str = ""  # set by a hook (health); the task's worker does the stop
    timer: asyncio.Task[None] | None = None  # wakes it when a step is due again


@dataclass
class Launch:
    """What prestart hooks add to a workload's start."""

    env: dict[str, str]
    mounts: list[Mount] = field(default_factory=list)


class Refused(Exception):
    """A prestart hook holds the start back: the task fails with the message, or (`wait`)
    stays staging with it until the hook pokes it again."""

    def __init__(self, message: str, *, wait: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.wait = wait


class Host(Protocol):
    """What hooks may use of the agent."""

    store: Store
    driver: Driver
    clock: Callable[[], float]

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run in the agent's task group (ended with it)."""
        ...

    def poke(self, task_id: str) -> None:
        """Look at the task again."""
        ...

    def wake_at(self, task_id: str, when: float) -> None:
        """Look at the task again at `when`."""
        ...

    async def set_status(self, state: TaskState, task: Task, /, **changes: object) -> None:
        ...


class TaskHook:
    """One concern's part in a task's life; every step is optional."""

    async def prestart(self, state: TaskState, task: Task, app: AppSpec,
                       launch: Launch) -> None:
        """Before the start; raise Refused to hold it back."""

    async def poststart(self, state: TaskState, task: Task, app: AppSpec,
                        wl: Workload) -> None:
        """The workload runs (called at every look: do the work once)."""

    async def prekill(self, state: TaskState, task: Task, wl: Workload) -> None:
        """The agent is about to stop the running workload."""

    async def stop(self, state: TaskState, task_id: str) -> None:
        """The workload stopped by itself or is about to be stopped."""

    async def cleanup(self, state: TaskState, task_id: str) -> None:
        """The task is done here; its workload (no longer running) is removed next."""

    def forget(self, task_id: str) -> None:
        """The task is gone from this node: drop what is kept of it."""


class Hooks:
    """The hooks of an agent, called in order."""

    def __init__(self, hooks: list[TaskHook]) -> None:
        self.hooks = hooks

    async def prestart(self, state: TaskState, task: Task, app: AppSpec,
                       launch: Launch) -> None:
        for hook in self.hooks:
            await hook.prestart(state, task, app, launch)

    async def poststart(self, state: TaskState, task: Task, app: AppSpec,
                        wl: Workload) -> None:
        for hook in self.hooks:
            await hook.poststart(state, task, app, wl)

    async def prekill(self, state: TaskState, task: Task, wl: Workload) -> None:
        for hook in self.hooks:
            await hook.prekill(state, task, wl)

    async def stop(self, state: TaskState, task_id: str) -> None:
        for hook in self.hooks:
            await hook.stop(state, task_id)

    async def cleanup(self, state: TaskState, task_id: str) -> None:
        for hook in self.hooks:
            await hook.cleanup(state, task_id)

    def forget(self, task_id: str) -> None:
        for hook in self.hooks:
            hook.forget(task_id)
