"""A client connection: parses requests, routes them and streams them to upstream servers.

Each request is an Exchange. Pipelined requests wait in `queue` (the first one is served) while
reading from the client pauses. Reading also pauses while an upstream cannot take the request
body fast enough, and the upstream is paused while the client cannot take the response: no
body is ever held whole in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_to_bytes

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from kade.router import http as h
from kade.router.http import (
    H_CONNECTION,
    H_HOST,
    H_LENGTH,
    H_TE,
    H_UPGRADE,
    H_XFF,
    REQUEST_HEADERS,
)

if TYPE_CHECKING:
    from kade.router.balancer import Server
    from kade.router.proxy import Proxy
    from kade.router.table import Route
    from kade.router.upstream import UpstreamConnection

# reasons to pause reading from the client (a bit each)
P_UPSTREAM, P_BODY, P_QUEUE, P_UPGRADE = 1, 2, 4, 8
MAX_BUFFERED_BODY = 64 * 1024  # request body held while connecting / kept for a retry
NO_BODY, LENGTH, CHUNKED = 0, 1, 2
monotonic = time.monotonic


class _Reject(Exception):
    pass


# A request seen twice in a row on a connection (pollers, health checkers, load generators
# repeat theirs), parsed once by llhttp as exactly one complete request without a body:
# raw bytes → (verb, url, headers, host, Host header, keep-alive, HTTP/1.0, head up to the
# forwarded headers, the client's X-Forwarded-For + ", " or b"", head after X-Forwarded-For).
Template = tuple[bytes, bytes, list[tuple[bytes, bytes]], str, bytes, bool, bool, bytes, bytes,
                 bytes]
_TEMPLATES: dict[bytes, Template] = {}
MAX_TEMPLATE = 1024  # longer requests (cookies...) rarely repeat: not worth hashing


class Exchange:
    """One request and its response; also the rule matchers' view of the request."""

    __slots__ = ("conn", "start", "url", "headers", "hsize", "verb", "host", "_path",
                 "client_ip", "route", "server", "upstream", "head", "body_mode", "pending",
                 "pending_size", "replay", "replay_size", "streaming", "req_done",
                 "headers_done", "resp_started", "status", "bytes_out", "keep_alive", "http10",
                 "is_head", "upgrade", "tried", "sent_at", "connecting", "finished",
                 "host_header", "target", "_hdict", "_query")

    def __init__(self, conn: ClientConnection, start: float) -> None:
        self.conn = conn
        self.start = start
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.hsize = 0
        self.verb = b""
        self.host = ""
        self._path: str | None = None
        self.client_ip = conn.client_ip
        self.route: Route | None = None
        self.server: Server | None = None
        self.upstream: UpstreamConnection | None = None
        self.head = b""
        self.body_mode = NO_BODY
        self.pending: list[bytes] | None = None  # body received before the upstream is ready
        self.pending_size = 0
        self.replay: list[bytes] | None = []  # body already sent, for a retry (None: too big)
        self.replay_size = 0
        self.streaming = False  # the head went upstream; body chunks follow directly
        self.req_done = False
        self.headers_done = False
        self.resp_started = False
        self.status = 0
        self.bytes_out = 0
        self.keep_alive = True
        self.http10 = False
        self.is_head = False
        self.upgrade = False
        self.tried: tuple[Server, ...] = ()
        self.sent_at = 0.0
        self.connecting = False
        self.finished = False
        self.host_header = b""
        self.target: Server | None = None  # the last server tried, for the access log
        self._hdict: dict[str, list[str]] | None = None
        self._query: dict[str, list[str]] | None = None

    @property
    def path(self) -> str:
        """The decoded path, computed only if a rule looks at it."""
        p = self._path
        if p is None:
            raw = self.url.partition(b"?")[0]
            if b"%" in raw or not raw.isascii():
                p = unquote_to_bytes(raw).decode("utf-8", "replace")
            else:
                p = raw.decode("latin-1")
            self._path = p
        return p

    @property
    def method(self) -> str:
        return self.verb.decode("latin-1")

    def header(self, name: str) -> list[str]:
        d = self._hdict
        if d is None:
            d = self._hdict = {}
            for k, v in self.headers:
                d.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
        return d.get(name, [])

    def query(self, name: str) -> list[str] | None:
        q = self._query
        if q is None:
            _, _, raw = self.url.partition(b"?")
            q = self._query = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
        return q.get(name)

    def retryable(self) -> bool:
        return (self.verb in h.IDEMPOTENT and self.replay is not None
                and not self.resp_started)


