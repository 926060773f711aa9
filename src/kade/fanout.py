"""How a `kade server` asks every node: logs (kade.logs.fanout) and metrics
(kade.metrics.remote) live on the node that captured them (DESIGN.md: observability is per
node, queried centrally), so a query goes to the nodes.

One mechanism for both: the nodes to ask are those whose `nodes/<name>` record names a
listener (`api_url`, from `kade agent --listen`) and whose agent is alive; a node down is
named at once rather than waited for. Each request is signed for that node and that very
request (kade.auth.assertions), all nodes are asked concurrently, and each has `timeout`
seconds; a node that did not answer (in time) is named with the reason, never waited for
longer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

import httpx

from kade import model
from kade.auth.assertions import HEADER, ServerKey
from kade.store.base import Store

log = logging.getLogger("kade.fanout")

NODE_TIMEOUT = 5.0  # seconds a node has to answer
MAX_ANSWER = 128 << 20  # bytes of one node's answer
MAX_MESSAGE = 64 << 10  # bytes of a node's refusal read for its message
T = TypeVar("T")


@dataclass(frozen=True)
class Unanswered:
    """A node that was asked and did not answer (in time), and why. `down`: its agent is not
    alive, so it was not asked at all (what it keeps is out of reach until it is back);
    `status`: what it answered instead (0: nothing)."""

    node: str
    reason: str
    down: bool = False
    status: int = 0


class NodeRefused(Exception):
    """A node answered, but not with what was asked: its status and message."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NodeFanOut:
    def __init__(self, store: Store, key: ServerKey, *,
                 clock: Callable[[], float] = time.time, timeout: float = NODE_TIMEOUT,
                 cacert: str | None = None) -> None:
        self.store = store
        self.key = key
        self.clock = clock
        self.timeout = timeout
        # the per-node bound is `within`'s; httpx's own only backs it up
        self._client = httpx.AsyncClient(verify=cacert or True, trust_env=False,
                                         timeout=httpx.Timeout(timeout + 1))

    async def close(self) -> None:
        await self._client.aclose()

    async def nodes(self) -> tuple[list[model.Node], list[Unanswered]]:
        """The nodes to ask: those with a listener whose agent is alive; and those with a
        listener that are down (named at once, rather than waited for)."""
        entries, _ = await self.store.range(model.NODES)
        found, _bad = model.decode_all(entries, model.Node)
        alive_entries, _ = await self.store.range(model.ALIVE)
        alive = {e.key[len(model.ALIVE):] for e in alive_entries}
        listening = sorted((n for n in found if n.api_url), key=lambda n: n.name)
        return ([n for n in listening if n.alive(alive)],
                [Unanswered(n.name, "down (its agent is not alive)", down=True)
                 for n in listening if not n.alive(alive)])

    def request(self, node: model.Node, path: str, params: Sequence[tuple[str, str]]
                ) -> tuple[str, dict[str, str]]:
        """The URL of `path` on the node and the headers that sign it for that node."""
        target = f"{path}?{urlencode(list(params))}" if params else path
        token = self.key.sign(node.name, "GET", target, self.clock())
        return node.api_url.rstrip("/") + target, {HEADER: token}

    async def ask(self, nodes: Sequence[model.Node], path: str,
                  params: Sequence[tuple[str, str]], load: Callable[[bytes], T]
                  ) -> tuple[list[tuple[str, T]], list[Unanswered]]:
        """GET `path` of every node at once: (node, loaded answer) of those that answered
        200 in time, and the others with why."""

        async def one(node: model.Node) -> T:
            url, headers = self.request(node, path, params)
            async with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    body = await read_at_most(response, MAX_MESSAGE)
                    raise NodeRefused(message_text(response.status_code, body or b""),
                                      response.status_code)
                body = await read_at_most(response, MAX_ANSWER)
            if body is None:
                raise NodeRefused(f"its answer is larger than {MAX_ANSWER >> 20} MiB")
            return await asyncio.to_thread(load, body)  # up to MAX_ANSWER: not on the loop

        results = await asyncio.gather(*(within(one(n), self.timeout) for n in nodes),
                                       return_exceptions=True)
        answers: list[tuple[str, T]] = []
        missing: list[Unanswered] = []
        for node, result in zip(nodes, results, strict=True):
            if isinstance(result, BaseException):
                missing.append(Unanswered(node.name, reason(result), status=getattr(
                    result, "status", 0)))
                log.warning("node %s did not answer %s: %s", node.name, path, reason(result))
            else:
                answers.append((node.name, result))
        return answers, missing


async def within(waiting: Awaitable[T], seconds: float) -> T:
    try:
        return await asyncio.wait_for(waiting, seconds)
    except TimeoutError:
        raise TimeoutError(f"no answer within {seconds:g}s") from None


async def read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body of a streamed response, or None as soon as it goes over `limit` bytes (the
    rest is not read)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def message_text(status: int, body: bytes) -> str:
    """A refusal's message: the `message` of kade's JSON errors, else the body's start."""
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = body[:200].decode("utf-8", errors="replace")
    return f"{status} {message}".strip()


def reason(error: BaseException) -> str:
    if isinstance(error, httpx.ConnectError):
        return "unreachable (connection refused or no route)"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return str(error) or type(error).__name__
