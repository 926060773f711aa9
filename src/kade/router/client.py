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
from kade.router.http import (
    H_CONNECTION,
    H_FWD,
    H_HOST,
    H_LENGTH,
    H_TE,
    H_UPGRADE,
    H_XFF,
    REQUEST_HEADERS,
)


class _Reject(Exception):
    pass


# A request seen twice in a row on a connection (pollers, health checkers, load generators
# repeat theirs), parsed once by llhttp as exactly one complete request without a body:
# raw bytes → (verb, url, headers, host, Host header, keep-alive, HTTP/1.0, head up to the
# forwarded headers, the client's X-Forwarded-For + ", " or b"", head after X-Forwarded-For).
Template = tuple[bytes, bytes, list[tuple[bytes, bytes]], str, bytes, bool, bool, bytes, bytes,
                 bytes]
# One memo per kind of connection (index: 2 × trusted + TLS): the same bytes make a different
# head from a trusted proxy (its X-Forwarded-For is kept) or over TLS (https, port 443).
_TEMPLATES: tuple[dict[bytes, Template], ...] = ({}, {}, {}, {})
MAX_TEMPLATE = 1024  # longer requests (cookies...) rarely repeat: not worth hashing


class ClientConnection(Forwarding, asyncio.Protocol):
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
        self.forwarded = b""  # the X-Forwarded-* that are the same for every request
        self.forwarded_ws = b""
        self.idle_since = 0.0
        self.requests = 0
        self.in_head = False
        self.head_bytes = 0
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
        proto = b"https" if self.tls else b"http"
        self.forwarded = b"x-real-ip: " + ip + b"\r\nx-forwarded-proto: " + proto \
            + b"\r\nx-forwarded-for: "
        self.forwarded_ws = self.forwarded.replace(b": http", b": ws")
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
        if self.boundary and not self.queue and len(data) <= MAX_TEMPLATE and self.templates:
            template = self.templates.get(data)
            if template is not None:
                self.repeat(template)
                return
        elif self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > self.cfg.max_header_bytes + self.cfg.max_url_bytes:
                self.fail_parse(431)
                return
        fresh = self.boundary
        self.heads_in_feed = 0
        try:
            self.parser.feed_data(data)
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
        self.boundary = False

    def on_url(self, url: bytes) -> None:
        x = self.parsing
        if x is None:
            x = self.parsing = Exchange(self, monotonic())
            self.in_head = True
            self.head_bytes = 0
            x.url = url
        else:
            x.url += url
        if len(x.url) > self.cfg.max_url_bytes:
            self.reject = 414
            raise _Reject

    def on_header(self, name: bytes, value: bytes) -> None:
        x = self.parsing
        assert x is not None
        x.hsize += len(name) + len(value) + 4
        if x.hsize > self.cfg.max_header_bytes:
            self.reject = 431
            raise _Reject
        x.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        x = self.parsing
        assert x is not None
        p = self.parser
        x.headers_done = True
        self.heads_in_feed += 1
        x.verb = p.get_method()
        x.http10 = p.get_http_version() == "1.0"
        x.keep_alive = p.should_keep_alive() and not self.closing
        x.is_head = x.verb == b"HEAD"
        status = self.build_head(x)
        if status:
            self.reject = status
            raise _Reject
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
        x = self.parsing
        self.parsing = None
        if x is None:
            return
        x.req_done = True
        if x.streaming and x.body_mode == CHUNKED and x.upstream is not None:
            x.upstream.transport.write(b"0\r\n\r\n")

    # -- building the upstream request ---------------------------------------------------------

    def build_head(self, x: Exchange) -> int:
        """The request head for the upstream; an error status if the request is refused."""
        if x.verb == b"CONNECT":
            return 405
        authority = None
        if x.url[:1] != b"/" and not (x.url == b"*" and x.verb == b"OPTIONS"):
            # absolute form (RFC 9112 §3.2.2): the URL's authority is the host, for routing and
            # for the upstream's Host header; the upstream gets the origin form
            authority, path = h.absolute_form(x.url)
            if authority is None:
                return 400
            x.url = path
        out = [x.verb, b" ", x.url, b" HTTP/1.1\r\n"]
        host = None
        xff = None
        fwd: list[bytes] | None = None
        conn_values: list[bytes] | None = None
        upgrade_value = b""
        lengths = 0
        kinds = REQUEST_HEADERS
        for name, value in x.headers:
            kind = kinds.get(name.lower())
            if kind is None:
                out += (name, b": ", value, b"\r\n")
            elif kind == H_HOST:
                if host is not None:
                    return 400
                host = value
                if authority is None:
                    out += (name, b": ", value, b"\r\n")
            elif kind == H_LENGTH:
                lengths += 1
                out += (name, b": ", value, b"\r\n")
            elif kind == H_TE:
                x.body_mode = CHUNKED
            elif kind == H_XFF:
                if self.trusted:
                    xff = value if xff is None else xff + b", " + value
            elif kind == H_FWD:
                if self.trusted:
                    fwd = [name.lower()] if fwd is None else [*fwd, name.lower()]
                    out += (name, b": ", value, b"\r\n")
            elif kind == H_CONNECTION:
                conn_values = [value] if conn_values is None else [*conn_values, value]
            elif kind == H_UPGRADE:
                upgrade_value = value
        if x.body_mode == CHUNKED and lengths:
            return 400  # request smuggling: both framings
        if lengths:
            x.body_mode = LENGTH
        if authority is not None:
            host = authority
            out += (b"host", b": ", authority, b"\r\n")
        if host is None:
            if not x.http10:
                return 400
            host = b""
        x.host_header = host
        x.host, port = h.host_and_port(host)
        if self.tls:
            port = h.port_of(host, b"443")
        if conn_values is not None:
            extra = h.connection_tokens(conn_values) - h.CONNECTION_KEEP
            if extra:
                out = h.without(out, extra)
        forwarded = self.forwarded
        if upgrade_value and self.parser.should_upgrade():
            x.upgrade = True
            x.keep_alive = False  # the connection becomes a tunnel or closes
            out += (b"connection: Upgrade\r\nupgrade: ", upgrade_value, b"\r\n")
            if upgrade_value.lower() == b"websocket":
                forwarded = self.forwarded_ws
        if fwd is None:
            out += (forwarded, self.ip if xff is None else xff + b", " + self.ip,
                    b"\r\nx-forwarded-host: ", host, b"\r\nx-forwarded-port: ", port, b"\r\n")
        else:
            out.append(h.trusted_forwarded(set(fwd), forwarded, self.ip, xff, host, port))
        if x.body_mode == CHUNKED:
            out.append(b"transfer-encoding: chunked\r\n")
        out.append(b"\r\n")
        x.head = b"".join(out)
        if x.body_mode == NO_BODY:
            x.req_done = True
        return 0

    def remember(self, data: bytes) -> None:
        """`data` was one whole request without body, the same as the one before it."""
        x = self.queue[-1] if self.queue else None
        if (x is None or x.body_mode != NO_BODY or x.upgrade or self.closing or self.reject
                or x.url[:1] != b"/"):
            return
        if self.trusted and any(REQUEST_HEADERS.get(k.lower()) == H_FWD for k, _ in x.headers):
            return  # a proxy's own X-Forwarded-* values: a head laid out differently
        cut = x.head.find(self.forwarded)
        after_xff = x.head.find(b"\r\nx-forwarded-host: ", cut)
        if cut < 0 or after_xff < 0:
            return
        xffs = [v for k, v in x.headers if k.lower() == b"x-forwarded-for"] if self.trusted \
            else []
        templates = self.templates
        if len(templates) >= 512:
            templates.clear()
        templates[data] = (x.verb, x.url, x.headers, x.host, x.host_header, x.keep_alive,
                            x.http10, x.head[:cut], b", ".join(xffs) + b", " if xffs else b"",
                            x.head[after_xff:])

    def repeat(self, t: Template) -> None:
        """A request seen before: the parser's work is known, the rest is as for any other."""
        x = Exchange(self, monotonic())
        (x.verb, x.url, x.headers, x.host, x.host_header, keep, x.http10, prefix, xff,
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
