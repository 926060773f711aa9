"""Docker's log messages into whole lines, and the skip of what a capture already has."""

from __future__ import annotations

from kade.drivers.docker_output import DockerLines, StampParser, since_param
from kade.logs.record import Resume

T0 = "2026-11-30T21:14:52.113191170Z"
NS0 = 1796073292_113191170


def test_stamps_to_nanoseconds() -> None:
    parse = StampParser()
    assert parse(T0.encode()) == NS0
    assert parse(b"2026-11-30T21:14:52.1Z") == 1796073292_100000000  # zeros trimmed
    assert parse(b"2026-11-30T21:14:53Z") == 1796073293_000000000
    assert since_param(NS0) == "1796073292.113191170"


def test_parts_of_a_long_line_are_joined_under_their_first_stamp() -> None:
    lines = DockerLines({})
    assert lines.feed("stdout", f"{T0} aaaa".encode()) is None
    assert lines.feed("stderr", f"{T0} oops\n".encode()) is not None  # another stream
    assert lines.feed("stdout", f"{T0} bbbb".encode()) is None
    got = lines.feed("stdout", f"{T0} cc\n".encode())
    assert got is not None and (got.time, got.stream, got.line) == (NS0, "stdout", b"aaaabbbbcc")
    assert lines.feed("stdout", f"{T0} no newline at the end".encode()) is None
    assert [x.line for x in lines.flush()] == [b"no newline at the end"]


def test_lines_a_capture_has_are_skipped_by_stamp_and_count() -> None:
    lines = DockerLines({"stdout": Resume(time=NS0, count=2)})
    assert lines.since() == 0  # stderr has nothing yet: from the start
    earlier = "2026-11-30T21:14:52.000000001Z"
    assert lines.feed("stdout", f"{earlier} old\n".encode()) is None
    assert lines.feed("stdout", f"{T0} one\n".encode()) is None
    assert lines.feed("stdout", f"{T0} two\n".encode()) is None
    got = lines.feed("stdout", f"{T0} three\n".encode())
    assert got is not None and got.line == b"three"
    assert lines.position["stdout"] == (NS0, 3)
    # followed again after a break: the three are skipped, what follows is not
    lines.restart()
    assert lines.since() == 0
    for text in ("one", "two", "three"):
        assert lines.feed("stdout", f"{T0} {text}\n".encode()) is None
    got = lines.feed("stdout", f"{T0} four\r\n".encode())
    assert got is not None and got.line == b"four"
