"""Addresses, parsed one way everywhere: `host:port`, `[v6]:port`, `:port`."""

from __future__ import annotations

import ipaddress


def split_addr(addr: str, default_host: str | None = None) -> tuple[str, int]:
    """`127.0.0.1:8080`, `[::1]:8080` or (with a default host) `:8080` → (host, port)."""
    host, sep, port = addr.rpartition(":")
    host = host.strip("[]") or (default_host or "")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ValueError(f"address {addr!r} must be host:port")
    return host, int(port)


def is_loopback(host: str | None) -> bool:
    """Only this machine reaches it: `localhost` or a loopback IP."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False
