"""A client connection: parses requests, routes them and streams them to upstream servers.

Each request is an Exchange. Pipelined requests wait in `queue` (the first one is served) while
reading from the client pauses. Reading also pauses while an upstream cannot take the request
body fast enough, and the upstream is paused while the client cannot take the response: no
body is ever held whole in memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from kade.router import http as h
from kade.router.exchange import (
    CHUNKED,
    LENGTH,
    MAX_BUFFERED_BODY,
    NO_BODY,
    P_BODY,
    P_QUEUE,
    P_UPGRADE,
    Exchange,
    UpstreamSide,
    monotonic,
)
from kade.router.forwarding import Forwarding, ProxySide
from kade.router.http import H_FWD, REQUEST_HEADERS
from kade.router.request import Connection, build_head


class _Reject(Exception):
    pass


# what the bytes fed to llhttp next are: a request head, a sized body, a chunked body
R_HEAD, R_LENGTH, R_CHUNKED = 0, 1, 2
_END = b"\r\n\r\n"  # the blank line that ends a head, a chunked body


# A request seen twice in a row on a connection (pollers, health checkers, load generators
# repeat theirs), parsed once by llhttp as exactly one complete request without a body:
# raw bytes → (verb, url, head as it came, host, Host header, keep-alive, HTTP/1.0, head up to the
# forwarded headers, the client's X-Forwarded-For + ", " or b"", head after X-Forwarded-For).
Template = tuple[bytes, bytes, bytes, str, bytes, bool, bool, bytes, bytes,
                 bytes]
# One memo per kind of connection (index: 2 × trusted + TLS): the same bytes make a different
# head from a trusted proxy (its X-Forwarded-For is kept) or over TLS (https, port 443).
_TEMPLATES: tuple[dict[bytes, Template], ...] = ({}, {}, {}, {})
MAX_TEMPLATE = 1024  # longer requests (cookies...) rarely repeat: not worth hashing


class ClientConnection(Forwarding, asyncio.Protocol):
    __slots__ = ("boundary", "facts", "forwarded", "gap", "head_size", "heads_in_feed",
                 "in_body", "ip", "last_data", "left", "parser", "parsing", "parts", "reading",
                 "ready", "requests", "tail", "templates", "trusted")

    def __init__(self, proxy: ProxySide, tls: bool = False) -> None:
        self.proxy = proxy
        self.cfg = proxy.config
        self.tls = tls
        self.trusted = False  # the client is a proxy whose X-Forwarded-* headers are kept
        self.templates = _TEMPLATES[0]
        self.transport: Any = None
        self.parser = HttpRequestParser(self)
        self.queue: deque[Exchange] = deque()
        self.parsing: Exchange | None = None
        self.client_ip = ""
        self.ip = b""
        self.facts = Connection(False, tls, b"", self.parser.should_upgrade)
        self.forwarded = b""  # the X-Forwarded-* that are the same for every request
        self.idle_since = 0.0
        self.requests = 0
        # where llhttp stands, as the data path tracks it (see `feed`)
        self.reading = R_HEAD
        self.parts: list[bytes] = []  # a request head that came in several reads, so far
        self.head_size = 0
        self.tail = b""  # the last 3 bytes of `parts`, or of a chunked body fed so far
        self.ready: bytes | None = None  # the head llhttp is about to finish
        self.left = 0  # bytes of a sized body still to come
        self.gap = 0  # bytes of a chunked body since the last body bytes (framing, trailers)
        self.in_body = False  # llhttp is fed body bytes: no request may begin in them
        self.paused = 0
        self.write_paused = False
        self.closing = False  # answer what is queued, then close
        self.reject = 0
        self.tunnel: UpstreamSide | None = None
        self.tunnel_x: Exchange | None = None
        self.early: list[bytes] | None = None  # bytes after an upgrade request
        self.dead = False
        self.boundary = True  # the parser is between two requests
        self.heads_in_feed = 0
        self.last_data = b""

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else ""
        ip = self.ip = self.client_ip.encode()
        self.trusted = self.proxy.is_trusted(self.client_ip)
        self.templates = _TEMPLATES[2 * self.trusted + self.tls]
        self.facts = Connection(self.trusted, self.tls, ip, self.parser.should_upgrade)
        self.forwarded = self.facts.forwarded
        self.idle_since = monotonic()
        self.proxy.client_came(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self.proxy.client_gone(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel_closed()
        for x in self.queue:
            up = x.upstream
            if up is not None:
                x.upstream = None
                up.x = None
                up.close()
            self.release(x)
            if not x.finished:
                x.finished = True
                self.proxy.record(x, 499, monotonic())
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        if self.early is not None:
            self.early.append(data)
            return
        if self.reject:
            return
        fresh = self.boundary
        if fresh and not self.queue and len(data) <= MAX_TEMPLATE and self.templates:
            template = self.templates.get(data)
            if template is not None:
                self.repeat(template)
                return
        self.heads_in_feed = 0
        try:
            self.feed(data)
            if (fresh and self.boundary and self.heads_in_feed == 1 and data == self.last_data
                    and len(data) <= MAX_TEMPLATE):
                self.remember(data)
            self.last_data = data
        except HttpParserUpgrade as e:
            # Bytes after an Upgrade request belong to the new protocol: they are held until
            # the upstream answers 101 (start_tunnel), and dropped with the connection if it
            # answers anything else, so that they can never pass as a request of their own.
            rest = data[e.args[0]:]
            self.early = [rest] if rest else []
            self.pause(P_UPGRADE)
        except HttpParserError:
            self.fail_parse(self.reject or 400)

    def feed(self, data: bytes) -> None:
        """Give `data` to llhttp in pieces that end where a request head or a sized body ends.

        llhttp validates every byte (it is the request-smuggling defence) but calls Python
        only per request, not per header: the head it has just accepted is known here as
        bytes (`ready`), taken whole from the stream. A head ends at the first blank line
        (llhttp accepts CRLF line ends only); a sized body after Content-Length bytes; a
        chunked body only right after a blank line (the last chunk, its trailers), so its
        pieces end at each one. Should llhttp ever see a request end or begin elsewhere, the
        request is refused rather than misread.
        """
        parser = self.parser
        pos, n = 0, len(data)
        try:
            while pos < n:
                mode = self.reading
                if mode == R_HEAD:
                    parts = self.parts
                    if parts:
                        tail = self.tail
                        at = (tail + data).find(_END)
                        cut = at + 4 - len(tail) if at >= 0 else -1
                    elif data[pos] == 13 or data[pos] == 10:
                        # blank lines before a request line, which llhttp skips
                        start = pos
                        while pos < n and (data[pos] == 13 or data[pos] == 10):
                            pos += 1
                        parser.feed_data(data[start:pos])
                        continue
                    else:
                        cut = data.find(_END, pos) if pos else data.find(_END)
                        if cut >= 0:
                            cut += 4
                    if cut < 0:  # the head goes on in the next read
                        piece = data[pos:] if pos else data
                        size = self.head_size + len(piece)
                        if size > self.cfg.max_header_bytes + self.cfg.max_url_bytes:
                            self.reject = 431
                            raise HttpParserError("request head too large")
                        self.tail = (self.tail + piece)[-3:] if parts else piece[-3:]
                        parts.append(piece)
                        self.head_size = size
                        parser.feed_data(piece)
                        return
                    piece = data if cut == n and not pos else data[pos:cut]
                    if parts:
                        parts.append(piece)
                        head = b"".join(parts)
                        self.parts = []
                        self.head_size = 0
                        self.tail = b""
                    else:
                        head = piece
                    self.ready = head
                    parser.feed_data(piece)
                    if self.ready is not None:
                        self.reject = 400
                        raise HttpParserError("the head did not end at its blank line")
                    pos = cut
                elif mode == R_LENGTH:
                    end = pos + self.left
                    if end > n:
                        end = n
                    self.left -= end - pos
                    self.in_body = True
                    parser.feed_data(data if end == n and not pos else data[pos:end])
                    self.in_body = False
                    if not self.left and self.reading == R_LENGTH:
                        self.reject = 400
                        raise HttpParserError("the body did not end at its length")
                    pos = end
                else:
                    tail = self.tail
                    at = (tail + data[pos:pos + 3]).find(_END) if tail else -1
                    if at >= 0:
                        end = pos + at + 4 - len(tail)
                    else:
                        end = data.find(_END, pos)
                        end = n if end < 0 else end + 4
                    piece = data if end == n and not pos else data[pos:end]
                    self.tail = piece[-3:] if len(piece) >= 3 else (tail + piece)[-3:]
                    self.gap += end - pos  # back to 0 when body bytes come (on_body)
                    self.in_body = True
                    parser.feed_data(piece)
                    self.in_body = False
                    if self.gap > self.cfg.max_header_bytes:
                        self.reject = 431
                        raise HttpParserError("chunk framing or trailers too large")
                    pos = end
        except HttpParserUpgrade as e:
            raise HttpParserUpgrade(pos + e.args[0]) from None

    def eof_received(self) -> bool | None:
        """The client closed: what it asked for is abandoned (499) and the upstream
        connections serving it are closed at once, as nginx and Go's server do, rather than
        held half-closed until the upstream answers or times out."""
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.tunnel or (self.queue[0].upstream if self.queue else None)
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.tunnel or (self.queue[0].upstream if self.queue else None)
        if up is not None:
            up.resume_reading()

    # -- request parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.in_body:
            self.reject = 400
            raise _Reject  # llhttp found a request inside what was taken for a body
        self.boundary = False

    def on_url(self, url: bytes) -> None:
        x = self.parsing
        if x is None:
            x = self.parsing = Exchange(self, monotonic())
            x.url = url
        else:
            x.url += url
        if len(x.url) > self.cfg.max_url_bytes:
            self.reject = 414
            raise _Reject

    def on_headers_complete(self) -> None:
        head = self.ready
        x = self.parsing
        if head is None or x is None:
            self.reject = 400
            raise _Reject  # llhttp ended a head before its blank line
        self.ready = None
        x.raw = head
        limit = self.cfg.max_header_bytes
        if len(head) > limit and len(head) - head.find(b"\r\n") - 4 > limit:
            self.reject = 431
            raise _Reject
        p = self.parser
        x.headers_done = True
        self.heads_in_feed += 1
        x.verb = p.get_method()
        x.keep_alive = p.should_keep_alive() and not self.closing
        x.is_head = x.verb == b"HEAD"
        status = build_head(x, head, self.facts)
        if status:
            self.reject = status
            raise _Reject
        if x.body_mode == LENGTH:
            self.reading = R_LENGTH
            self.left = x.length
        elif x.body_mode == CHUNKED:
            self.reading = R_CHUNKED
            self.tail = b""
            self.gap = 0
        self.requests += 1
        self.queue.append(x)
        if len(self.queue) == 1:
            self.begin(x)
        else:
            self.pause(P_QUEUE)

    def on_body(self, body: bytes) -> None:
        x = self.parsing
        if x is None or x.finished:
            return
        x.body_at = monotonic()
        self.gap = 0
        if x.streaming:
            self.send_body(x, body)
            return
        if x.pending is None:
            x.pending = []
        x.pending.append(body)
        x.pending_size += len(body)
        if x.pending_size > MAX_BUFFERED_BODY:
            self.pause(P_BODY)

    def on_message_complete(self) -> None:
        self.boundary = True
        self.reading = R_HEAD
        x = self.parsing
        self.parsing = None
        if x is None:
            return
        x.req_done = True
        if x.streaming and x.body_mode == CHUNKED and x.upstream is not None:
            x.upstream.transport.write(b"0\r\n\r\n")

    # -- the repeat memo -------------------------------------------------------------------------

    def remember(self, data: bytes) -> None:
        """`data` was one whole request without body, the same as the one before it."""
        x = self.queue[-1] if self.queue else None
        if (x is None or x.body_mode != NO_BODY or x.upgrade or self.closing or self.reject
                or x.url[:1] != b"/"):
            return
        headers = x.pairs()
        if self.trusted and any(REQUEST_HEADERS.get(k.lower()) == H_FWD for k, _ in headers):
            return  # a proxy's own X-Forwarded-* values: a head laid out differently
        cut = x.head.find(self.forwarded)
        after_xff = x.head.find(b"\r\nx-forwarded-host: ", cut)
        if cut < 0 or after_xff < 0:
            return
        xffs = [v for k, v in headers if k.lower() == b"x-forwarded-for"] if self.trusted \
            else []
        templates = self.templates
        if len(templates) >= 512:
            templates.clear()
        templates[data] = (x.verb, x.url, x.raw, x.host, x.host_header, x.keep_alive,
                            x.http10, x.head[:cut], b", ".join(xffs) + b", " if xffs else b"",
                            x.head[after_xff:])

    def repeat(self, t: Template) -> None:
        """A request seen before: the parser's work is known, the rest is as for any other."""
        x = Exchange(self, monotonic())
        (x.verb, x.url, x.raw, x.host, x.host_header, keep, x.http10, prefix, xff,
         suffix) = t
        x.keep_alive = keep and not self.closing
        x.is_head = x.verb == b"HEAD"
        x.headers_done = True
        x.req_done = True
        x.head = prefix + self.forwarded + xff + self.ip + suffix
        self.requests += 1
        self.queue.append(x)
        self.begin(x)

    def fail_parse(self, status: int) -> None:
        """A request that cannot be parsed: answer it once what is queued is done, then close."""
        self.reject = status or 400
        self.closing = True
        x = self.parsing
        self.parsing = None
        if x is not None and x in self.queue:
            # broken body of a request being served
            up = x.upstream
            if up is not None:
                x.upstream = None
                up.x = None
                up.close()
            self.release(x)
            x.req_done = True
            if not x.resp_started:
                self.respond(x, 400)
            else:
                self.abort(x)
            return
        if self.queue:
            return  # the served requests finish first; `closing` closes afterwards
        self.transport.write(h.error_response(self.reject, True))
        if x is not None:
            self.proxy.record(x, self.reject, monotonic())
        self.transport.close()

    def check_timeouts(self, now: float) -> None:
        """Called about once a second: 504 for a silent upstream, 408 for a slow client."""
        if self.tunnel is not None or self.dead:
            return
        cfg = self.cfg
        if self.queue:
            x = self.queue[0]
            if not x.req_done:
                # the body is arriving: the client must keep sending; not its fault while
                # reading is paused (the upstream is not taking the body, or not connected)
                if self.paused:
                    x.body_at = now
                elif now - x.body_at > cfg.body_timeout:
                    self.reject = 408
                    self.body_timed_out(x)
                return
            if x.streaming and x.req_done and not x.resp_started:
                if not x.sent_at:
                    x.sent_at = x.start if x.body_mode == NO_BODY else now
                if now - x.sent_at > cfg.response_header_timeout:
                    self.timed_out(x)
            return
        p = self.parsing
        if p is not None and not p.headers_done:
            if now - p.start > cfg.header_timeout:
                self.reject = 408
                self.transport.write(h.error_response(408, True))
                self.transport.close()
            return
        limit = cfg.header_timeout if self.requests == 0 else cfg.idle_timeout
        if now - self.idle_since > limit:
            self.transport.close()
