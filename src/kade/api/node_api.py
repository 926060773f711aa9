"""A node's listener (`kade agent --listen ADDR:PORT`): the node's log and metrics stores,
asked by the cluster's servers, which fan a user's query out to every node and merge the
answers (kade.fanout).

    GET /node/v1/logs?<the parameters of /v1/logs>[&follow=1]     kade.logs.wire's format
    GET /node/v1/logs/tasks?app=|task=&previous
    GET /node/v1/metrics/select?match[]=<selector>&start=<ms>&end=<ms>[&want=latest|labels]
                                                                  kade.metrics.wire's format

Only servers may ask: each request carries a server assertion (kade.auth.assertions) signed
for this node and this very request, checked against the keys the servers publish under
`serverkeys/` (read through the store API). The same admission and limits as `/v1/logs`;
a metrics answer carries at most kade.metrics.wire's series and samples (422 beyond).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from kade import model
from kade.admission.logs import LogQueryError, admit_log_query, flag
from kade.admission.metrics import BadData, admit_node_select
from kade.api.closing import until_closing_each
from kade.auth.assertions import HEADER, Refused, issuer_of, public_key, verify
from kade.logs.record import LogLine, LogQuery
from kade.logs.source import LogSource, Unanswered
from kade.logs.wire import KEEPALIVE, Follower, dump_lines, dump_tasks, follow_rows
from kade.metrics.tsdb import TSDB
from kade.metrics.wire import TooLarge, select_answer
from kade.store.base import Store, StoreError

log = logging.getLogger("kade.node_api")

KEEPALIVE_SECONDS = 15.0
REFRESH_SECONDS = 2.0  # at most one re-read of serverkeys/ this often (a server restarted)


class ServerKeys:
    """The servers' public keys, read from `serverkeys/` and read again when a request is
    signed by a server not known yet or with a key that changed (the server restarted)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self.keys: dict[str, Ed25519PublicKey] = {}
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            if self._read_at is not None and self.clock() - self._read_at < REFRESH_SECONDS:
                return
            self._read_at = self.clock()
            entries, _ = await self.store.range(model.SERVERKEYS)
            found, _bad = model.decode_all(entries, model.ServerKey)
            keys: dict[str, Ed25519PublicKey] = {}
            for record in found:
                try:
                    keys[record.server] = public_key(record.public_key)
                except ValueError as e:
                    log.warning("serverkeys/%s: %s", record.server, e)
            self.keys = keys


def node_api(source: LogSource, node: str, keys: ServerKeys,
             closing: asyncio.Event, clock: Callable[[], float] = time.time,
             metrics: TSDB | None = None) -> Starlette:
    async def authorize(request: Request) -> None:
        token = request.headers.get(HEADER)
        query = request.scope.get("query_string", b"").decode("latin-1")
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = raw.decode("latin-1") + (f"?{query}" if query else "")
        issuer = issuer_of(token) if token else None
        try:
            verify(token, keys.keys, audience=node, method=request.method, path=path,
                   now=clock())
            return
        except Refused as e:
            # a key not read yet, or one a restarted server made: read the keys again once
            if issuer is None or e.status != 401 or "expired" in str(e):
                raise
        try:
            await keys.refresh()
        except StoreError as e:
            raise Refused(503, f"cannot read the servers' keys: {e}") from None
        verify(token, keys.keys, audience=node, method=request.method, path=path, now=clock())

    def admitted(request: Request) -> LogQuery:
        return admit_log_query(request.query_params.multi_items(), clock())

    async def logs(request: Request) -> Response:
        try:
            await authorize(request)
            query = admitted(request)
            follow = flag(request.query_params.get("follow"), "follow")
        except Refused as e:
            return _message(e.status, str(e))
        except LogQueryError as e:
            return _message(400, str(e))
        if not follow:
            return Response(dump_lines(await source.query(query)),
                            media_type="application/json")
        start_ns = time.time_ns()
        history = await source.query(query)
        follower = Follower(history, query, start_ns)
        rows = follow_rows(history, _only_lines(source.follow(follower.live_query)), follower)
        return StreamingResponse(_keepalive(rows, closing), media_type="application/x-ndjson")

    async def tasks(request: Request) -> Response:
        try:
            await authorize(request)
            query = admitted(request)
        except Refused as e:
            return _message(e.status, str(e))
        except LogQueryError as e:
            return _message(400, str(e))
        found = await source.tasks(app=query.app, task=query.task, previous=query.previous)
        return Response(dump_tasks(found), media_type="application/json")

    async def metrics_select(request: Request) -> Response:
        try:
            await authorize(request)
            asked = admit_node_select(request.query_params.multi_items())
        except Refused as e:
            return _message(e.status, str(e))
        except BadData as e:
            return _message(400, str(e))
        if metrics is None:
            return _message(404, f"node {node} keeps no metrics")
        try:
            body = await asyncio.to_thread(select_answer, metrics, asked.selectors,
                                           asked.start, asked.end, asked.want)
        except TooLarge as e:
            return _message(422, str(e))
        return Response(body, media_type="application/octet-stream")

    async def ping(_: Request) -> Response:
        return Response("pong", media_type="text/plain")

    return Starlette(routes=[Route("/node/v1/logs", logs), Route("/node/v1/logs/tasks", tasks),
                             Route("/node/v1/metrics/select", metrics_select),
                             Route("/ping", ping)])


async def _only_lines(items: AsyncIterator[LogLine | Unanswered]) -> AsyncIterator[LogLine]:
    """A node's store yields lines only (a fan-out's notices are not a node's to send)."""
    try:
        async for item in items:
            if isinstance(item, LogLine):
                yield item
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


async def _keepalive(rows: AsyncIterator[bytes], closing: asyncio.Event
                     ) -> AsyncIterator[bytes]:
    async for row in until_closing_each(rows, closing, KEEPALIVE_SECONDS):
        yield KEEPALIVE if row is None else row


def _message(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)
