"""What a node sends a server: exact times, and a follow's history then live lines with
none twice and none lost in between."""

from __future__ import annotations

from kade.logs.record import LogLine, LogQuery, TaskLog
from kade.logs.wire import Follower, dump_lines, dump_tasks, load_lines, load_tasks

S = 10**9


def line(t: int, text: str, seq: int = 0) -> LogLine:
    return LogLine(time=t, app="/a", task="a.1", version="v", node="n1", stream="stderr",
                   line=text, seq=seq)


def test_lines_and_tasks_keep_their_nanoseconds() -> None:
    lines = [line(1_764_522_000_123_456_789, "é ✓"), line(1_764_522_000_123_456_789, "x", 1)]
    assert load_lines(dump_lines(lines)) == lines
    tasks = [TaskLog("a.1", "/a", "v", "n1", started=1, ended=2, exit_code=137,
                     reason="killed"), TaskLog("a.2", "/a", "v", "n1", started=3)]
    assert load_tasks(dump_tasks(tasks)) == tasks


def test_follow_goes_on_after_the_history_without_repeating_it() -> None:
    history = [line(100 * S, "h1"), line(101 * S, "h2"), line(101 * S, "h3", seq=1)]
    f = Follower(history, LogQuery(app="/a", tail=3), start_ns=102 * S)
    assert f.live_query.since == 100 * S and f.live_query.tail is None
    assert not f.new(line(101 * S, "h3", seq=1))  # sent with the history
    assert not f.new(line(99 * S, "older than the history"))
    assert f.new(line(101 * S, "late, stamped within the history", seq=2))
    assert f.new(line(103 * S, "new"))
    quiet = Follower([], LogQuery(app="/a", since=5 * S), start_ns=200 * S)
    assert quiet.live_query.since == 199 * S and quiet.new(line(150 * S, "x")) is True
