"""Log capture: every task's stdout and stderr, followed through its driver into the node's
log store, labelled with app, task, version, node and stream.

A task hook (hooks.py): a capture starts when the agent sees the workload run (started or
adopted) and goes on from where the store's lines of the task end (`resume_point`), so after
a `kill -9` of kade no line is lost and none is stored twice. Lines are written in batches
(up to BATCH lines, or what came within FLUSH_EVERY), one durable append each. When the task
is done here, the cleanup step waits for the capture to read the workload's output to its
end before the workload is removed (the last lines of a crash are the ones wanted), then
records how the task ended: its exit code and its status message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kade.agent.hooks import Host, TaskHook, TaskState
from kade.drivers.base import LABEL_VERSION, Workload
from kade.logs.record import STREAMS, LogLine, Resume, Retention, Stream, TaskLog
from kade.model import TERMINAL, Task
from kade.spec import AppSpec

log = logging.getLogger("kade.agent")

BATCH = 1000  # lines in one append
FLUSH_EVERY = 0.1  # seconds a line waits at most for others to share its append
MAX_PENDING = 10 * BATCH  # lines read ahead of the store before reading waits
DRAIN_TIMEOUT = 10.0  # seconds a cleanup waits for the rest of a task's output
RETRY_AFTER = 2.0  # seconds before a capture that failed goes on


class LogSink(Protocol):
    """What the capture uses of the node's log store (`kade.logs.store.LogStore`)."""

    async def append(self, lines: Sequence[LogLine]) -> None: ...
    async def resume_point(self, task_id: str, stream: Stream) -> Resume: ...
    async def task_started(self, task: TaskLog) -> None: ...
    async def task_ended(self, task_id: str, exit_code: int | None, reason: str,
                         ended_ns: int) -> None: ...
    async def set_retention(self, app_id: str, retention: Retention) -> None: ...


@dataclass(frozen=True)
class _Labels:
    app: str
    task: str
    version: str
    node: str


@dataclass
class _Capture:
    workload_id: str
    runner: asyncio.Task[None]


class LogCapture(TaskHook):
    """The capture hook: one capture per workload, from poststart (or from cleanup, for a
    workload that ended while no capture ran) until its output is read to the end."""

    def __init__(self, host: Host, store: LogSink, node: str) -> None:
        self.host = host
        self.store = store
        self.node = node
        self._captures: dict[str, _Capture] = {}  # by task id
        self._retention: dict[str, Retention] = {}  # by app id, as last given to the store
        self._open: set[str] = set()  # tasks whose end is still to be recorded

    async def poststart(self, state: TaskState, task: Task, app: AppSpec,
                        wl: Workload) -> None:
        retention = Retention(app.logs.max_bytes if app.logs else None,
                              app.logs.max_age if app.logs else None)
        if self._retention.get(app.id) != retention:
            await self.store.set_retention(app.id, retention)
            self._retention[app.id] = retention
        current = self._captures.get(task.id)
        if current is None or current.workload_id != wl.id:
            self._start(wl, wl.started_at or self.host.clock())

    def _start(self, wl: Workload, started: float) -> _Capture:
        labels = _Labels(app=wl.app_id, task=wl.task_id,
                         version=wl.labels.get(LABEL_VERSION, ""), node=self.node)
        capture = _Capture(wl.id, self.host.spawn(self._run(labels, wl.id, started)))
        self._captures[wl.task_id] = capture
        self._open.add(wl.task_id)
        return capture

    async def cleanup(self, state: TaskState, task_id: str) -> None:
        wl = state.workload
        if wl is not None and wl.state == "running":
            return  # not done yet: its output goes on
        capture = self._captures.pop(task_id, None)
        if capture is None and wl is not None and wl.task_id == task_id:
            # e.g. it ended while kade was down: what it wrote since is read now
            capture = self._start(wl, wl.started_at or self.host.clock())
            self._captures.pop(task_id, None)
        if capture is not None:
            done, _ = await asyncio.wait({capture.runner}, timeout=DRAIN_TIMEOUT)
            if not done:
                log.warning("task %s: its output was not read to the end within %.0fs",
                            task_id, DRAIN_TIMEOUT)
                capture.runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await capture.runner
        if task_id in self._open:
            status = state.status
            if status is not None and status.state in TERMINAL:
                code, reason, ended = status.exit_code, status.message, status.updated_at
            else:  # stopped with no status of its end: the task was forgotten, or an orphan
                code = wl.exit_code if wl is not None else None
                reason, ended = "stopped: no task placed for it", self.host.clock()
            await self.store.task_ended(task_id, code, reason, int(ended * 1e9))
            self._open.discard(task_id)

    def forget(self, task_id: str) -> None:
        capture = self._captures.pop(task_id, None)
        if capture is not None:
            capture.runner.cancel()
        self._open.discard(task_id)

    # -- one workload's capture ----------------------------------------------------------------

    async def _run(self, labels: _Labels, workload_id: str, started: float) -> None:
        told = False
        while True:
            try:
                if not told:
                    await self.store.task_started(TaskLog(
                        task=labels.task, app=labels.app, version=labels.version,
                        node=labels.node, started=int(started * 1e9)))
                    told = True
                await self._follow(labels, workload_id)
                return
            except Exception as e:  # noqa: BLE001 - a capture never takes the agent down
                log.warning("task %s: capturing its output: %s (going on in %.0fs)",
                            labels.task, e, RETRY_AFTER)
                await asyncio.sleep(RETRY_AFTER)

    async def _resume(self, task_id: str) -> dict[Stream, Resume]:
        return {s: await self.store.resume_point(task_id, s) for s in STREAMS}

    async def _follow(self, labels: _Labels, workload_id: str) -> None:
        resume = await self._resume(labels.task)
        pending: list[LogLine] = []
        arrived, full, room = asyncio.Event(), asyncio.Event(), asyncio.Event()
        room.set()
        ended = False

        async def read() -> None:
            nonlocal ended
            # per stream: the last stamp and the seq of its last line (Docker may give
            # several lines one stamp; seq tells them apart)
            last = {s: (resume[s].time, resume[s].count - 1) for s in STREAMS}
            app, task, version, node = labels.app, labels.task, labels.version, labels.node
            async for out in self.host.driver.output(workload_id, resume):
                t, n = last[out.stream]
                seq = n + 1 if out.time == t else 0
                last[out.stream] = (out.time, seq)
                # bytes that are not UTF-8 are kept as they were (the store counts them so,
                # which is what makes its offsets those of an exec task's files)
                pending.append(LogLine(out.time, app, task, version, node, out.stream,
                                       out.line.decode("utf-8", "surrogateescape"), seq))
                arrived.set()
                if len(pending) >= BATCH:
                    full.set()
                    if len(pending) >= MAX_PENDING:
                        room.clear()
                        await room.wait()
            ended = True
            arrived.set()
            full.set()

        async def write() -> None:
            while True:
                if not pending:
                    if ended:
                        return
                    arrived.clear()
                    await arrived.wait()
                    continue
                if len(pending) < BATCH and not ended:  # let a batch gather
                    full.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(FLUSH_EVERY):
                            await full.wait()
                batch = pending[:BATCH]
                del pending[:BATCH]
                room.set()
                await self.store.append(batch)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(read())
            tg.create_task(write())
