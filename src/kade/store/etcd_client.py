"""Talking to etcd v3 over its JSON gateway (`/v3/...` on the client port), with httpx.

Why the gateway: it is in every etcd since 3.3, needs no gRPC stack, and each call is one
HTTP request whose failure is plain to see. Several endpoints: a call goes to the member that
answered last; a member that cannot be reached is skipped for the next (a request that was
never sent is safe to send elsewhere). A write that gets no answer may have been applied, so
it is not sent again: the members are asked whether etcd has a leader, and the caller gets
`NoQuorum` (none has: writes are refused until one is elected again) or `Unavailable` (none
answers), each naming the endpoints and what each said.

Reads are linearizable (they see every write acknowledged before them); when that cannot be
had in `read_timeout` (no quorum), they are served serializably by any member that answers:
what that member holds, perhaps a little behind. While etcd is without quorum, reads go
straight to serializable ones (the members' status is asked again at most once a second), and
writes are refused after a quick look at that status, without waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from kade.store.base import LeaseExpired, NoQuorum, StoreError, Unavailable

Json = dict[str, Any]

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0  # a linearizable read; then a serializable one
WRITE_TIMEOUT = 5.0  # etcd itself gives up on a proposal after 5 s + 2 election timeouts
PROBE_TIMEOUT = 0.5
DEGRADED_FOR = 1.0  # after etcd was found without a leader, act on it this long, then ask
CHECK_EVERY = 5.0  # a watch quiet this long asks its member whether it still answers
MAX_LINE = 64 * 1024 * 1024  # one watch response (a revision's events); etcd's own bound is lower

log = logging.getLogger(__name__)


def parse_endpoints(text: str | Sequence[str]) -> list[str]:
    """`http://10.0.0.1:2379,http://10.0.0.2:2379` (or a list) → base URLs; ValueError naming
    the bad one. Plain host:port means http://host:port."""
    items = text.split(",") if isinstance(text, str) else list(text)
    urls: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        url = item if "://" in item else f"http://{item}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in (
                "", "/"):
            raise ValueError(f"etcd: {item!r} is not an endpoint URL (e.g. http://127.0.0.1:2379)")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"etcd: {item!r} has a bad port") from None
        urls.append(url.rstrip("/"))
    if not urls:
        raise ValueError("etcd: give at least one endpoint URL (e.g. http://127.0.0.1:2379)")
    return urls


