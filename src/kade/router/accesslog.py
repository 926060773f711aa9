"""The JSON access log: one line per request, buffered and written about once a second.

Off unless asked for. Lines are formatted on the data path (they need the request's fields),
but written in batches so a request never waits for a disk.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from kade.router.exchange import Exchange

FLUSH_LINES = 512


class AccessLog:
    def __init__(self, target: str) -> None:
        """`target` is a file path (appended to) or `-` for standard output."""
        self.target = target
        self._file: IO[str] | None = None
        self._lines: list[str] = []

    def add(self, x: Exchange, status: int, now: float) -> None:
        route = x.route
        up = x.target
        line = json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "client": x.client_ip,
            "method": x.verb.decode("latin-1"),
            "host": x.host,
            "path": x.url.decode("latin-1"),
            "status": status,
            "bytes": x.bytes_out,
            "duration_ms": round((now - x.start) * 1000, 3),
            "router": route.name if route is not None else "",
            "service": route.service.name if route is not None else "",
            "upstream": up.url if up is not None else "",
        }, separators=(",", ":"))
        self._lines.append(line)
        if len(self._lines) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        if self.target == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        if self._file is None:
            self._file = open(self.target, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        self._file.write(text)
        self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
