"""A container's output, line by line, from Docker's logs API (`timestamps=1&follow=1`).

Docker stamps every message with its nanosecond time, which is what lets a capture resume
after a crash: from `since=<stamp>`, skipping the lines of that stamp it already has. A line
longer than 16 KiB reaches the logs API as several messages with one stamp, only the last
ending in a newline: they are joined here into one line. A TTY container's output is one
stream without frames, read line by line: there a line over 16 KiB keeps the stamps of its
later parts inside it. `DockerLines` is the pure part (messages in, lines out), tested with
plain values; `follow` does the I/O.
"""

from __future__ import annotations

import asyncio
import calendar
import struct
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from kade.drivers.base import OutputLine
from kade.logs.record import STREAMS, Resume, Stream

PENDING_LIMIT = 1024 * 1024  # bytes of one unfinished line held; the store keeps less anyway
_STREAM_OF: dict[int, Stream] = {1: "stdout", 2: "stderr"}
_HEADER = struct.Struct(">BxxxL")


def since_param(ns: int) -> str:
    """Docker's `since`: seconds with a nanosecond fraction (inclusive)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


class StampParser:
    """RFC 3339 stamps with nanoseconds ("2026-11-30T21:14:52.113191170Z") to ns since the
    epoch; the seconds part is parsed once per second of output."""

    def __init__(self) -> None:
        self._prefix = b""
        self._base = 0

    def __call__(self, stamp: bytes) -> int:
        if len(stamp) == 30 and stamp[:19] == self._prefix:  # Docker's fixed nine digits
            return self._base + int(stamp[20:29])
        head, _, frac = stamp.rstrip(b"Z").partition(b".")
        if head != self._prefix:
            year, month, day = int(head[0:4]), int(head[5:7]), int(head[8:10])
            hour, minute, sec = int(head[11:13]), int(head[14:16]), int(head[17:19])
            self._base = calendar.timegm((year, month, day, hour, minute, sec)) * 1_000_000_000
            self._prefix = head
        return self._base + int(frac[:9].ljust(9, b"0") or b"0")


class DockerLines:
    """Docker log messages ("<stamp> <text>") in, whole lines out, per stream; lines already
    captured (before `resume`) are skipped. Keeps, per stream, where it is, so a broken
    stream is followed again from there."""

    def __init__(self, resume: Mapping[Stream, Resume]) -> None:
        self._parse = StampParser()
        # per stream: the last stamp given out, and how many lines carried it
        self.position: dict[Stream, tuple[int, int]] = {
            s: (resume[s].time, resume[s].count) if s in resume else (0, 0) for s in STREAMS}
        self._skip: dict[Stream, tuple[int, int]] = dict(self.position)
        self._seen: dict[Stream, tuple[int, int]] = {s: (0, 0) for s in STREAMS}
        self._pending: dict[Stream, tuple[int, bytearray]] = {}

    def since(self) -> int:
        """Where Docker must start so that no stream misses a line."""
        return min(t for t, _ in self.position.values())

    def restart(self) -> None:
        """The stream is followed again from `since()`: what was given out is skipped."""
        self._skip = dict(self.position)
        self._seen = {s: (0, 0) for s in STREAMS}
        self._pending.clear()

    def feed(self, stream: Stream, message: bytes) -> OutputLine | None:
        stamp, _, text = message.partition(b" ")
        time = self._parse(stamp)
        held = self._pending.get(stream)
        done = text.endswith(b"\n")
        if held is not None:
            time, buf = held
            if len(buf) < PENDING_LIMIT:
                buf += text[:PENDING_LIMIT - len(buf)]
            if not done:
                return None
            del self._pending[stream]
            return self._line(stream, time, bytes(buf).rstrip(b"\r\n"))
        if not done:  # a part of a longer line (or output that ends without a newline)
            self._pending[stream] = (time, bytearray(text[:PENDING_LIMIT]))
            return None
        return self._line(stream, time, text.rstrip(b"\r\n"))

    def flush(self) -> list[OutputLine]:
        """The output ended: an unfinished last line is a line."""
        out = [self._line(s, t, bytes(buf)) for s, (t, buf) in self._pending.items()]
        self._pending.clear()
        return [line for line in out if line is not None]

    def _line(self, stream: Stream, time: int, line: bytes) -> OutputLine | None:
        skip_time, skip_count = self._skip[stream]
        last, count = self._seen[stream]
        count = count + 1 if time == last else 1
        self._seen[stream] = (time, count)
        if time < skip_time or (time == skip_time and count <= skip_count):
            return None  # captured before
        self.position[stream] = (time, count)
        return OutputLine(time, stream, line)


async def follow(docker: Any, container_id: str, tty: bool, lines: DockerLines, *,
                 live: bool = True) -> AsyncIterator[OutputLine]:
    """One pass of the logs API, with `follow` when `live`: it ends when the container stops
    (its last message may still be on its way then: a pass without `live` afterwards reads
    it); a broken connection raises (IncompleteReadError, aiohttp.ClientError). `docker`:
    an aiodocker client."""
    params = {"stdout": "1", "stderr": "1", "follow": "1" if live else "0", "timestamps": "1"}
    since = lines.since()
    if since:
        params["since"] = since_param(since)
    async with docker._query(f"containers/{container_id}/logs", params=params,
                             timeout=aiohttp.ClientTimeout()) as resp:
        try:
            content = resp.content
            if tty:  # one stream, no frames: "<stamp> <text>\r\n" lines
                while raw := await content.readline():
                    got = lines.feed("stdout", raw)
                    if got is not None:
                        yield got
                return
            # multiplexed: frames of an 8-byte header (stream, size) and one message, read
            # as they come, many at once (far fewer awaits than one per header and payload)
            buf = bytearray()
            async for chunk in content.iter_any():
                buf += chunk
                pos, end = 0, len(buf)
                while end - pos >= 8:
                    kind, size = _HEADER.unpack_from(buf, pos)
                    if end - pos - 8 < size:
                        break
                    stream = _STREAM_OF.get(kind)
                    if stream is not None:
                        got = lines.feed(stream, bytes(buf[pos + 8:pos + 8 + size]))
                        if got is not None:
                            yield got
                    pos += 8 + size
                del buf[:pos]
            if buf:  # broken inside a frame: the caller follows again
                raise asyncio.IncompleteReadError(bytes(buf), None)
        finally:
            resp.close()
