"""A `kade server`'s log source: it keeps no lines, it asks every node that can answer.

Lines live on the node that captured them (DESIGN.md: observability is per node, queried
centrally). A query goes, concurrently, to every node with a listener (`kade agent
--listen`), signed for that node and that request, each node bounded in time: kade.fanout,
which metrics' queries go through too. The answers are merged by time
(`kade.logs.source.merge_lines`: a tail is the last n of the merge); nodes that did not
answer are named in the answer. A follow merges the nodes' histories the same way, then
passes their new lines on as they come.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

import httpx

from kade import model
from kade.admission.logs import query_params
from kade.auth.assertions import ServerKey
from kade.fanout import (
    MAX_MESSAGE,
    NODE_TIMEOUT,
    NodeFanOut,
    NodeRefused,
    Unanswered,
    message_text,
    read_at_most,
    reason,
    within,
)
from kade.logs.record import LogLine, LogQuery, TaskLog
from kade.logs.source import Answer, merge_lines, merge_tasks
from kade.logs.wire import line_of_row, load_lines, load_tasks
from kade.store.base import Store

__all__ = ["NODE_TIMEOUT", "FanOut", "NodeRefused", "publish_key"]
T = TypeVar("T")


class FanOut(NodeFanOut):
    """The log source of a server: kade.fanout's nodes, signing and bounds, for log queries
    and follows."""

    async def _ask(self, path: str, query: LogQuery, load: Callable[[bytes], list[T]]
                   ) -> tuple[list[list[T]], list[Unanswered]]:
        nodes, down = await self.nodes()
        answers, missing = await self.ask(nodes, path, query_params(query), load)
        return [a for _, a in answers], [*down, *missing]

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
            url, headers = self.request(node, "/node/v1/logs", params)
            reached = histories[node.name]
            try:
                async with self._client.stream("GET", url, headers=headers,
                                               timeout=httpx.Timeout(
                                                   self.timeout + 1, read=None)) as response:
                    if response.status_code != 200:
                        body = await read_at_most(response, MAX_MESSAGE)
                        raise NodeRefused(message_text(response.status_code, body or b""),
                                          response.status_code)
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
                    await live.put(Unanswered(node.name, reason(e)))

        tasks = {n.name: asyncio.create_task(stream(n), name=f"logs of {n.name}")
                 for n in nodes}
        try:
            for missing in down:
                yield missing
            done = await asyncio.gather(*(within(asyncio.shield(f), self.timeout)
                                          for f in histories.values()),
                                        return_exceptions=True)
            answers: list[list[LogLine]] = []
            for name, result in zip(histories, done, strict=True):
                if isinstance(result, BaseException):
                    tasks[name].cancel()
                    yield Unanswered(name, reason(result))
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
