"""Where the API reads logs from: a `LogSource`.

On `kade up` that is the node's own `LogStore`; on a `kade server`, which keeps no lines,
it is the fan-out (`kade.logs.fanout`) that asks every node and merges their answers. The API
is the same for both. A fan-out may answer without some nodes (down, slow): its answers are
`Answer`s naming them, and its follow stream says so with an `Unanswered` item.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol, TypeVar

from kade.fanout import Unanswered
from kade.logs.record import LogLine, LogQuery, TaskLog

__all__ = ["Answer", "LogSource", "Unanswered", "merge_lines", "merge_tasks", "unanswered_of"]
T = TypeVar("T")


class Answer(list[T]):
    """A list of lines or tasks, and the nodes that were left out of it."""

    def __init__(self, items: Iterable[T] = (), unanswered: Sequence[Unanswered] = ()) -> None:
        super().__init__(items)
        self.unanswered = tuple(unanswered)


class LogSource(Protocol):
    async def query(self, query: LogQuery) -> Sequence[LogLine]:
        """The query's lines in time order, at most `query.tail` or `query.limit`."""
        ...

    def follow(self, query: LogQuery) -> AsyncIterator[LogLine | Unanswered]:
        """The query's lines, then new ones as they are stored, until closed."""
        ...

    async def tasks(self, *, app: str | None = None, task: str | None = None,
                    previous: bool = False) -> Sequence[TaskLog]:
        """The tasks whose output is kept: started, ended, exit code and reason."""
        ...


def unanswered_of(answer: Sequence[object]) -> tuple[Unanswered, ...]:
    return answer.unanswered if isinstance(answer, Answer) else ()


def line_order(line: LogLine) -> tuple[int, str, str, int]:
    """Time first; lines of one task and stream sharing a stamp keep their order."""
    return (line.time, line.task, line.stream, line.seq)


def merge_lines(answers: Iterable[Sequence[LogLine]], query: LogQuery) -> list[LogLine]:
    """Several nodes' answers (each in time order) as one, in time order: the last `tail`
    lines of the merge when the query asks for a tail, else its first `limit`."""
    merged = heapq.merge(*answers, key=line_order)
    if query.tail is not None:
        return list(deque(merged, maxlen=query.tail))
    out: list[LogLine] = []
    for line in merged:
        if len(out) >= query.limit:
            break
        out.append(line)
    return out


def merge_tasks(answers: Iterable[Sequence[TaskLog]]) -> list[TaskLog]:
    """Several nodes' tasks as one list, by start (a task moved between nodes is two)."""
    return sorted((t for answer in answers for t in answer),
                  key=lambda t: (t.started, t.node, t.task))
