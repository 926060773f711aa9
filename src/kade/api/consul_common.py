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

from fastapi import HTTPException, Request, Response

from kade.addresses import parse_duration
from kade.api.closing import until_closing
from kade.store.base import Store

MAX_WAIT = 600.0
DEFAULT_WAIT = 300.0



def parse_wait(text: str | None) -> float:
    """Consul's duration syntax (`10s`, `5m`, `250ms`; a bare number is seconds), capped."""
    if text is None or text == "":
        return DEFAULT_WAIT
    try:
        return min(parse_duration(text, "wait"), MAX_WAIT)
    except ValueError as e:
        raise HTTPException(400, str(e)) from None


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
