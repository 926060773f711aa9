"""The JSON access log: one line per request, buffered and written about once a second.

Off unless asked for. Lines are formatted on the data path (they need the request's fields),
but written in batches so a request never waits for a disk. A line is the text json.dumps
would make, put together by hand: strings through the json module's own (C) escaping, the
time stamp made once a second, and the strings that repeat from request to request (client
address, method, host, router, service, upstream) escaped once and remembered; on
browser-like traffic json.dumps of a dict and strftime per request were a good part of the
router's Python time.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from kade.router.exchange import Exchange

FLUSH_LINES = 512
MAX_QUOTED = 4096  # escaped strings remembered (client addresses, hosts, names)
_quote = json.encoder.encode_basestring_ascii  # a JSON string, escaped as json.dumps does


class AccessLog:
    def __init__(self, target: str) -> None:
        """`target` is a file path (appended to) or `-` for standard output."""
        self.target = target
        self._file: IO[str] | None = None
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""  # the line's start, up to the client's address, for `_second`
        self._quoted: dict[str, str] = {}
        self._verbs: dict[bytes, str] = {}

    def add(self, x: Exchange, status: int, now: float) -> None:
        route = x.route
        up = x.target
        second = int(time.time())
        if second != self._second:
            self._second = second
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._stamp = f'{{"time":"{when}Z","client":'
        q = self._quoted  # the strings that repeat (addresses, hosts, names), escaped once
        if route is not None:
            name, service = route.name, route.service.name
            names = (f'"router":{q.get(name) or self._quote(name)},'
                     f'"service":{q.get(service) or self._quote(service)},')
        else:
            names = '"router":"","service":"",'
        upstream = (q.get(up.url) or self._quote(up.url)) if up is not None else '""'
        ip, host, verb = x.client_ip, x.host, x.verb
        self._lines.append(
            f'{self._stamp}{q.get(ip) or self._quote(ip)},'
            f'"method":{self._verbs.get(verb) or self._quote_verb(verb)},'
            f'"host":{q.get(host) or self._quote(host)},"path":{_quote(x.url.decode("latin-1"))},'
            f'"status":{status},"bytes":{x.bytes_out},'
            f'"duration_ms":{round((now - x.start) * 1000, 3)!r},{names}'
            f'"upstream":{upstream}}}')
        if len(self._lines) >= FLUSH_LINES:
            self.flush()

    def _quote(self, value: str) -> str:
        if len(self._quoted) >= MAX_QUOTED:
            self._quoted.clear()
        found = self._quoted[value] = _quote(value)
        return found

    def _quote_verb(self, verb: bytes) -> str:
        if len(self._verbs) >= MAX_QUOTED:
            self._verbs.clear()
        found = self._verbs[verb] = _quote(verb.decode("latin-1"))
        return found

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
