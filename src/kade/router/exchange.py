"""A request and its response as they go through the proxy (the state both sides share).

The lowest of the data path's modules: the client connection (with its forwarding) and the
upstream connection both use an Exchange, and each knows the other only through the narrow
protocols below, so that ownership runs one way: proxy → client → forwarding → exchange,
proxy → upstream → exchange.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from kade.router import http as h
from kade.router.rules_match import routing_path

if TYPE_CHECKING:
    from kade.router.balancer import Server
    from kade.router.table import Route

# reasons to pause reading from the client (a bit each)
P_UPSTREAM, P_BODY, P_QUEUE, P_UPGRADE = 1, 2, 4, 8
MAX_BUFFERED_BODY = 64 * 1024  # request body held while connecting / kept for a retry
NO_BODY, LENGTH, CHUNKED = 0, 1, 2
monotonic = time.monotonic


class UpstreamSide(Protocol):
    """An upstream connection as the client side sees it (kade.router.upstream)."""

    server: Server
    transport: Any
    x: Exchange | None
    tunnel: ClientSide | None
    uses: int
    closed: bool
    got_bytes: bool
    read_paused: bool
    idle_since: float

    def close(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class ClientSide(Protocol):
    """A client connection as its exchanges' upstream connections and the proxy's connector
    see it (kade.router.client): where response bytes go, and what to call when the
    upstream is done with, gives up on, or hands over an exchange."""

    transport: Any
    closing: bool
    client_ip: str

    def pause(self, reason: int) -> None: ...

    def resume(self, reason: int) -> None: ...

    def connected(self, x: Exchange, up: UpstreamSide) -> None: ...

    def connect_failed(self, x: Exchange, server: Server) -> None: ...

    def upstream_done(self, x: Exchange, up: UpstreamSide, keep: bool) -> None: ...

    def upstream_lost(self, x: Exchange, up: UpstreamSide) -> None: ...

    def upstream_failed(self, x: Exchange, up: UpstreamSide) -> None: ...

    def start_tunnel(self, x: Exchange, up: UpstreamSide) -> None: ...

    def tunnel_closed(self) -> None: ...


class Exchange:
    """One request and its response; also the rule matchers' view of the request."""

    __slots__ = ("conn", "start", "url", "headers", "hsize", "verb", "host", "_path",
                 "client_ip", "route", "server", "upstream", "head", "body_mode", "pending",
                 "pending_size", "replay", "replay_size", "streaming", "req_done",
                 "headers_done", "resp_started", "status", "bytes_out", "keep_alive", "http10",
                 "is_head", "upgrade", "tried", "sent_at", "connecting", "finished",
                 "host_header", "target", "_hdict", "_query", "body_at")

    def __init__(self, conn: ClientSide, start: float) -> None:
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
        self.upstream: UpstreamSide | None = None
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
        self.body_at = start  # when the last piece of the request body arrived

    @property
    def path(self) -> str:
        """The routing path (reserved escapes kept), computed only if a rule looks at it."""
        p = self._path
        if p is None:
            p = self._path = routing_path(self.url.partition(b"?")[0])
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
