"""`/v1/logs`: the output of an app's tasks (every instance merged by time) or of one task,
also long after its container is gone.

    GET /v1/logs?app=/shop/web|task=…&since&until&tail&grep&q&stream&where…&previous
             &format=text|json                  text: `<task> <line>` (one task: the line)
             &follow=1                          server-sent events: the lines, then new ones
             &download=1                        the same answer, as a file to save
    GET /v1/logs/tasks?app=|task=&previous      the tasks: started, ended, exit code, reason
    GET /v1/tasks/{id}/logs?tail&follow         one task's lines as plain text

Lines come from a `LogSource`: the node's store on `kade up`, the fan-out to every node on a
`kade server`. A node that did not answer is named: a `X-Kade-Unanswered` header and, in JSON,
a last object `{"unanswered": [...]}` (in a stream, an `unanswered` event). Every query is
admitted by `kade.admission.logs` first. Reading needs a `read` token.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from kade.admission.logs import LogQueryError, admit_log_query, flag, output_format
from kade.api.closing import closing_event, until_closing_each
from kade.logs.record import MAX_TAIL, LogLine, LogQuery, TaskLog
from kade.logs.source import LogSource, Unanswered, unanswered_of
from kade.logs.text import (
    by_task,
    line_text,
    task_json,
    unanswered_json,
    unanswered_text,
)

KEEPALIVE_SECONDS = 15.0
FOLLOW_TAIL = 100  # lines of history a follow starts with when it names no tail or since
UNANSWERED_HEADER = "X-Kade-Unanswered"


def _admit(request: Request, now: float) -> LogQuery:
    try:
        return admit_log_query(request.query_params.multi_items(), now)
    except LogQueryError as e:
        raise HTTPException(400, str(e)) from None


def default_tail(query: LogQuery, follow: bool) -> LogQuery:
    """A query with neither `tail` nor `since` reads the newest lines (all of them up to
    the cap), not the oldest; a follow starts with the last few."""
    if query.tail is None and query.since is None:
        return dataclasses.replace(query, tail=FOLLOW_TAIL if follow else MAX_TAIL)
    return query


def logs_router(source: LogSource, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/logs")
    async def logs(request: Request) -> Response:
        """Lines of an app or a task: text, JSON lines, or (follow) server-sent events."""
        query = _admit(request, clock())
        params = request.query_params
        follow = _flag(params.get("follow"), "follow")
        query = default_tail(query, follow)
        if follow:
            return StreamingResponse(
                sse(source.follow(query), closing_event(request.app)),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        as_json = output_format(params.get("format")) == "json"
        lines = await _query(source, query)
        missing = unanswered_of(lines)
        tasks: Sequence[TaskLog] = ()
        if query.previous and not as_json:
            tasks = await source.tasks(app=query.app, task=query.task, previous=True)
            missing = (*missing, *unanswered_of(tasks))
        headers = _unanswered_header(missing)
        if _flag(params.get("download"), "download"):
            when = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
            headers["Content-Disposition"] = attachment(
                "logs", query.app or query.task or "", when,
                suffix="ndjson" if as_json else "txt")
        if as_json:
            return Response(json_lines(lines, missing), media_type="application/x-ndjson",
                            headers=headers)
        if query.previous:
            text = list(by_task(lines, tasks))
        else:
            text = [line_text(line, prefixed=query.app is not None) for line in lines]
        return Response("".join(f"{t}\n" for t in text), media_type="text/plain",
                        headers=headers)

    @r.get("/v1/logs/tasks")
    async def tasks(request: Request) -> Response:
        """The tasks whose output is kept, with how each ended."""
        query = _admit(request, clock())
        found = await source.tasks(app=query.app, task=query.task, previous=query.previous)
        missing = unanswered_of(found)
        body = {"tasks": [task_json(t) for t in found], **unanswered_json(missing)}
        return Response(json.dumps(body), media_type="application/json",
                        headers=_unanswered_header(missing))

    @r.get("/v1/tasks/{task_id}/logs")
    async def task_logs(request: Request, task_id: str, follow: bool = False,
                        tail: int | None = None) -> Response:
        """One task's lines as plain text (the older form of `/v1/logs?task=`)."""
        if tail is not None and not 0 <= tail <= MAX_TAIL:
            raise HTTPException(400, f"tail: must be between 0 and {MAX_TAIL}")
        params = [("task", task_id)] + ([("tail", str(tail))] if tail is not None else [])
        try:
            query = default_tail(admit_log_query(params, clock()), follow)
        except LogQueryError as e:
            raise HTTPException(400, str(e)) from None
        if follow:
            if not await source.tasks(task=task_id):
                raise _no_output(task_id)
            return StreamingResponse(_plain(source.follow(query), closing_event(request.app)),
                                     media_type="text/plain")
        lines = await _query(source, query)
        if not lines and not await source.tasks(task=task_id):
            raise _no_output(task_id)
        return Response("".join(f"{line.line}\n" for line in lines), media_type="text/plain",
                        headers=_unanswered_header(unanswered_of(lines)))

    return r


