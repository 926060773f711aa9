"""How a node's listener and the servers' fan-out exchange lines and tasks: times exact to
the nanosecond (JSON numbers of `as_json` are not), compact, one format both ways.

    {"lines": [[time_ns, app, task, version, node, stream, line, seq], ...]}
    {"tasks": [{"task", "app", "version", "node", "started", "ended", "exitCode", "reason"}]}

A follow is a stream of JSON lines: line arrays (the history first), then `{"live": true}`
once the history is sent, then new lines; `{}` as keepalive.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from kade.logs.record import STREAMS, LogLine, LogQuery, TaskLog
from kade.logs.source import line_order

LIVE = b'{"live":true}\n'
KEEPALIVE = b"{}\n"
HISTORY_OVERLAP_NS = 1_000_000_000  # a line stamped this long before the history's end,
# stored after it was read, is still sent


def line_row(line: LogLine) -> list[Any]:
    return [line.time, line.app, line.task, line.version, line.node, line.stream, line.line,
            line.seq]


def line_of_row(row: Any) -> LogLine:
    if not isinstance(row, list) or len(row) != 8:
        raise ValueError("a line must be [time, app, task, version, node, stream, line, seq]")
    time, app, task, version, node, stream, text, seq = row
    if not (isinstance(time, int) and isinstance(seq, int) and stream in STREAMS
            and all(isinstance(v, str) for v in (app, task, version, node, text))):
        raise ValueError("a line has a field of the wrong type")
    return LogLine(time=time, app=app, task=task, version=version, node=node, stream=stream,
                   line=text, seq=seq)


def task_row(task: TaskLog) -> dict[str, Any]:
    return {"task": task.task, "app": task.app, "version": task.version, "node": task.node,
            "started": task.started, "ended": task.ended, "exitCode": task.exit_code,
            "reason": task.reason}


def task_of_row(row: Any) -> TaskLog:
    if not isinstance(row, dict):
        raise ValueError("a task must be an object")
    ended, code = row.get("ended"), row.get("exitCode")
    if not isinstance(row.get("started"), int) or not isinstance(ended, int | None) or \
            not isinstance(code, int | None):
        raise ValueError("a task has a time or exit code that is not an integer")
    return TaskLog(task=str(row["task"]), app=str(row["app"]), version=str(row["version"]),
                   node=str(row["node"]), started=row["started"], ended=ended,
                   exit_code=code, reason=str(row.get("reason") or ""))


def dump_lines(lines: Iterable[LogLine]) -> bytes:
    return json.dumps({"lines": [line_row(x) for x in lines]}, ensure_ascii=False,
                      separators=(",", ":")).encode()


def dump_tasks(tasks: Iterable[TaskLog]) -> bytes:
    return json.dumps({"tasks": [task_row(t) for t in tasks]},
                      separators=(",", ":")).encode()


def load_lines(body: bytes) -> list[LogLine]:
    return [line_of_row(row) for row in json.loads(body)["lines"]]


def load_tasks(body: bytes) -> list[TaskLog]:
    return [task_of_row(row) for row in json.loads(body)["tasks"]]


def encode_row(line: LogLine) -> bytes:
    return json.dumps(line_row(line), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class Follower:
    """Sends a history then live lines without a line twice or one lost in between: the
    live part is followed from a little before the history's end, and lines already sent (or
    older than the history's first) are skipped."""

    def __init__(self, history: Sequence[LogLine], query: LogQuery, start_ns: int) -> None:
        self.history = history
        self._sent = {line_order(x) for x in history}
        self._floor = line_order(history[0]) if history else None
        end = history[-1].time if history else start_ns
        since = end - HISTORY_OVERLAP_NS
        if query.since is not None:
            since = max(since, query.since)
        self.live_query = LogQuery(
            app=query.app, task=query.task, since=since, until=query.until,
            streams=query.streams, grep=query.grep, text=query.text, where=query.where,
            tail=None, previous=query.previous)

    def new(self, line: LogLine) -> bool:
        key = line_order(line)
        return key not in self._sent and (self._floor is None or key > self._floor)


async def follow_rows(history: Sequence[LogLine], live: AsyncIterator[LogLine],
                      follower: Follower) -> AsyncIterator[bytes]:
    for line in history:
        yield encode_row(line)
    yield LIVE
    async for line in live:
        if follower.new(line):
            yield encode_row(line)
