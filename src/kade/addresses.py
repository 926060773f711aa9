"""Addresses and durations, parsed one way everywhere: `host:port`, `[v6]:port`, `:port`;
`250ms`, `10s`, `5m`, `1d`."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re

# Consul's and Go's units; one number and one unit (Go's `1m30s` is not taken)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)?")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
          "d": 86400.0}


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


def parse_duration(text: str, what: str = "duration") -> float:
    """`250ms`, `10s`, `5m`, `1.5h`, `7d` (Consul's `wait`, the router's timeouts, how far back
    a search reaches) → seconds; a bare
    number is seconds. ValueError naming `what` and the problem."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{what}: {text!r} is not a duration (use e.g. 250ms, 10s, 5m)")
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not math.isfinite(seconds):
        raise ValueError(f"{what}: {text!r} must be a finite duration")
    return seconds


def parse_time(text: str, now: float, what: str = "time") -> float:
    """A point in time, seconds since the epoch: `10m`/`1d` (that long before `now`), unix
    seconds (`1700000000`, more than 8 digits: a bare small number is a duration), or an
    RFC 3339 / ISO 8601 time (UTC unless it says). ValueError naming `what`."""
    text = text.strip()
    try:
        return float(text) if text.replace(".", "", 1).isdigit() and len(text) > 8 else (
            now - parse_duration(text, what))
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what}: {text!r} is neither a duration ago (10m, 1d) nor a time "
                         "(2026-11-30T17:00:00Z, or unix seconds)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()
