"""An in-memory Driver for tests of code above the drivers (the agent) that need no Docker.

It records every call, keeps workloads in a dict, and tells `events()` subscribers what
happened, as a real runtime would. Tests make things go wrong on purpose: a workload dies
(`crash`), a start fails (`fail_start`), an exec answers what the test wants (`exec_result`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kade.drivers.base import (
    DriverError,
    ExecResult,
    LaunchSpec,
    OutputLine,
    Workload,
    WorkloadEvent,
)
from kade.logs.record import Resume, Stream


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...]


class FakeDriver:
    name = "fake"
    default_user: str | None = None

    def __init__(self, *, cpus: float = 4.0, mem: float = 8192.0,
                 stop_exit_code: int = 143, name: str = "fake") -> None:
        self.name = name  # e.g. "docker" and "exec", to play a node's drivers side by side
        self.cpus, self.mem = cpus, mem
        self.stop_exit_code = stop_exit_code  # what a stopped workload exits with
        self.calls: list[Call] = []
        self.workloads: dict[str, Workload] = {}  # by workload id
        self.specs: dict[str, LaunchSpec] = {}  # by task id, as last started
        self.progress_lines: list[str] = []  # reported to start()'s progress callback
        self.start_errors: dict[str, str] = {}  # task or app id → DriverError message
        self.exec_result: ExecResult | Callable[[Workload, str], ExecResult] = ExecResult(0, "")
        self.log_data: dict[str, bytes] = {}  # by task id
        # by task id: what output() gives (stamped 1, 2, …), once the workload has exited
        self.output_lines: dict[str, list[tuple[Stream, bytes]]] = {}
        self.signals: list[tuple[str, str]] = []  # (task id, signal) delivered to a running one
        self.now: Callable[[], float] = lambda: 0.0  # for started_at; give it a FakeClock
        self.closed = False
        self._ids = itertools.count(1)
        self._subscribers: set[asyncio.Queue[WorkloadEvent]] = set()

    # -- what tests do ---------------------------------------------------------------------

    def fail_start(self, task_or_app_id: str, message: str = "fake start failure") -> None:
        self.start_errors[task_or_app_id] = message

    def by_task(self, task_id: str) -> Workload | None:
        """The newest workload of a task."""
        found = [w for w in self.workloads.values() if w.task_id == task_id]
        return found[-1] if found else None

    def running(self) -> list[Workload]:
        return [w for w in self.workloads.values() if w.state == "running"]

    def crash(self, task_id: str, code: int = 1) -> Workload:
        """The task's workload exits on its own with `code`."""
        w = self.by_task(task_id)
        if w is None:
            raise KeyError(task_id)
        return self._exit(w, code)

    def add(self, workload: Workload) -> None:
        """A workload that was there before (left by an earlier agent), announced by nobody."""
        self.workloads[workload.id] = workload

    def emit(self, event: WorkloadEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [c.args for c in self.calls if c.method == method]

    def _exit(self, w: Workload, code: int | None) -> Workload:
        w = replace(w, state="exited", exit_code=code)
        self.workloads[w.id] = w
        self.emit(WorkloadEvent(w.id, w.task_id, "exited", code))
        return w

    # -- the Driver protocol ---------------------------------------------------------------

    async def resources(self) -> tuple[float, float]:
        return self.cpus, self.mem

    async def list(self) -> list[Workload]:
        self.calls.append(Call("list", ()))
        return list(self.workloads.values())

    async def start(self, spec: LaunchSpec, progress: Callable[[str], None]) -> Workload:
        self.calls.append(Call("start", (spec,)))
        for line in self.progress_lines:
            progress(line)
        error = self.start_errors.get(spec.task_id) or self.start_errors.get(spec.app.id)
        if error is not None:
            raise DriverError(error)
        for old in [w for w in self.workloads.values() if w.task_id == spec.task_id]:
            del self.workloads[old.id]  # a leftover of the same task is replaced
        w = Workload(id=f"{self.name}-{next(self._ids)}", task_id=spec.task_id, app_id=spec.app.id,
                     spec_hash=spec.spec_hash, state="running", started_at=self.now(),
                     labels=spec.labels())
        self.workloads[w.id] = w
        self.specs[spec.task_id] = spec
        self.emit(WorkloadEvent(w.id, w.task_id, "started"))
        return w

    async def stop(self, workload_id: str, grace: float) -> int | None:
        self.calls.append(Call("stop", (workload_id, grace)))
        w = self.workloads.get(workload_id)
        if w is None:
            return None
        if w.state != "running":
            return w.exit_code
        return self._exit(w, self.stop_exit_code).exit_code

    async def signal(self, workload_id: str, signal: str) -> None:
        self.calls.append(Call("signal", (workload_id, signal)))
        w = self.workloads.get(workload_id)
        if w is not None and w.state == "running":
            self.signals.append((w.task_id, signal))

    async def remove(self, workload_id: str) -> None:
        self.calls.append(Call("remove", (workload_id,)))
        w = self.workloads.pop(workload_id, None)
        if w is not None:
            self.emit(WorkloadEvent(w.id, w.task_id, "removed"))

    async def pid(self, workload_id: str) -> int | None:
        return None  # a fake workload has no process

    async def alive(self, workload_id: str) -> bool:
        w = self.workloads.get(workload_id)
        return w is not None and w.state == "running"

    async def exec(self, workload_id: str, command: str, timeout: float) -> ExecResult:
        self.calls.append(Call("exec", (workload_id, command, timeout)))
        w = self.workloads.get(workload_id)
        if w is None or w.state != "running":
            raise DriverError(f"{workload_id} is not running")
        if isinstance(self.exec_result, ExecResult):
            return self.exec_result
        return self.exec_result(w, command)

    async def events(self) -> AsyncIterator[WorkloadEvent]:
        queue: asyncio.Queue[WorkloadEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def logs(self, workload_id: str, *, follow: bool,
                   tail: int | None) -> AsyncIterator[bytes]:
        self.calls.append(Call("logs", (workload_id, follow, tail)))
        w = self.workloads.get(workload_id)
        if w is None:
            raise DriverError(f"no such workload: {workload_id}")
        data = self.log_data.get(w.task_id, b"")
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        if data:
            yield data

    async def output(self, workload_id: str,
                     resume: Mapping[Stream, Resume]) -> AsyncIterator[OutputLine]:
        """The task's `output_lines` past `resume`'s stamps, once its workload no longer
        runs (a real runtime gives them as they come; tests look at the end result)."""
        self.calls.append(Call("output", (workload_id, dict(resume))))
        w = self.workloads.get(workload_id)
        while w is not None and w.state == "running":
            await asyncio.sleep(0.01)
            w = self.workloads.get(workload_id)
        if w is None:
            return
        for time, (stream, line) in enumerate(self.output_lines.get(w.task_id, []), 1):
            if stream not in resume or time > resume[stream].time:
                yield OutputLine(time, stream, line)

    async def close(self) -> None:
        self.calls.append(Call("close", ()))
        self.closed = True