def attachment(*parts: str, suffix: str) -> str:
    """`attachment; filename="logs-shop-web-20261130T170000Z.txt"`: a browser saves the
    answer (a download link of the web interface) under a name made of `parts`, reduced to
    letters, digits and `_.-` (a header carries no quote, line break or other script)."""
    name = "-".join(p for p in (re.sub(r"[^A-Za-z0-9_.-]+", "-", part).strip("-")[:100]
                                for part in parts) if p)
    return f'attachment; filename="{name or "download"}.{suffix}"'


def _no_output(task_id: str) -> HTTPException:
    return HTTPException(404, f"task {task_id}: no output is kept for it (unknown, not started "
                              "yet, or past its app's log retention)")


async def _query(source: LogSource, query: LogQuery) -> Sequence[LogLine]:
    """The lines; a query the store will not answer (it would read too many lines) is 400."""
    try:
        return await source.query(query)
    except ValueError as e:
        raise HTTPException(400, str(e)) from None


def _flag(value: str | None, name: str) -> bool:
    try:
        return flag(value, name)
    except LogQueryError as e:
        raise HTTPException(400, str(e)) from None


def _unanswered_header(missing: Iterable[Unanswered]) -> dict[str, str]:
    names = sorted({m.node for m in missing})
    return {UNANSWERED_HEADER: ",".join(names)} if names else {}


def json_lines(lines: Iterable[LogLine], missing: Sequence[Unanswered]) -> bytes:
    out = [json.dumps(line.as_json(), ensure_ascii=False, separators=(",", ":"))
           for line in lines]
    if missing:
        out.append(json.dumps(unanswered_json(missing), separators=(",", ":")))
    return "".join(f"{o}\n" for o in out).encode()


async def sse(items: AsyncIterator[LogLine | Unanswered], closing: Any) -> AsyncIterator[bytes]:
    """Lines as server-sent events (`event: line`, the line's JSON), an `unanswered` event
    per node that did not answer, a comment as keepalive; ends when the server stops."""
    yield b": kade logs\n\n"
    try:
        async for item in until_closing_each(items, closing, KEEPALIVE_SECONDS):
            if item is None:
                yield b": keepalive\n\n"
            elif isinstance(item, Unanswered):
                data = json.dumps({"node": item.node, "reason": item.reason})
                yield f"event: unanswered\ndata: {data}\n\n".encode()
            else:
                data = json.dumps(item.as_json(), ensure_ascii=False, separators=(",", ":"))
                yield f"event: line\ndata: {data}\n\n".encode()
    except ValueError as e:  # the store would not answer the query (too broad)
        yield f"event: error\ndata: {json.dumps({'message': str(e)})}\n\n".encode()


async def _plain(items: AsyncIterator[LogLine | Unanswered], closing: Any
                 ) -> AsyncIterator[bytes]:
    async for item in until_closing_each(items, closing, KEEPALIVE_SECONDS):
        if isinstance(item, LogLine):
            yield f"{item.line}\n".encode()
        elif isinstance(item, Unanswered):
            yield f"# {unanswered_text(item)}\n".encode()
