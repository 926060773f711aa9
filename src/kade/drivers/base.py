"""What the agent needs from a runtime. Only drivers talk to Docker or spawn task processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from kade.logs.record import Resume, Stream
from kade.spec import AppSpec

# Labels on every workload kade starts: a restarted agent re-adopts what runs from them.
LABEL_TASK = "kade.task-id"
LABEL_APP = "kade.app-id"
LABEL_VERSION = "kade.app-version"
LABEL_HASH = "kade.spec-hash"
LABEL_NODE = "kade.node"


@dataclass(frozen=True)
class Mount:
    """A host path seen by the task at `container_path`. `links`: (path in the task, name
    in this directory) pairs: each path is made a symbolic link to that file of the mounted
    directory (a task's rendered templates, replaced by rename: see kade.agent.templating)."""

    host_path: str
    container_path: str
    read_only: bool = True
    links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one task; built by the agent from the task and its app."""

    task_id: str
    app: AppSpec
    version: str
    spec_hash: str
    node: str
    host: str  # the address endpoints are reached on
    host_ports: list[int]
    env: dict[str, str]  # complete: app env + $PORT0.., $HOST, KADE_* ...
    mounts: list[Mount] = field(default_factory=list)

    def labels(self) -> dict[str, str]:
        out = dict(self.app.labels)
        out.update({
            LABEL_TASK: self.task_id,
            LABEL_APP: self.app.id,
            LABEL_VERSION: self.version,
            LABEL_HASH: self.spec_hash,
            LABEL_NODE: self.node,
        })
        return out


WorkloadState = Literal["created", "running", "exited", "gone"]


@dataclass(frozen=True)
class Workload:
    """A container (or process) that carries kade's labels, as the runtime reports it."""

    id: str  # container id, or "pid:<n>" for the exec driver
    task_id: str
    app_id: str
    spec_hash: str
    state: WorkloadState
    exit_code: int | None = None
    started_at: float | None = None  # unix time
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadEvent:
    """A workload changed state: started, exited (died/killed), or was removed."""

    id: str
    task_id: str
    kind: Literal["started", "exited", "removed"]
    exit_code: int | None = None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


class OutputLine(NamedTuple):
    """One line a workload wrote, as `Driver.output` follows it (a named tuple: made for
    every line of every task, it must be cheap)."""

    time: int  # ns since the epoch: the runtime's stamp (Docker), or when it was read (exec)
    stream: Stream
    line: bytes  # without its newline; a line Docker split into several messages is whole
    offset: int = 0  # exec: the byte offset just past this line in its file (0: Docker)


class DriverError(Exception):
    """Starting or stopping failed; the message is shown to the user as the task's reason."""


class Driver(Protocol):
    name: str
    default_user: str | None  # who runs a command app that names no `user` (None: kade's own)

    async def resources(self) -> tuple[float, float]:
        """The node's cpus and memory (MiB), as the runtime sees them."""
        ...

    async def list(self) -> list[Workload]:
        """Every workload with kade's labels, running or not."""
        ...

    async def start(self, spec: LaunchSpec, progress: Callable[[str], None]) -> Workload:
        """Pull if needed (reporting progress), create with labels, start. Raise DriverError."""
        ...

    async def stop(self, workload_id: str, grace: float) -> int | None:
        """SIGTERM, wait up to `grace` seconds, SIGKILL. Returns the exit code if known."""
        ...

    async def signal(self, workload_id: str, signal: str) -> None:
        """Send a signal (`SIGHUP`…) to the workload's main process (template change_mode)."""
        ...

    async def remove(self, workload_id: str) -> None:
        """Forget a stopped workload (remove the container). Missing is not an error."""
        ...

    async def exec(self, workload_id: str, command: str, timeout: float) -> ExecResult:
        """Run `command` with /bin/sh -c inside the workload (COMMAND health checks)."""
        ...

    async def pid(self, workload_id: str) -> int | None:
        """The workload's main process on this machine (its cgroup and namespaces are what
        the metrics collector reads); None when it does not run."""
        ...

    async def alive(self, workload_id: str) -> bool:
        """Whether the workload's process runs now, asked of the runtime (not of the events
        seen so far): a health check that passed counts only if it still does."""
        ...

    def events(self) -> AsyncIterator[WorkloadEvent]:
        """Workload state changes as they happen (Docker's event stream), forever."""
        ...

    def logs(self, workload_id: str, *, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        """stdout and stderr of a workload."""
        ...

    def output(self, workload_id: str,
               resume: Mapping[Stream, Resume]) -> AsyncIterator[OutputLine]:
        """Follow a workload's stdout and stderr line by line from where a capture stopped
        (`resume`, per stream: Docker skips what is stamped before `time` and the first
        `count` lines stamped `time`; exec starts at `offset`), until the workload is gone
        and its output is read to the end. Nothing is polled."""
        ...

    async def close(self) -> None: ...
