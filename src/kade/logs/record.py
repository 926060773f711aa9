"""What kade keeps of its tasks' output: lines, and how each task ended.

Shared by the agent's log capture (writes), the node's log store (keeps and answers) and the
API (serves, and merges the answers of several nodes by time). Times are integer nanoseconds
since the epoch, as Docker stamps its lines: a capture that resumes after a crash starts from
the last stored stamp without losing or repeating a line.

The store itself is `kade.logs.store.LogStore`; its methods, used by the other parts:

    await store.open() / await store.close()
    await store.append(lines: Sequence[LogLine]) -> None     # durable before it returns
    await store.resume_point(task_id, stream) -> Resume      # where a capture goes on from
    await store.task_started(TaskLog) / await store.task_ended(task_id, exit_code, reason, ended_ns)
    await store.tasks(app=..., task=..., previous=...) -> list[TaskLog]
    await store.query(LogQuery) -> list[LogLine]             # time order, bounded
    store.follow(LogQuery) -> AsyncIterator[LogLine]          # the query's lines, then new ones
    await store.set_retention(app_id, Retention)              # the app's "logs" bounds
    await store.enforce_retention() -> int                    # lines removed

`LogStore(data_dir, defaults=Retention(), clock=time.time)` keeps its files under
`<data_dir>/logs/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, ...] = ("stdout", "stderr")

MAX_LINE = 64 * 1024  # bytes of one line kept; longer ones are cut and marked
MAX_TAIL = 10_000  # lines in one answer (`tail`, `limit`)


@dataclass(frozen=True)
class LogLine:
    time: int  # ns since the epoch: the runtime's stamp (Docker) or the capture's (exec)
    app: str
    task: str
    version: str
    node: str
    stream: Stream
    line: str  # without its newline
    seq: int = 0  # orders lines of one task and stream that share a stamp

    def as_json(self) -> dict[str, object]:
        return {"time": self.time / 1e9, "app": self.app, "task": self.task,
                "version": self.version, "node": self.node, "stream": self.stream,
                "line": self.line}


@dataclass(frozen=True)
class TaskLog:
    """A task whose output is kept: when it ran and, once it ended, how."""

    task: str
    app: str
    version: str
    node: str
    started: int  # ns
    ended: int | None = None  # ns; None while it runs
    exit_code: int | None = None
    reason: str = ""  # the task's status message when it ended ("exited with code 3", ...)


@dataclass(frozen=True)
class Resume:
    """Where the capture of one task's stream goes on after a restart: lines stamped before
    `time` are stored, and so are the first `count` lines stamped exactly `time` (Docker gives
    several lines one stamp only rarely, but it does). `offset` is the byte offset reached in
    an exec task's output file."""

    time: int = 0
    count: int = 0
    offset: int = 0


@dataclass(frozen=True)
class Retention:
    """How much of one app's output a node keeps; None: the node's default."""

    max_bytes: int | None = None
    max_age: float | None = None  # seconds


Where = tuple[str, Literal["=", "!=", "~"], str]  # a JSON line's field, operator, value


@dataclass(frozen=True)
class LogQuery:
    """Which lines to read. Exactly one of `app` (every task of it, previous ones included)
    or `task`. `grep`: an RE2 regular expression a line must match; `text`: words (or a
    "quoted phrase") the line must contain, answered by the full-text index; `where`: fields
    of lines that are JSON objects. `tail`: the last n lines of the selection (else the first
    `limit`). `previous`: only tasks that ended."""

    app: str | None = None
    task: str | None = None
    since: int | None = None  # ns, inclusive
    until: int | None = None  # ns, exclusive
    streams: tuple[Stream, ...] = STREAMS
    grep: str | None = None
    text: str | None = None
    where: tuple[Where, ...] = field(default_factory=tuple)
    tail: int | None = None
    limit: int = MAX_TAIL
    previous: bool = False
