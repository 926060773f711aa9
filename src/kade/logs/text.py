"""How log lines and tasks read as text and JSON: one way for the API's answers and the CLI.

    shop_web.1c4c91cf6e10 GET /cart 200                 a line of an app (prefixed by its task)
    GET /cart 200                                       a line of one task
    --- shop_web.1c4c91cf6e10 on n1, version 2026-…: exited with code 3 at 2026-11-30T17:00:01Z
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kade.logs.record import LogLine, TaskLog
from kade.logs.source import Unanswered


def iso(ns: int) -> str:
    when = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


def line_text(line: LogLine, prefixed: bool) -> str:
    return f"{line.task} {line.line}" if prefixed else line.line


def ending(task: TaskLog) -> str:
    """How a task ended, in words: its reason, else its exit code; or that it runs."""
    if task.ended is None:
        return "still running"
    how = task.reason or (f"exited with code {task.exit_code}" if task.exit_code is not None
                          else "ended")
    return f"{how} at {iso(task.ended)}"


def task_header(task: TaskLog) -> str:
    return f"--- {task.task} on {task.node}, version {task.version}: {ending(task)}"


def task_json(task: TaskLog) -> dict[str, Any]:
    return {"task": task.task, "app": task.app, "version": task.version, "node": task.node,
            "started": task.started / 1e9,
            "ended": None if task.ended is None else task.ended / 1e9,
            "exitCode": task.exit_code, "reason": task.reason}


def unanswered_json(missing: Iterable[Unanswered]) -> dict[str, Any]:
    return {"unanswered": [{"node": m.node, "reason": m.reason} for m in missing]}


def unanswered_text(missing: Unanswered) -> str:
    return f"node {missing.node} did not answer: {missing.reason}"


def by_task(lines: Iterable[LogLine], tasks: Iterable[TaskLog]) -> Iterator[str]:
    """`--previous`: each ended task's header, then its lines (tasks in the order they
    started; a task with no line kept still says how it ended)."""
    grouped: dict[str, list[LogLine]] = {}
    for line in lines:
        grouped.setdefault(line.task, []).append(line)
    seen: set[str] = set()
    for task in sorted(tasks, key=lambda t: (t.started, t.task)):
        if task.task in seen:
            continue
        seen.add(task.task)
        yield task_header(task)
        for line in grouped.pop(task.task, []):
            yield line.line
    for task_id, rest in grouped.items():  # lines of a task not listed (its record went)
        yield f"--- {task_id}"
        yield from (line.line for line in rest)


def line_from_json(data: Mapping[str, Any]) -> LogLine:
    """A line of an answer in JSON (`LogLine.as_json`), back (times to the microsecond)."""
    return LogLine(time=round(float(data["time"]) * 1e9), app=str(data["app"]),
                   task=str(data["task"]), version=str(data["version"]),
                   node=str(data["node"]), stream=data["stream"], line=str(data["line"]))


def task_from_json(data: Mapping[str, Any]) -> TaskLog:
    ended = data.get("ended")
    return TaskLog(task=str(data["task"]), app=str(data["app"]), version=str(data["version"]),
                   node=str(data["node"]), started=round(float(data["started"]) * 1e9),
                   ended=None if ended is None else round(float(ended) * 1e9),
                   exit_code=data.get("exitCode"), reason=str(data.get("reason") or ""))
