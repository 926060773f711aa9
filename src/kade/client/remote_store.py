"""The `Store` protocol over the servers' HTTP store API (`/v1/store/*`): what an agent of a
cluster follows and writes, with the code `kade up` runs in process.

Revisions are the cluster store's own, the same on every server, so a request or a watch
that loses its server goes on at the next one from where it was: the agent never notices
which server answers. Watches carry keepalives; a stream silent for three of them is taken
for a dead server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from kade.store.base import (
    CasFailed,
    Compacted,
    Compare,
    Delete,
    Entry,
    Event,
    LeaseExpired,
    LimitExceeded,
    Op,
    Put,
    StoreError,
    TxnResult,
)
from kade.store.wire import WireError, entry_from, event_from, txn_json, txn_result_from

log = logging.getLogger("kade.remote_store")

KEEPALIVE_SECONDS = 5.0  # the servers' (kade.api.store_api)
REQUEST_TIMEOUT = 10.0
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)


class Unreachable(StoreError):
    """No server answered; the message names them and why."""


class RemoteStore:
    """A `Store` whose every call goes to one of `servers` (base URLs), failing over."""

    def __init__(self, servers: Sequence[str], token: str, *, cacert: str | None = None,
                 keepalive: float = KEEPALIVE_SECONDS) -> None:
        if not servers:
            raise ValueError("servers: name at least one server URL")
        self.servers = [s.rstrip("/") for s in servers]
        self._current = 0
        self._keepalive = keepalive
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cacert) \
            if cacert else True
        self._http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                       verify=verify, timeout=REQUEST_TIMEOUT)
        self._closed = False

    # -- one request, failing over -------------------------------------------------------

    async def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                    body: Any = None, timeout: float = REQUEST_TIMEOUT) -> Any:
        problems: list[str] = []
        for attempt in range(len(self.servers)):
            server = self.servers[self._current]
            try:
                resp = await self._http.request(method, server + path, params=params,
                                                json=body, timeout=timeout)
            except httpx.TransportError as e:
                problems.append(f"{server}: {type(e).__name__} {e}".rstrip())
                self._next_server(server)
                continue
            if resp.status_code in (502, 503, 504) and attempt + 1 < len(self.servers):
                problems.append(f"{server}: {resp.status_code} {_message(resp)}")
                self._next_server(server)
                continue
            return _answer(resp)
        raise Unreachable("no kade server answered: " + "; ".join(problems))

    def _next_server(self, failed: str) -> None:
        if self.servers[self._current] == failed:
            self._current = (self._current + 1) % len(self.servers)

    # -- the protocol -------------------------------------------------------------------

    async def revision(self) -> int:
        data = await self._call("GET", "/v1/store/revision")
        return int(data["revision"])

    async def get(self, key: str) -> Entry | None:
        data = await self._call("GET", "/v1/store/get", params={"key": key})
        return entry_from(data["entry"]) if data.get("entry") is not None else None

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        data = await self._call("GET", "/v1/store/range", params={"prefix": prefix})
        return [entry_from(e) for e in data["entries"]], int(data["revision"])

    async def put(self, key: str, value: bytes, *, expect: int | None = None,
                  lease: int = 0) -> int:
        compares = [Compare(key, expect)] if expect is not None else []
        result = await self.txn(compares, [Put(key, value, lease)])
        if not result.succeeded:
            raise CasFailed(f"{key}: changed since revision {expect}")
        return result.revision

    async def delete(self, key: str, *, expect: int | None = None, prefix: bool = False) -> int:
        compares = [Compare(key, expect)] if expect is not None else []
        result = await self.txn(compares, [Delete(key, prefix=prefix)])
        if not result.succeeded:
            raise CasFailed(f"{key}: changed since revision {expect}")
        return result.revision

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        data = await self._call("POST", "/v1/store/txn",
                                body=txn_json(tuple(compares), tuple(success), tuple(failure)))
        return txn_result_from(data)

    async def prefix_revision(self, prefix: str) -> int:
        data = await self._call("GET", "/v1/store/revision", params={"prefix": prefix})
        return int(data["prefixRevision"])

    async def wait(self, prefix: str, after: int, timeout: float) -> int:
        data = await self._call("GET", "/v1/store/wait",
                                params={"prefix": prefix, "after": after, "timeout": timeout},
                                timeout=timeout + REQUEST_TIMEOUT)
        return int(data["prefixRevision"])

    async def grant(self, ttl: float) -> int:
        data = await self._call("POST", "/v1/store/leases", body={"ttl": ttl})
        return int(data["id"])

    async def keepalive(self, lease: int) -> float:
        data = await self._call("PUT", f"/v1/store/leases/{lease}")
        return float(data["ttl"])

    async def revoke(self, lease: int) -> None:
        await self._call("DELETE", f"/v1/store/leases/{lease}")

    async def watch(self, prefix: str, after: int) -> AsyncIterator[list[Event]]:
        """Batches after `after`, resumed on another server when one goes away."""
        last = after
        failures = 0
        while not self._closed:
            server = self.servers[self._current]
            try:
                async with self._http.stream(
                        "GET", server + "/v1/store/watch",
                        params={"prefix": prefix, "after": last},
                        timeout=httpx.Timeout(REQUEST_TIMEOUT, read=3 * self._keepalive)
                ) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        _answer(resp)  # raises the server's refusal
                    async for line in resp.aiter_lines():
                        failures = 0
                        if not line:
                            continue
                        msg = json.loads(line)
                        if "events" in msg:
                            batch = [event_from(e) for e in msg["events"]]
                            last = batch[-1].revision
                            yield batch
                        elif "progress" in msg:
                            last = max(last, int(msg["progress"]))
                        elif "compacted" in msg:
                            raise Compacted(last, int(msg["compacted"]))
                        elif "error" in msg:
                            raise StoreError(str(msg["error"]))
            except (httpx.TransportError, StoreError, WireError, ValueError) as e:
                if isinstance(e, Compacted | Refused | LimitExceeded):
                    raise  # not a server going away: the caller must know
                log.warning("watch of %r on %s ended (%s); going on from revision %d",
                            prefix, server, e, last)
                self._next_server(server)
            else:  # the server closed the stream (it is stopping): resume elsewhere
                self._next_server(server)
            delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
            failures += 1
            await asyncio.sleep(delay)

    async def close(self) -> None:
        self._closed = True
        await self._http.aclose()


class Refused(StoreError):
    """A server refused the request (bad input, not allowed): not retried elsewhere."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200]
    return str(data.get("message", data)) if isinstance(data, dict) else str(data)[:200]


def _answer(resp: httpx.Response) -> Any:
    if resp.status_code == 200:
        return resp.json()
    message = _message(resp)
    if resp.status_code in (413, 507):
        data = resp.json()
        raise LimitExceeded(message, kind=data.get("kind", "value"),
                            limit=int(data.get("limit", 0)), prefix=str(data.get("prefix", "")))
    if resp.status_code == 404 and isinstance(data := _json(resp), dict) \
            and data.get("kind") == "lease":
        raise LeaseExpired(message)
    if resp.status_code in (400, 401, 403, 404, 415):
        raise Refused(f"the kade server refused: {message}", resp.status_code)
    raise StoreError(f"the kade server answered {resp.status_code}: {message}")
