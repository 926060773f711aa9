"""The proxy: listeners, the table in use, servers and their pools, timeouts, metrics.

The table is swapped whole (`apply`). Servers that leave the table are marked removed: their
idle connections close at once, their in-flight requests finish, and `on_drained` tells the
owner when the last one did, so that the control plane can be told the server is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from kade.router.accesslog import AccessLog
from kade.router.balancer import Server, parse_server_url
from kade.router.client import ClientConnection
from kade.router.config import ProxyConfig, parse_networks
from kade.router.exchange import Exchange, UpstreamSide
from kade.router.metrics import Gauges, Stats, render
from kade.router.table import Table, compile_table, empty_table
from kade.router.upstream import UpstreamConnection

# the settings live in kade.router.config; importing them from here keeps working
__all__ = ["Proxy", "ProxyConfig", "parse_networks"]

monotonic = time.monotonic


class Proxy:
    def __init__(self, config: ProxyConfig | None = None,
                 access_log: AccessLog | None = None) -> None:
        self.config = config or ProxyConfig()
        self.table: Table = empty_table()
        self.servers: dict[str, Server] = {}  # in the table, or removed and still draining
        self.stats: dict[tuple[str, str], Stats] = {}
        self.unrouted = Stats("", "")
        self.clients: set[ClientConnection] = set()
        self.log = access_log
        self.now = monotonic()
        self.on_drained: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[asyncio.Server] = []
        self._stopping = False
        self._all_closed = asyncio.Event()
        self._trusted_nets = parse_networks(self.config.trusted_proxies)
        self._trusted: dict[str, bool] = {}
        self.https_port = self.config.https_port  # the HTTPS entrypoint's, for redirects

    # -- the table -----------------------------------------------------------------------------

    def apply(self, data: Any) -> Table:
        """Compile `data` and swap it in; raises TableError (and changes nothing) if unusable."""
        fresh: dict[str, Server] = {}

        def server_for(url: str, task: str) -> Server:
            s = self.servers.get(url) or fresh.get(url)
            if s is None:
                host, port = parse_server_url(url)
                s = fresh[url] = Server(url, host, port, task)
            s.task = task or s.task
            return s

        table = compile_table(data, server_for, self._stats_for)
        in_use = table.servers()
        for url, s in list(self.servers.items()):
            if url not in in_use:
                s.removed = True
                s.close_idle()
                if s.inflight <= 0:
                    del self.servers[url]
        for url, s in in_use.items():
            s.removed = False
            self.servers[url] = s
        self.table = table
        return table

    def _stats_for(self, router: str, service: str) -> Stats:
        st = self.stats.get((router, service))
        if st is None:
            st = self.stats[(router, service)] = Stats(router, service)
        return st

    def draining(self) -> dict[str, int]:
        """In-flight counts of servers no longer in the table that still serve requests."""
        return {s.url: s.inflight for s in self.servers.values() if s.removed and s.inflight > 0}

    def drained(self, server: Server) -> None:
        if self.servers.get(server.url) is server and server.removed:
            del self.servers[server.url]
        if self.on_drained is not None:
            self.on_drained()

    # -- the data path's helpers ---------------------------------------------------------------

    def record(self, x: Exchange, status: int, now: float) -> None:
        route = x.route
        (route.stats if route is not None else self.unrouted).record(status, now - x.start)
        if self.log is not None:
            self.log.add(x, status, now)

    def connect(self, server: Server, x: Exchange) -> None:
        task = asyncio.get_running_loop().create_task(self._connect(server, x))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, server: Server, x: Exchange) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                _, up = await loop.create_connection(
                    lambda: UpstreamConnection(server), server.host, server.port)
        except (OSError, TimeoutError):
            x.conn.connect_failed(x, server)
            return
        x.conn.connected(x, up)

    def give_back(self, up: UpstreamSide) -> None:
        """An upstream connection done with its request: pooled if it may serve another."""
        server = up.server
        up.x = None
        if (up.closed or server.removed or self.servers.get(server.url) is not server
                or len(server.idle) >= self.config.max_idle_per_server):
            up.close()
            return
        up.resume_reading()  # a pooled connection must notice when the server closes it
        up.idle_since = self.now
        server.idle.append(up)

    def is_trusted(self, ip: str) -> bool:
        """Whether a client at `ip` is a proxy whose forwarding headers are believed."""
        if not self._trusted_nets:
            return False
        found = self._trusted.get(ip)
        if found is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                found = False
            else:
                found = any(addr in net for net in self._trusted_nets)
            if len(self._trusted) > 4096:
                self._trusted.clear()
            self._trusted[ip] = found
        return found

    # -- running -------------------------------------------------------------------------------

    async def listen(self, host: str, port: int, shared: bool = False,
                     tls: ssl.SSLContext | None = None) -> asyncio.Server:
        """Accept clients on host:port; `shared`: with other worker processes (SO_REUSEPORT);
        `tls`: an HTTPS entrypoint. Not shared, a port already in use is an error rather than
        silently split."""
        loop = asyncio.get_running_loop()
        secure = tls is not None
        extra: dict[str, Any] = {}
        if tls is not None:  # a handshake is part of the request head's time
            extra = {"ssl": tls, "ssl_handshake_timeout": self.config.header_timeout}
        server = await loop.create_server(
            lambda: ClientConnection(self, secure), host, port, reuse_address=True,
            reuse_port=shared, backlog=2048, **extra)
        self._listeners.append(server)
        if tls is not None:
            self.https_port = server.sockets[0].getsockname()[1]
        return server

    def client_came(self, conn: ClientConnection) -> None:
        self.clients.add(conn)

    def client_gone(self, conn: ClientConnection) -> None:
        self.clients.discard(conn)
        if self._stopping and not self.clients:
            self._all_closed.set()

    async def maintain(self) -> None:
        """Once a tick: timeouts, closing of stale pooled connections, the access log."""
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.tick)
            now = self.now = monotonic()
            for conn in list(self.clients):
                conn.check_timeouts(now)
            for server in list(self.servers.values()):
                if server.idle:
                    server.close_idle(older_than=now - cfg.upstream_idle_timeout)
            if self.log is not None:
                self.log.flush()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish (at most `grace` s), close the rest."""
        self._stopping = True
        for listener in self._listeners:
            listener.close()
        for conn in list(self.clients):
            conn.closing = True
            if not conn.queue and conn.tunnel is None and conn.parsing is None:
                conn.transport.close()
        if self.clients:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
        for conn in list(self.clients):
            conn.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for server in self.servers.values():
            server.close_idle()
        if self.log is not None:
            self.log.close()

    # -- observing -----------------------------------------------------------------------------

    def gauges(self) -> Gauges:
        inflight: dict[tuple[str, str], int] = {}
        for name, svc in self.table.services.items():
            for s in svc.servers:
                inflight[(name, s.url)] = s.inflight
        for url, n in self.draining().items():
            inflight[("", url)] = n
        return Gauges(
            revision=self.table.revision,
            routers=len(self.table.routes),
            route_errors=len(self.table.errors),
            client_connections=len(self.clients),
            inflight=inflight,
            idle_upstream=sum(len(s.idle) for s in self.servers.values()),
            draining=len(self.draining()),
        )

    def metrics_text(self, more_stats: Iterable[Stats] = (),
                     more_gauges: Iterable[dict[str, Any]] = ()) -> str:
        """Prometheus text; `more_*` are other worker processes' figures, added in."""
        merged: dict[tuple[str, str], Stats] = {}
        for st in (*self.stats.values(), self.unrouted, *more_stats):
            key = (st.router, st.service)
            if key not in merged:
                merged[key] = Stats(*key)
            merged[key].add(st)
        g = self.gauges()
        inflight = dict(g.inflight)
        connections, idle = g.client_connections, g.idle_upstream
        for other in more_gauges:
            connections += int(other.get("client_connections", 0))
            idle += int(other.get("idle_upstream", 0))
            for service, url, n in other.get("inflight", []):
                inflight[(service, url)] = inflight.get((service, url), 0) + int(n)
        g = replace(g, client_connections=connections, idle_upstream=idle, inflight=inflight)
        return render(merged.values(), g)
