"""An exec task's output file read line by line from byte offsets."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kade.drivers.exec_output import PENDING_LIMIT, Changes, FileLines


def test_whole_lines_from_an_offset_and_the_unfinished_one_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "stdout"
    path.write_bytes(b"one\ntwo\nthr")
    lines = FileLines(path, "stdout")
    got = lines.read()
    assert [(x.line, x.offset) for x in got] == [(b"one", 4), (b"two", 8)]
    assert got[0].time < got[1].time  # stamped as read, always growing
    assert lines.read() == []  # "thr" may go on
    with path.open("ab") as f:
        f.write(b"ee\nfour")
    assert [(x.line, x.offset) for x in lines.read()] == [(b"three", 14)]
    assert [(x.line, x.offset) for x in lines.read(final=True)] == [(b"four", 18)]
    lines.close()
    resumed = FileLines(path, "stdout", offset=8)  # where a capture that stored two went on
    assert [x.line for x in resumed.read(final=True)] == [b"three", b"four"]
    resumed.close()


def test_a_line_with_no_end_in_sight_is_given_out_in_pieces(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    path.write_bytes(b"y" * (PENDING_LIMIT + 10))
    lines = FileLines(path, "stderr")
    got = lines.read()
    assert [len(x.line) for x in got] == [PENDING_LIMIT]
    assert lines.offset == PENDING_LIMIT
    lines.close()


def test_a_missing_file_has_no_lines(tmp_path: Path) -> None:
    lines = FileLines(tmp_path / "stdout", "stdout")
    assert lines.read(final=True) == []
    lines.close()


async def test_writes_wake_every_reader_of_a_file_through_one_inotify(tmp_path: Path) -> None:
    path = tmp_path / "stdout"
    path.write_bytes(b"")
    changes = Changes()
    first, second = asyncio.Event(), asyncio.Event()
    wd = changes.watch(path, first)
    assert changes.watch(path, second) == wd  # one watch per file, however many readers
    with path.open("ab") as f:
        f.write(b"hello\n")
    async with asyncio.timeout(5):
        await first.wait()
        await second.wait()
    changes.unwatch(wd, first)
    first.clear()
    second.clear()
    with path.open("ab") as f:
        f.write(b"again\n")
    async with asyncio.timeout(5):
        await second.wait()
    assert not first.is_set()
    changes.close()
