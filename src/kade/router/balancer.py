"""Servers (with their in-flight counts and idle connection pools) and load balancing.

A Server lives as long as some table or some in-flight request uses its URL: a table swap
keeps the Server objects of URLs that stay, so counts and pooled connections carry over, and
marks the others removed so that they drain.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit


class Pooled(Protocol):
    """An idle upstream connection, as the pool sees it."""

    idle_since: float

    def is_usable(self) -> bool: ...

    def close(self) -> None: ...


class Server:
    __slots__ = ("url", "host", "port", "task", "inflight", "idle", "removed", "requests",
                 "failures")

    def __init__(self, url: str, host: str, port: int, task: str = "") -> None:
        self.url = url
        self.host = host
        self.port = port
        self.task = task
        self.inflight = 0
        self.idle: list[Any] = []  # of Pooled; most recently used last
        self.removed = False
        self.requests = 0
        self.failures = 0  # connections refused or broken

    def take_idle(self) -> Any:
        """The most recently used idle connection that is still open, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.is_usable():
                return conn
        return None

    def close_idle(self, older_than: float | None = None) -> int:
        """Close idle connections (all, or those idle since before `older_than`)."""
        keep: list[Any] = []
        closed = 0
        for conn in self.idle:
            if older_than is None or conn.idle_since < older_than:
                conn.close()
                closed += 1
            else:
                keep.append(conn)
        self.idle = keep
        return closed


def parse_server_url(url: str) -> tuple[str, int]:
    """`http://host:port` → (host, port); raises ValueError on anything else."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"server url {url!r}: only http:// is supported")
    if not parts.hostname:
        raise ValueError(f"server url {url!r}: no host")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"server url {url!r}: invalid port") from None
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"server url {url!r}: a path is not supported")
    return parts.hostname, port


class Service:
    """A named set of servers and how to choose among them."""

    __slots__ = ("name", "strategy", "servers", "_next")

    def __init__(self, name: str, strategy: str, servers: list[Server]) -> None:
        self.name = name
        self.strategy = strategy
        self.servers = servers
        self._next = 0

    def pick(self, exclude: tuple[Server, ...] = ()) -> Server | None:
        servers = self.servers
        n = len(servers)
        if n == 1 and not exclude:
            return servers[0]
        if n == 0:
            return None
        start = self._next
        self._next = start + 1
        if self.strategy == "least-conn":
            best: Server | None = None
            for k in range(n):
                s = servers[(start + k) % n]
                if s in exclude:
                    continue
                if best is None or s.inflight < best.inflight:
                    best = s
            return best
        for k in range(n):
            s = servers[(start + k) % n]
            if s not in exclude:
                return s
        return None
