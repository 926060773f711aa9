"""Answers of several nodes merged by time; tail is the last n of the merge."""

from __future__ import annotations

from kade.logs.record import LogLine, LogQuery, TaskLog
from kade.logs.source import merge_lines, merge_tasks
from kade.logs.text import by_task, line_from_json, task_from_json, task_json


def line(t: int, task: str, text: str, node: str = "n1", seq: int = 0) -> LogLine:
    return LogLine(time=t, app="/shop/web", task=task, version="v1", node=node,
                   stream="stdout", line=text, seq=seq)


N1 = [line(1, "a", "a1"), line(4, "a", "a4"), line(4, "a", "a4b", seq=1), line(9, "a", "a9")]
N2 = [line(2, "b", "b2", "n2"), line(4, "b", "b4", "n2"), line(7, "b", "b7", "n2")]


def texts(lines: list[LogLine]) -> list[str]:
    return [x.line for x in lines]


def test_merged_by_time_and_bounded() -> None:
    q = LogQuery(app="/shop/web")
    assert texts(merge_lines([N1, N2], q)) == ["a1", "b2", "a4", "a4b", "b4", "b7", "a9"]
    assert texts(merge_lines([N1, N2], LogQuery(app="/x", limit=3))) == ["a1", "b2", "a4"]
    assert texts(merge_lines([N1, N2, []], LogQuery(app="/x", tail=3))) == ["b4", "b7", "a9"]
    assert merge_lines([N1, N2], LogQuery(app="/x", tail=0)) == []
    assert texts(merge_lines([N2], LogQuery(app="/x", tail=99))) == ["b2", "b4", "b7"]


def test_previous_tasks_say_how_they_ended() -> None:
    gone = TaskLog("a", "/shop/web", "v1", "n1", started=1, ended=10**9 * 1_764_522_000,
                   exit_code=3, reason="exited with code 3")
    moved = TaskLog("b", "/shop/web", "v1", "n2", started=0, ended=None)
    assert merge_tasks([[gone], [moved]]) == [moved, gone]
    assert list(by_task(N1 + N2, [gone, moved])) == [
        "--- b on n2, version v1: still running", "b2", "b4", "b7",
        "--- a on n1, version v1: exited with code 3 at 2025-11-30T17:00:00.000Z",
        "a1", "a4", "a4b", "a9"]
    assert task_from_json(task_json(gone)) == gone


def test_a_json_line_reads_back() -> None:
    one = line(1_764_522_000_123_456_000, "a", "x")
    assert line_from_json(one.as_json()) == one
