"""An exec task's output, line by line, from the `stdout` and `stderr` files of its sandbox.

The files are the task's own (it writes them directly, kade is not in the way), so the
position a capture resumes from is a byte offset, and a line is stamped when it is read.
New output is noticed through inotify, not by looking at the files on a timer.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
import time
from pathlib import Path

from kade.drivers.base import OutputLine
from kade.logs.record import Stream

READ_SIZE = 1024 * 1024  # bytes read at once
PENDING_LIMIT = 1024 * 1024  # an unfinished line longer than this is given out as it is

_IN_MODIFY = 0x00000002
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class FileLines:
    """Lines appended to one file, from a byte offset; a line is stamped when it is read,
    one nanosecond after the one before at least, so the stamps of a stream only grow."""

    def __init__(self, path: Path, stream: Stream, offset: int = 0) -> None:
        self.stream = stream
        self.offset = offset  # just past the last line given out
        self._last = 0
        try:
            self._file: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._file = None

    def read(self, final: bool = False) -> list[OutputLine]:
        """The whole lines written since the last read; `final`: the writer is gone, so an
        unfinished last line is a line too."""
        out: list[OutputLine] = []
        while self._file is not None:
            data = os.pread(self._file, READ_SIZE, self.offset)
            if not data:
                break
            end = data.rfind(b"\n") + 1  # bytes of whole lines
            if end == 0:
                if len(data) < PENDING_LIMIT and not (final and len(data) < READ_SIZE):
                    break  # the rest of the line is still to come
                end = len(data)  # a line with no end (yet): given out as it is
            chunk = data[:end]
            parts = chunk.split(b"\n")
            if chunk.endswith(b"\n"):
                parts.pop()
            now = time.time_ns()
            pos = self.offset
            for line in parts:
                pos = min(pos + len(line) + 1, self.offset + end)
                self._last = max(now, self._last + 1)
                out.append(OutputLine(self._last, self.stream, line, pos))
            self.offset += end
        return out

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None


class Changes:
    """Wakes readers when files change (inotify's IN_MODIFY), through the event loop. One
    inotify instance for every task of the driver (a user has only 128 of them by default),
    a watch per file."""

    def __init__(self) -> None:
        self._fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_events)
        self._waiting: dict[int, set[asyncio.Event]] = {}  # by watch descriptor

    def watch(self, path: Path, event: asyncio.Event) -> int:
        """Set `event` whenever `path` is written to; returns the watch to `unwatch`."""
        wd = int(_libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_MODIFY))
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self._waiting.setdefault(wd, set()).add(event)
        return wd

    def unwatch(self, wd: int, event: asyncio.Event) -> None:
        events = self._waiting.get(wd)
        if events is None:
            return
        events.discard(event)
        if not events:
            del self._waiting[wd]
            _libc.inotify_rm_watch(self._fd, wd)

    def _on_events(self) -> None:
        try:
            while data := os.read(self._fd, 65536):
                pos = 0
                while pos + 16 <= len(data):  # struct inotify_event: wd, mask, cookie, len
                    wd, _mask, _cookie, size = struct.unpack_from("iIII", data, pos)
                    for event in self._waiting.get(wd, ()):
                        event.set()
                    pos += 16 + size
        except BlockingIOError:
            pass

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._waiting.clear()
