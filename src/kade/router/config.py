"""The proxy's settings, apart from the proxy so that the code it owns (client connections,
forwarding) can read them without importing the proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class ProxyConfig:
    response_header_timeout: float = 60.0  # request sent → response head (504 after)
    header_timeout: float = 10.0  # a request head must arrive within (408 after)
    body_timeout: float = 60.0  # a request body that sends nothing for this long: 408
    idle_timeout: float = 90.0  # an idle keep-alive client connection is closed after
    upstream_idle_timeout: float = 60.0  # pooled upstream connections are closed after
    connect_timeout: float = 5.0
    max_header_bytes: int = 32 * 1024  # 431 above
    max_url_bytes: int = 8 * 1024  # 414 above
    max_idle_per_server: int = 256
    attempts: int = 3  # tries of an idempotent request (other server / fresh connection)
    tick: float = 1.0  # how often timeouts are checked
    # clients whose X-Forwarded-For, X-Real-IP, X-Forwarded-Proto/Host/Port... are kept
    # (CIDR ranges); from anyone else they are dropped and set from the connection
    trusted_proxies: list[str] = field(default_factory=list)
    https_port: int = 0  # where routes marked `tls` redirect plain HTTP requests (0: nowhere)


def parse_networks(values: Iterable[str], what: str = "--trusted-proxies"
                   ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`10.0.0.0/8,::1` (items may hold commas) → networks; ValueError naming the bad one."""
    nets = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            try:
                nets.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{what}: {item.strip()!r} is not an IP address or CIDR "
                                 f"range") from None
    return nets
