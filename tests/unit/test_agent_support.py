"""What the agent's tests share: apps and tasks written as the API and the scheduler write them,
an agent run against the real SQLite store and the fake driver, and waits on the store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from kade import model
from kade.agent.agent import Agent, AgentConfig
from kade.drivers.base import Driver as Driver_
from kade.drivers.base import LaunchSpec, Workload, WorkloadState
from kade.model import Task, TaskStatus
from kade.spec import AppSpec, parse_app, spec_hash
from kade.store import Event, Store
from kade.testing.fake_driver import FakeDriver

T = TypeVar("T")

NODE = "n1"
HOST = "127.0.0.1"
WAIT = 20.0  # generous: a condition that holds at all holds long before this


def make_app(app_id: str = "/shop/web", version: str = "v1", **fields: Any) -> AppSpec:
    """A validated app; `fields` in Marathon's camelCase."""
    data: dict[str, Any] = {"id": app_id, "cmd": "sleep 1000", **fields}
    return parse_app(data).app.model_copy(update={"version": version})


async def store_app(store: Store, app: AppSpec) -> None:
    """The version record the agent reads the app of a task from, as the API writes it."""
    assert app.version is not None
    await store.put(model.version_key(app.id, app.version),
                    app.model_dump_json(by_alias=True).encode())


def make_task(app: AppSpec, task_id: str, *, node: str = NODE, ports: tuple[int, ...] = (),
              **fields: Any) -> Task:
    return Task(id=task_id, app_id=app.id, version=app.version or "", spec_hash=spec_hash(app),
                node=node, host=HOST, host_ports=list(ports), created_at=1.0, **fields)


async def place(store: Store, task: Task) -> None:
    await store.put(model.task_key(task.id), task.dump())


async def report(store: Store, task: Task, state: model.TaskState, **fields: Any) -> None:
    """A status as an earlier agent left it."""
    status = TaskStatus(task_id=task.id, app_id=task.app_id, node=task.node, state=state,
                        updated_at=1.0, **fields)
    await store.put(model.status_key(task.id), status.dump())


def workload_of(app: AppSpec, task: Task, workload_id: str, *, state: WorkloadState = "running",
                exit_code: int | None = None, spec_hash: str | None = None,
                node: str | None = None) -> Workload:
    """A workload with the labels an earlier agent gave it."""
    launch = LaunchSpec(task_id=task.id, app=app, version=task.version,
                        spec_hash=spec_hash or task.spec_hash, node=node or task.node,
                        host=task.host, host_ports=list(task.host_ports), env={})
    return Workload(id=workload_id, task_id=task.id, app_id=app.id,
                    spec_hash=launch.spec_hash, state=state,
                    exit_code=exit_code, started_at=5.0, labels=launch.labels())


def router_record(name: str, tasks: list[str]) -> bytes:
    """A `routers/<name>` fact: what a live router may still send requests to."""
    return json.dumps({"name": name, "revision": 1, "tasks": tasks,
                       "seen_at": time.time()}).encode()


class Driver(FakeDriver):
    """The fake driver, also noting the task's status at the moment a workload is removed."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.status_at_remove: dict[str, str | None] = {}  # by workload id

    async def remove(self, workload_id: str) -> None:
        w = self.workloads.get(workload_id)
        if w is not None:
            entry = await self.store.get(model.status_key(w.task_id))
            self.status_at_remove[workload_id] = (
                TaskStatus.load(entry.value).state if entry else None)
        await super().remove(workload_id)

    def stopped(self) -> list[str]:
        return [args[0] for args in self.called("stop")]

    def removed(self) -> list[str]:
        return [args[0] for args in self.called("remove")]

    def started(self) -> list[str]:
        return [args[0].task_id for args in self.called("start")]


@contextlib.asynccontextmanager
async def running_agent(store: Store, driver: Driver_, data_dir: Path, *,
                        node: str = NODE, publish_ip: str = HOST,
                        **more: Any) -> AsyncIterator[Agent]:
    """An agent running until the block ends; it is cancelled and awaited then, so an error
    that ended it early is raised here. `more`: the Agent's keyword arguments (hooks, logs)."""
    agent = Agent(store, driver, AgentConfig(node=node, address=HOST, publish_ip=publish_ip),
                  data_dir=data_dir, **more)
    runner = asyncio.create_task(agent.run())
    try:
        ready = asyncio.create_task(agent.ready.wait())
        done, _ = await asyncio.wait({ready, runner}, timeout=WAIT,
                                     return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if runner in done:
            runner.result()  # raises what ended it
            raise AssertionError("the agent ended before it was ready")
        assert ready in done, "the agent did not get ready in time"
        yield agent
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def until(store: Store, check: Callable[[], Awaitable[T | None]],
                timeout: float = WAIT) -> T:
    """Wait until `check` returns something truthy: looked at again on every store write, and
    at least every 50 ms for what only the driver sees."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    revision = await store.revision()
    while True:
        found = await check()
        if found:
            return found
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError("condition not met in time")
        revision = await store.wait("", revision, min(remaining, 0.05))


async def status_of(store: Store, task_id: str) -> TaskStatus | None:
    entry = await store.get(model.status_key(task_id))
    return TaskStatus.load(entry.value) if entry else None


async def until_status(store: Store, task_id: str, *states: str) -> TaskStatus:
    async def check() -> TaskStatus | None:
        status = await status_of(store, task_id)
        return status if status is not None and status.state in states else None

    return await until(store, check)


async def until_true(store: Store, check: Callable[[], bool]) -> None:
    async def wrapped() -> bool:
        return check()

    await until(store, wrapped)


async def states_seen(store: Store, task_id: str) -> list[str]:
    """Every state the task's status record went through, in order, repeats folded."""
    key = model.status_key(task_id)
    last = await store.prefix_revision(key)
    states: list[str] = []
    if last == 0:
        return states
    events = cast(AsyncGenerator[list[Event], None], store.watch(key, 0))
    async with contextlib.aclosing(events):
        async for batch in events:
            for event in batch:
                if event.key == key and event.entry is not None:
                    state = TaskStatus.load(event.entry.value).state
                    if not states or states[-1] != state:
                        states.append(state)
            if batch[-1].revision >= last:
                return states
    return states


async def yield_to_agent(rounds: int = 100) -> None:
    """Let the agent's tasks run: store watches and driver events are handed over in memory,
    a few turns of the event loop each."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def settle(store: Store, agent_driver: FakeDriver, app: AppSpec) -> None:
    """Place a marker task and wait until it runs: every event the agent had before it has
    been looked at by then (watch events arrive in order, each task's first step is short)."""
    marker = make_task(app, "marker.settle")
    await place(store, marker)
    await until_status(store, marker.id, "running")