class ClientConnection(asyncio.Protocol):
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.cfg = proxy.config
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
        self.tunnel: UpstreamConnection | None = None
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
        self.forwarded = b"x-real-ip: " + ip + b"\r\nx-forwarded-proto: http\r\nx-forwarded-for: "
        self.forwarded_ws = self.forwarded.replace(b": http\r\n", b": ws\r\n")
        self.idle_since = monotonic()
        self.proxy.clients.add(self)

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
        if self.boundary and not self.queue and len(data) <= MAX_TEMPLATE and _TEMPLATES:
            template = _TEMPLATES.get(data)
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
            rest = data[e.args[0]:]
            self.early = [rest] if rest else []
            self.pause(P_UPGRADE)
            x = self.queue[-1] if self.queue else None
            if x is not None and x.upstream is not None and rest:
                x.upstream.transport.write(rest)
                self.early = []
        except HttpParserError:
            self.fail_parse(self.reject or 400)

    def eof_received(self) -> bool | None:
        if self.queue and not self.closing:
            # the client is done sending; answer what it asked, then close (half-close)
            self.closing = True
            return True
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

    def pause(self, reason: int) -> None:
        if not self.paused and not self.dead and not self.transport.is_closing():
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.dead and not self.transport.is_closing():
                self.transport.resume_reading()

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
        out = [x.verb, b" ", x.url, b" HTTP/1.1\r\n"]
        host = None
        xff = None
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
                out += (name, b": ", value, b"\r\n")
            elif kind == H_LENGTH:
                lengths += 1
                out += (name, b": ", value, b"\r\n")
            elif kind == H_TE:
                x.body_mode = CHUNKED
            elif kind == H_XFF:
                xff = value if xff is None else xff + b", " + value
            elif kind == H_CONNECTION:
                conn_values = [value] if conn_values is None else [*conn_values, value]
            elif kind == H_UPGRADE:
                upgrade_value = value
        if x.body_mode == CHUNKED and lengths:
            return 400  # request smuggling: both framings
        if lengths:
            x.body_mode = LENGTH
        if x.url[:1] != b"/":
            if x.url == b"*" and x.verb == b"OPTIONS":
                pass
            elif x.url.startswith((b"http://", b"https://")):
                # absolute form: the URL names the host; the upstream gets the origin form
                rest = x.url.split(b"//", 1)[1]
                slash = rest.find(b"/")
                authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
                host = authority
                x.url = path
                out[2] = path
            else:
                return 400
        if host is None:
            if not x.http10:
                return 400
            host = b""
        x.host_header = host
        x.host, port = h.host_and_port(host)
        if conn_values is not None:
            extra = h.connection_tokens(conn_values) - h.CONNECTION_KEEP
            if extra:
                out = _without(out, extra)
        if upgrade_value and self.parser.should_upgrade():
            x.upgrade = True
            x.keep_alive = False  # the connection becomes a tunnel or closes
            out += (b"connection: Upgrade\r\nupgrade: ", upgrade_value, b"\r\n")
            if upgrade_value.lower() == b"websocket":
                out.append(self.forwarded_ws)
            else:
                out.append(self.forwarded)
        else:
            out.append(self.forwarded)
        out += (self.ip if xff is None else xff + b", " + self.ip,
                b"\r\nx-forwarded-host: ", host, b"\r\nx-forwarded-port: ", port, b"\r\n")
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
        cut = x.head.find(self.forwarded)
        after_xff = x.head.find(b"\r\nx-forwarded-host: ", cut)
        if cut < 0 or after_xff < 0:
            return
        xffs = [v for k, v in x.headers if k.lower() == b"x-forwarded-for"]
        if len(_TEMPLATES) >= 512:
            _TEMPLATES.clear()
        _TEMPLATES[data] = (x.verb, x.url, x.headers, x.host, x.host_header, x.keep_alive,
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

    # -- serving an exchange -------------------------------------------------------------------

    def begin(self, x: Exchange) -> None:
        route = self.proxy.table.find(x)
        if route is None:
            self.respond(x, 404)
            return
        x.route = route
        server = route.service.pick()
        if server is None:
            self.respond(x, 503)
            return
        self.send_to(x, server, False)

    def send_to(self, x: Exchange, server: Server, fresh: bool) -> None:
        server.inflight += 1
        server.requests += 1
        x.server = server
        x.target = server
        up = None
        if not fresh and not x.upgrade:
            idle = server.idle
            while idle:  # the most recently used idle connection that is still open
                up = idle.pop()
                if not up.closed and not up.transport.is_closing():
                    break
                up = None
        if up is None:
            x.connecting = True
            self.proxy.connect(server, x)
        else:
            self.attach(x, up)

    def attach(self, x: Exchange, up: UpstreamConnection) -> None:
        x.connecting = False
        x.upstream = up
        up.x = x
        up.uses += 1
        t = up.transport
        pending = x.pending
        if pending:
            x.pending = None
            x.pending_size = 0
            t.write(x.head)
            for chunk in pending:
                self.send_body(x, chunk)
            self.resume(P_BODY)
        else:
            t.write(x.head)
        x.streaming = True
        if x.req_done and x.body_mode == CHUNKED:
            t.write(b"0\r\n\r\n")
        if self.early:
            t.writelines(self.early)
            self.early = []
        if self.write_paused:
            up.pause_reading()

    def send_body(self, x: Exchange, body: bytes) -> None:
        up = x.upstream
        assert up is not None
        if x.body_mode == CHUNKED:
            up.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            up.transport.write(body)
        if x.replay is not None:
            x.replay_size += len(body)
            if x.replay_size > MAX_BUFFERED_BODY:
                x.replay = None
            else:
                x.replay.append(body)

    def connected(self, x: Exchange, up: UpstreamConnection) -> None:
        if x.finished or self.dead or x.server is not up.server:
            self.proxy.give_back(up)
            return
        self.attach(x, up)

    def connect_failed(self, x: Exchange, server: Server) -> None:
        if x.finished or self.dead or x.server is not server:
            return
        x.connecting = False
        self.release(x)
        server.failures += 1
        x.tried += (server,)
        if x.retryable() and len(x.tried) < self.cfg.attempts and x.route is not None:
            other = x.route.service.pick(exclude=x.tried)
            if other is not None:
                self.send_to(x, other, False)
                return
        self.respond(x, 502)

    def upstream_lost(self, x: Exchange, up: UpstreamConnection) -> None:
        """The upstream closed before the response was complete."""
        x.upstream = None
        x.streaming = False
        server = up.server
        self.release(x)
        if (not up.got_bytes and up.uses > 1 and x.retryable() and x.route is not None
                and len(x.tried) < self.cfg.attempts):
            # a pooled connection the server had closed: try again on a fresh one
            x.tried += (server,)
            x.pending = (x.replay or []) + (x.pending or [])
            x.replay, x.replay_size = [], 0
            nxt = x.route.service.pick() or server
            self.send_to(x, nxt, True)
            return
        server.failures += 1
        if x.resp_started:
            self.abort(x)
        else:
            self.respond(x, 502)

    def upstream_failed(self, x: Exchange, up: UpstreamConnection) -> None:
        """The upstream sent something that is not HTTP."""
        up.x = None
        up.close()
        x.upstream = None
        self.release(x)
        if x.resp_started:
            self.abort(x)
        else:
            self.respond(x, 502)

    def upstream_done(self, x: Exchange, up: UpstreamConnection, keep: bool) -> None:
        x.upstream = None
        server = up.server
        if (keep and x.req_done and not server.removed and not x.upgrade and not up.read_paused
                and len(server.idle) < self.cfg.max_idle_per_server):
            up.idle_since = self.proxy.now
            server.idle.append(up)
        elif keep and x.req_done and not x.upgrade:
            self.proxy.give_back(up)
        else:
            up.close()
        self.finish(x, x.status)

    def timed_out(self, x: Exchange) -> None:
        up = x.upstream
        if up is not None:
            x.upstream = None
            up.x = None
            up.close()
        self.release(x)
        self.respond(x, 504)

    def start_tunnel(self, x: Exchange, up: UpstreamConnection) -> None:
        self.tunnel = up
        self.tunnel_x = x
        up.tunnel = self
        up.x = None
        x.upstream = None
        early, self.early = self.early, None
        if early:
            up.transport.writelines(early)
        self.proxy.record(x, 101, monotonic())
        x.finished = True
        self.queue.clear()
        self.resume(P_UPGRADE)

    def tunnel_closed(self) -> None:
        x = self.tunnel_x
        self.tunnel = None
        self.tunnel_x = None
        if x is not None:
            self.release(x)
        if not self.dead:
            self.transport.close()

    # -- ending an exchange --------------------------------------------------------------------

    def release(self, x: Exchange) -> None:
        server = x.server
        if server is not None:
            x.server = None
            server.inflight -= 1
            if server.removed and server.inflight == 0:
                self.proxy.drained(server)

    def respond(self, x: Exchange, status: int) -> None:
        """Answer `x` with the proxy's own short response."""
        close = not x.req_done or not x.keep_alive or self.closing
        x.keep_alive = x.keep_alive and not close
        x.status = status
        x.resp_started = True
        self.transport.write(h.error_response(status, close, x.is_head))
        self.finish(x, status)

    def abort(self, x: Exchange) -> None:
        """The response broke half-way: the client can only learn it from a reset."""
        x.keep_alive = False
        self.finish(x, x.status or 502)
        self.transport.abort()

    def finish(self, x: Exchange, status: int) -> None:
        if x.finished:
            return
        x.finished = True
        server = x.server
        if server is not None:
            x.server = None
            server.inflight -= 1
            if server.removed and server.inflight == 0:
                self.proxy.drained(server)
        now = monotonic()
        route = x.route
        if route is not None and self.proxy.log is None:
            route.stats.record(status, now - x.start)
        else:
            self.proxy.record(x, status, now)
        self.idle_since = now
        queue = self.queue
        if queue and queue[0] is x:
            queue.popleft()
        if not x.keep_alive or not x.req_done or self.closing and not queue:
            if self.reject and x.keep_alive and x.req_done:
                # a later request could not be parsed: say so now that the earlier are answered
                self.transport.write(h.error_response(self.reject, True))
            self.closing = True
            self.transport.close()
            return
        if queue:
            if len(queue) == 1:
                self.resume(P_QUEUE)
            self.begin(queue[0])
        elif self.paused & P_QUEUE:
            self.resume(P_QUEUE)

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


def _without(out: list[bytes], names: set[bytes]) -> list[bytes]:
    """`out` minus the headers a Connection header names (each header is 4 items)."""
    kept = out[:4]
    for i in range(4, len(out), 4):
        if out[i].lower() not in names:
            kept += out[i:i + 4]
    return kept
