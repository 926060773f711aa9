"""What every Consul-compatible endpoint shares: blocking queries and the index headers.

Consul's rules (https://developer.hashicorp.com/consul/api-docs/features/blocking):
- `?index=N&wait=D`: answer when the data's index moves past N, or after D (default 5 min,
  at most 10 min), with a small random jitter added so that many watchers do not wake at once.
- The index returned is never 0 (clients treat 0 as "no blocking"); an index lower than the
  client's (after a reset) makes the client start over, which is fine.
- Every answer, 404 included, carries X-Consul-Index, X-Consul-KnownLeader, X-Consul-LastContact.
"""

from __future__ import annotations

import random
import re

from fastapi import HTTPException, Request, Response

from kade.api.closing import until_closing
from kade.store.base import Store

MAX_WAIT = 600.0
DEFAULT_WAIT = 300.0

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)?$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wait(text: str | None) -> float:
    """Consul's duration syntax (`10s`, `5m`, `250ms`; a bare number is seconds), capped."""
    if text is None or text == "":
        return DEFAULT_WAIT
    m = _DURATION.match(text.strip())
    if not m:
        raise HTTPException(400, f"wait: invalid duration {text!r} (use e.g. 10s, 5m)")
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    return min(seconds, MAX_WAIT)


def parse_index(text: str | None) -> int:
    if text is None or text == "":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"index: {text!r} is not a whole number") from None
    if value < 0:
        raise HTTPException(400, "index: must be >= 0")
    return value


async def block(store: Store, prefix: str, request: Request) -> int:
    """Wait as a blocking query asks, then return the index to answer with (>= 1)."""
    index = parse_index(request.query_params.get("index"))
    current = await store.prefix_revision(prefix)
    if index > 0 and current <= index:
        wait = parse_wait(request.query_params.get("wait"))
        wait += random.uniform(0, wait / 16)  # Consul's jitter
        woke = await until_closing(request, store.wait(prefix, index, wait))
        current = woke if woke is not None else await store.prefix_revision(prefix)
    return max(current, 1)


def set_headers(response: Response, index: int) -> None:
    response.headers["X-Consul-Index"] = str(max(index, 1))
    response.headers["X-Consul-KnownLeader"] = "true"
    response.headers["X-Consul-LastContact"] = "0"
    response.headers["X-Consul-Effective-Consistency"] = "leader"
