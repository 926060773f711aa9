"""A `kade server`'s log source: it keeps no lines, it asks every node that can answer.

Lines live on the node that captured them (DESIGN.md: observability is per node, queried
centrally). A query goes, concurrently, to every node whose `nodes/<name>` record names a
listener (`api_url`, from `kade agent --listen`), signed for that node and that request
(kade.auth.assertions); each node has `NODE_TIMEOUT` seconds. The answers are merged by time
(`kade.logs.source.merge_lines`: a tail is the last n of the merge); nodes that did not
answer are named in the answer. A follow merges the nodes' histories the same way, then
passes their new lines on as they come.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import urlencode

import httpx

from kade import model
from kade.admission.logs import query_params
from kade.auth.assertions import HEADER, ServerKey
from kade.logs.record import LogLine, LogQuery, TaskLog
from kade.logs.source import Answer, Unanswered, merge_lines, merge_tasks
from kade.logs.wire import line_of_row, load_lines, load_tasks
from kade.store.base import Store

log = logging.getLogger("kade.logs")

NODE_TIMEOUT = 5.0  # seconds a node has to answer a query (or to send a follow's history)
MAX_ANSWER = 128 << 20  # bytes of one node's answer
T = TypeVar("T")


class FanOut:
    def __init__(self, store: Store, key: ServerKey, *,
                 clock: Callable[[], float] = time.time, timeout: float = NODE_TIMEOUT,
                 cacert: str | None = None) -> None:
        self.store = store
        self.key = key
        self.clock = clock
        self.timeout = timeout
        # the per-node bound is `_within`'s; httpx's own only backs it up
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
                [Unanswered(n.name, "down (its agent is not alive)")
                 for n in listening if not n.alive(alive)])

    def _request(self, node: model.Node, path: str, params: list[tuple[str, str]]
                 ) -> tuple[str, dict[str, str]]:
        target = f"{path}?{urlencode(params)}"
        token = self.key.sign(node.name, "GET", target, self.clock())
        return node.api_url.rstrip("/") + target, {HEADER: token}

    async def _ask(self, path: str, query: LogQuery, load: Callable[[bytes], list[T]]
                   ) -> tuple[list[list[T]], list[Unanswered]]:
        nodes, down = await self.nodes()
        params = query_params(query)

        async def one(node: model.Node) -> list[T]:
            url, headers = self._request(node, path, params)
            response = await self._client.get(url, headers=headers)
            if response.status_code != 200:
                raise NodeRefused(_message(response))
            if len(response.content) > MAX_ANSWER:
                raise NodeRefused(f"its answer is larger than {MAX_ANSWER >> 20} MiB")
            return load(response.content)

        results = await asyncio.gather(*(_within(one(n), self.timeout) for n in nodes),
                                       return_exceptions=True)
        answers: list[list[T]] = []
        missing: list[Unanswered] = list(down)
        for node, result in zip(nodes, results, strict=True):
            if isinstance(result, BaseException):
                missing.append(Unanswered(node.name, _reason(result)))
                log.warning("node %s did not answer a log query: %s", node.name,
                            _reason(result))
            else:
                answers.append(result)
        return answers, missing

    async def query(self, query: LogQuery) -> Sequence[LogLine]:
        answers, missing = await self._ask("/node/v1/logs", query, load_lines)
        return Answer(merge_lines(answers, query), missing)

    async def tasks(self, *, app: str | None = None, task: str | None = None,
                    previous: bool = False) -> Sequence[TaskLog]:
        query = LogQuery(app=app, task=task, previous=previous)
        answers, missing = await self._ask("/node/v1/logs/tasks", query, load_tasks)
        return Answer(merge_tasks(answers), missing)

    async def follow(self, query: LogQuery) -> AsyncIterator[LogLine | Unanswered]:
        """Each node's history merged by time, then each node's new lines as they come."""
        nodes, down = await self.nodes()
        params = [*query_params(query), ("follow", "true")]
        live: asyncio.Queue[LogLine | Unanswered] = asyncio.Queue(maxsize=10_000)
        histories: dict[str, asyncio.Future[list[LogLine]]] = {
            n.name: asyncio.get_running_loop().create_future() for n in nodes}

        async def stream(node: model.Node) -> None:
            history: list[LogLine] = []
            url, headers = self._request(node, "/node/v1/logs", params)
            reached = histories[node.name]
            try:
                async with self._client.stream("GET", url, headers=headers,
                                               timeout=httpx.Timeout(
                                                   self.timeout + 1, read=None)) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise NodeRefused(_message(response))
                    async for row in response.aiter_lines():
                        data = json.loads(row) if row else {}
                        if isinstance(data, list):
                            line = line_of_row(data)
                            if reached.done():
                                await live.put(line)
                            else:
                                history.append(line)
                        elif data.get("live") and not reached.done():
                            reached.set_result(history)
                raise NodeRefused("its stream ended")
            except Exception as e:  # noqa: BLE001 - a node's failure is reported, not raised
                if not reached.done():
                    reached.set_exception(e)
                else:
                    await live.put(Unanswered(node.name, _reason(e)))

        tasks = {n.name: asyncio.create_task(stream(n), name=f"logs of {n.name}")
                 for n in nodes}
        try:
            for missing in down:
                yield missing
            done = await asyncio.gather(*(_within(asyncio.shield(f), self.timeout)
                                          for f in histories.values()),
                                        return_exceptions=True)
            answers: list[list[LogLine]] = []
            for name, result in zip(histories, done, strict=True):
                if isinstance(result, BaseException):
                    tasks[name].cancel()
                    yield Unanswered(name, _reason(result))
                else:
                    answers.append(result)
            for line in merge_lines(answers, query):
                yield line
            while True:
                yield await live.get()
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)


async def publish_key(store: Store, key: ServerKey, now: float) -> None:
    """`serverkeys/<server>`: what nodes check this server's requests with. A restarted
    server makes a new key and replaces its record; its old key signs nothing any more."""
    record = model.ServerKey(server=key.server, public_key=key.public, created=now)
    await store.put(model.SERVERKEYS + key.server, record.dump())


class NodeRefused(Exception):
    pass


async def _within(waiting: Awaitable[T], seconds: float) -> T:
    try:
        return await asyncio.wait_for(waiting, seconds)
    except TimeoutError:
        raise TimeoutError(f"no answer within {seconds:g}s") from None


def _message(response: httpx.Response) -> str:
    try:
        message = response.json().get("message", "")
    except (ValueError, AttributeError):
        message = response.text[:200]
    return f"{response.status_code} {message}".strip()


def _reason(error: BaseException) -> str:
    if isinstance(error, httpx.ConnectError):
        return "unreachable (connection refused or no route)"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return str(error) or type(error).__name__