class EtcdError(StoreError):
    """etcd refused a request; `code` is the gRPC status code it gave."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _error(status: int, body: bytes) -> EtcdError:
    try:
        doc = json.loads(body)
        message, code = str(doc.get("message") or doc.get("error")), int(doc.get("code", 2))
    except (ValueError, AttributeError, TypeError):
        message, code = body[:200].decode(errors="replace") or f"HTTP {status}", 2
    if "lease not found" in message:
        return LeaseExpiredError(message, code)
    return EtcdError(message, code)


class LeaseExpiredError(EtcdError, LeaseExpired):
    """etcd does not know the lease."""


_TRANSIENT = ("request timed out", "no leader", "leader changed", "timed out",
              "not capable", "stopped")


def is_transient(e: EtcdError) -> bool:
    """etcd could not commit now (no leader, an election): the answer may come later."""
    return e.code in (4, 14) or any(t in str(e) for t in _TRANSIENT)


class Gateway:
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        read_timeout: float = READ_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self.endpoints = list(endpoints)
        self._preferred = 0
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._degraded_until = 0.0
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(write_timeout, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=20),
        )
        # Watches hold their connection open: a pool of their own, without a bound.
        self._streams = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    def order(self) -> list[str]:
        n = len(self.endpoints)
        return [self.endpoints[(self._preferred + i) % n] for i in range(n)]

    def _prefer(self, url: str) -> None:
        self._preferred = self.endpoints.index(url)

    async def _post(self, client: httpx.AsyncClient, url: str, path: str, body: Json,
                    timeout: float) -> Json:
        response = await client.post(url + path, json=body, timeout=httpx.Timeout(
            timeout, connect=min(CONNECT_TIMEOUT, timeout)))
        if response.status_code != 200:
            raise _error(response.status_code, response.content)
        doc: Json = response.json()
        return doc

    @property
    def degraded(self) -> bool:
        return time.monotonic() < self._degraded_until

    async def write(self, path: str, body: Json) -> Json:
        """A request that changes etcd; sent to one member only once it was sent at all.

        A member that cannot be reached was not sent the request: the next one is tried,
        after waiting (up to the write timeout) for the members to have a leader, since a
        member that lost its leader (it was the one that went) drops what it is sent."""
        if self._degraded_until:  # etcd was without a leader lately: ask before waiting
            await self.check_quorum()
        failures: list[str] = []
        tried: set[str] = set()
        while True:
            url = next((u for u in self.order() if u not in tried), None)
            if url is None:
                raise Unavailable(_unreachable(failures))
            tried.add(url)
            try:
                doc = await self._post(self._client, url, path, body, self._write_timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                failures.append(f"{url}: {_reason(e)}")
                leader = await self.wait_for_leader(self._write_timeout)
                if leader is None:
                    await self.check_quorum()  # raises NoQuorum or Unavailable
                else:
                    self._prefer(leader)
                continue
            except (httpx.TimeoutException, httpx.TransportError) as e:
                await self.check_quorum()
                raise Unavailable(f"etcd at {url} did not answer a write ({_reason(e)}); "
                                  "it may or may not have been applied") from None
            except EtcdError as e:
                if not is_transient(e):
                    raise
                await self.check_quorum()
                raise Unavailable(f"etcd at {url} did not commit a write ({e}); "
                                  "it may or may not have been applied") from None
            self._prefer(url)
            return doc

    async def read(self, path: str, body: Json) -> Json:
        """A linearizable read, or a serializable one when etcd cannot give that now."""
        if self._degraded_until and not self.degraded:
            with contextlib.suppress(Unavailable):  # one quick look at the members
                await self.check_quorum()
        if not self._degraded_until:
            for url in self.order():
                try:
                    doc = await self._post(self._client, url, path, body, self._read_timeout)
                except (httpx.ConnectError, httpx.ConnectTimeout):
                    continue
                except (httpx.TimeoutException, httpx.TransportError):
                    self._degraded_until = time.monotonic() + DEGRADED_FOR
                    break
                except EtcdError as e:
                    if not is_transient(e):
                        raise
                    self._degraded_until = time.monotonic() + DEGRADED_FOR
                    break
                self._prefer(url)
                return doc
        return await self.read_serializable(path, _serializable(path, body))

    async def read_serializable(self, path: str, body: Json) -> Json:
        failures: list[str] = []
        for url in self.order():
            try:
                return await self._post(self._client, url, path, body, self._read_timeout)
            except (httpx.TimeoutException, httpx.TransportError) as e:
                failures.append(f"{url}: {_reason(e)}")
        raise Unavailable(_unreachable(failures))

    async def local(self, url: str, path: str, body: Json) -> Json:
        """A request to one member (status, a watch's progress), with the probe's timeout."""
        return await self._post(self._client, url, path, body, PROBE_TIMEOUT)

    async def _statuses(self) -> tuple[list[tuple[str, Json]], list[str]]:
        """Each member's status: (url, status) of those that answer, and why the others did
        not."""
        async def status(url: str) -> tuple[str, Json | None, str]:
            try:
                return url, await self.local(url, "/v3/maintenance/status", {}), ""
            except (httpx.HTTPError, StoreError, ValueError) as e:
                return url, None, _reason(e)

        answers = await asyncio.gather(*(status(url) for url in self.endpoints))
        up = [(url, doc) for url, doc, _ in answers if doc is not None]
        down = [f"{url}: {why}" for url, doc, why in answers if doc is None]
        return up, down

    @staticmethod
    def _leader_of(up: Sequence[tuple[str, Json]]) -> str | None:
        """The endpoint of the leader the answering members agree on, if it answers too (a
        follower names its old leader for an election timeout after that one went)."""
        ids = {str(doc.get("header", {}).get("member_id")): url for url, doc in up}
        for _, doc in up:
            url = ids.get(str(doc.get("leader", "0")))
            if url is not None:
                return url
        return None

    async def wait_for_leader(self, timeout: float) -> str | None:
        """The endpoint of the leader, waiting up to `timeout` for one (None: no leader)."""
        deadline = time.monotonic() + timeout
        while True:
            up, _ = await self._statuses()
            leader = self._leader_of(up)
            if leader is not None or time.monotonic() >= deadline:
                return leader
            await asyncio.sleep(0.05)

    async def check_quorum(self) -> None:
        """Raise NoQuorum or Unavailable when etcd cannot commit now; return when a member
        leads (and prefer it: writes go to the leader without a hop)."""
        up, down = await self._statuses()
        leader = self._leader_of(up)
        if leader is not None:
            self._degraded_until = 0.0
            self._prefer(leader)
            return
        self._degraded_until = time.monotonic() + DEGRADED_FOR
        if not up:
            raise Unavailable(_unreachable(down))
        answering = ", ".join(url for url, _ in up)
        unreachable = f"; unreachable: {'; '.join(down)}" if down else ""
        raise NoQuorum(
            f"etcd has no quorum (members answering without a leader: {answering}"
            f"{unreachable}): writes are refused until it returns")

    async def stream(self, url: str, path: str, body: Json) -> AsyncGenerator[Json, None]:
        """The JSON messages of one streaming call (a watch) to one member, as they come."""
        request = self._streams.build_request("POST", url + path, json=body)
        response = await self._streams.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise _error(response.status_code, await response.aread())
            buffer = b""
            async for chunk in response.aiter_bytes():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
                if len(buffer) > MAX_LINE:
                    raise StoreError(f"etcd at {url} sent a message over {MAX_LINE} bytes")
        finally:
            await response.aclose()

    async def watched(self, url: str, path: str, body: Json,
                      check_every: float) -> AsyncGenerator[Json, None]:
        """`stream()`, and a check of the member whenever it has been quiet for
        `check_every` seconds: a member that stopped (not dead: its connections stay open)
        must not hold a watch forever. A member that does not answer raises httpx's
        timeout, and the watch resumes on another."""
        queue: asyncio.Queue[Json | BaseException | None] = asyncio.Queue(maxsize=64)

        async def pump() -> None:
            try:
                async with contextlib.aclosing(self.stream(url, path, body)) as messages:
                    async for message in messages:
                        await queue.put(message)
                await queue.put(None)
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # handed to the reader, which raises it
                await queue.put(e)

        loop = asyncio.get_running_loop()
        task = loop.create_task(pump())
        getter: asyncio.Task[Json | BaseException | None] | None = None
        try:
            while True:
                # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that comes as a message arrives, and a follower being closed would go on.
                getter = getter or loop.create_task(queue.get())
                done, _ = await asyncio.wait({getter}, timeout=check_every)
                if not done:
                    await self.local(url, "/v3/maintenance/status", {})
                    continue
                item, getter = getter.result(), None
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if getter is not None:
                getter.cancel()
            task.cancel()
            await asyncio.wait({task})

    async def close(self) -> None:
        await self._streams.aclose()
        await self._client.aclose()


def _serializable(path: str, body: Json) -> Json:
    if path == "/v3/kv/range":
        return {**body, "serializable": True}
    if path == "/v3/kv/txn":
        ops = [{"request_range": {**op["request_range"], "serializable": True}}
               if "request_range" in op else op for op in body.get("success", [])]
        return {**body, "success": ops}
    return body


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 200 else text[:200] + "…"


def _unreachable(failures: Sequence[str]) -> str:
    return "etcd is unreachable: " + "; ".join(failures)
