"""Serving an exchange: choosing a server, the upstream connection, retries, the end.

A mixin of ClientConnection (kept apart to keep each file readable): it reads and writes the
connection's state declared below. The proxy that owns the connection is seen through
`ProxySide`, upstream connections through `UpstreamSide`: neither module is imported here.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from kade.router import http as h
from kade.router.exchange import (
    CHUNKED,
    MAX_BUFFERED_BODY,
    P_BODY,
    P_QUEUE,
    P_UPGRADE,
    Exchange,
    UpstreamSide,
    monotonic,
)

if TYPE_CHECKING:
    from kade.router.accesslog import AccessLog
    from kade.router.balancer import Server
    from kade.router.config import ProxyConfig
    from kade.router.table import Table


class ProxySide(Protocol):
    """The proxy as the client connections it accepted see it (kade.router.proxy)."""

    config: ProxyConfig
    table: Table
    https_port: int
    now: float
    log: AccessLog | None

    def connect(self, server: Server, x: Exchange) -> None: ...

    def give_back(self, up: UpstreamSide) -> None: ...

    def record(self, x: Exchange, status: int, now: float) -> None: ...

    def drained(self, server: Server) -> None: ...

    def is_trusted(self, ip: str) -> bool: ...

    def client_came(self, conn: Any) -> None: ...

    def client_gone(self, conn: Any) -> None: ...


class Forwarding:
    proxy: ProxySide
    cfg: ProxyConfig
    transport: Any
    client_ip: str
    queue: deque[Exchange]
    paused: int
    write_paused: bool
    closing: bool
    reject: int
    tunnel: UpstreamSide | None
    tunnel_x: Exchange | None
    early: list[bytes] | None
    dead: bool
    idle_since: float
    tls: bool

    def pause(self, reason: int) -> None:
        if not self.paused and not self.dead and not self.transport.is_closing():
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.dead and not self.transport.is_closing():
                self.transport.resume_reading()

    # -- serving an exchange -------------------------------------------------------------------

    def begin(self, x: Exchange) -> None:
        route = self.proxy.table.find(x)
        if route is None:
            self.respond(x, 404)
            return
        x.route = route
        if route.tls and not self.tls and self.proxy.https_port:
            self.redirect(x)
            return
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

    def attach(self, x: Exchange, up: UpstreamSide) -> None:
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

    def connected(self, x: Exchange, up: UpstreamSide) -> None:
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

    def upstream_lost(self, x: Exchange, up: UpstreamSide) -> None:
        """The upstream closed before the response was complete."""
        x.upstream = None
        x.streaming = False
        server = up.server
        self.release(x)
        if (not up.got_bytes and x.retryable() and x.route is not None
                and len(x.tried) < self.cfg.attempts):
            # Closed before a single response byte: a pooled connection the server had
            # closed, or a server that died with the request (nothing was answered, so an
            # idempotent request is safe to send again, as nginx does).
            if up.uses <= 1:
                server.failures += 1
            x.tried += (server,)
            x.pending = (x.replay or []) + (x.pending or [])
            x.replay, x.replay_size = [], 0
            # the server of a pooled connection only closed an idle one: it may be picked again;
            # a server that died with the request is not
            nxt = (x.route.service.pick() if up.uses > 1
                   else x.route.service.pick(exclude=x.tried)) or server
            self.send_to(x, nxt, True)
            return
        server.failures += 1
        if x.resp_started:
            self.abort(x)
        else:
            self.respond(x, 502)

    def upstream_failed(self, x: Exchange, up: UpstreamSide) -> None:
        """The upstream sent something that is not HTTP."""
        up.x = None
        up.close()
        x.upstream = None
        self.release(x)
        if x.resp_started:
            self.abort(x)
        else:
            self.respond(x, 502)

    def upstream_done(self, x: Exchange, up: UpstreamSide, keep: bool) -> None:
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

    def body_timed_out(self, x: Exchange) -> None:
        """The request body stalled: 408, and the upstream connection it was going to is
        closed (it holds half a request)."""
        up = x.upstream
        if up is not None:
            x.upstream = None
            up.x = None
            up.close()
        self.release(x)
        if x.resp_started:
            self.abort(x)
        else:
            self.respond(x, 408)

    def start_tunnel(self, x: Exchange, up: UpstreamSide) -> None:
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

    def redirect(self, x: Exchange) -> None:
        """A route that says `tls`, asked over plain HTTP: 308 to the same URL over HTTPS."""
        host = x.host.encode("latin-1")  # as it came
        if b":" in host:
            host = b"[" + host + b"]"
        port = self.proxy.https_port
        location = b"https://" + host + (b"" if port == 443 else b":%d" % port) + x.url
        close = not x.req_done or not x.keep_alive or self.closing
        x.keep_alive = x.keep_alive and not close
        x.status = 308
        x.resp_started = True
        self.transport.write(h.redirect_response(location, close, x.is_head))
        self.finish(x, 308)

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
