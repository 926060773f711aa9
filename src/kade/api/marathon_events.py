"""`/v2/events`: Marathon's event stream, derived from kade's store events.

Marathon clients (marathon-lb, the `marathon` Python client) read `data:` lines whose JSON
carries `eventType`, and resync on `status_update_event`, `health_status_changed_event` and
`api_post_event`. kade's store says what each record now is; a stream remembers the last
state and health it saw of each task and the last status of each deployment, so it reports
changes, not every rewrite (a health result written each interval is not a new event).

Environment values in app definitions are hidden as in `/v1/events` (`kade.auth.redact_env`).
Event ids are store revisions, so `Last-Event-ID` resumes where a client left off.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from kade import model
from kade.api.closing import closing_event, watch_until_closing
from kade.api.marathon_views import deployment_plan, v2_definition, v2_state, v2_task
from kade.api.security import principal_of
from kade.auth import Principal, redact_env
from kade.model import Deployment, Task, TaskStatus, Unreadable, decode, iso
from kade.spec import AppSpec
from kade.store.base import Compacted, Event, Store

KEEPALIVE_SECONDS = 15.0
Out = tuple[str, dict[str, Any]]

_FAILED = {"failed", "cancelled", "superseded"}


class Translator:
    """Turns one stream's store events into Marathon events, remembering what it saw."""

    def __init__(self, principal: Principal | None, clock: Callable[[], float]) -> None:
        self.principal = principal
        self.clock = clock
        self.states: dict[str, str] = {}
        self.health: dict[str, str] = {}
        self.deployments: dict[str, str] = {}

    def event(self, kind: str, **fields: Any) -> Out:
        return kind, {"eventType": kind, "timestamp": iso(self.clock()), **fields}

    def translate(self, event: Event, task: Task | None = None) -> list[Out]:
        """`task`: the task record of a `status/` event, if it still exists."""
        key = event.key
        if key.startswith(model.APPS):
            return self._app(event)
        if key.startswith(model.STATUS) and event.entry is None:  # forgotten: forget it too
            self.states.pop(key[len(model.STATUS):], None)
            self.health.pop(key[len(model.STATUS):], None)
            return []
        if key.startswith(model.STATUS) and event.entry is not None:
            status = decode(event.entry, TaskStatus)
            return [] if isinstance(status, Unreadable) else self._status(status, task)
        if key.startswith(model.DEPLOYMENTS) and event.entry is not None:
            dep = decode(event.entry, Deployment)
            return [] if isinstance(dep, Unreadable) else self._deployment(dep)
        return []

    def _app(self, event: Event) -> list[Out]:
        app_id = model.app_id_of_key(event.key)
        if event.kind == "delete" or event.entry is None:
            return [self.event("app_terminated_event", appId=app_id)]
        app = decode(event.entry, AppSpec)
        if isinstance(app, Unreadable):
            return []
        return [self.event("api_post_event", clientIp="", uri=f"/v2/apps{app.id}",
                            appDefinition=redact_env(v2_definition(app), self.principal))]

    def _status(self, status: TaskStatus, task: Task | None) -> list[Out]:
        out: list[Out] = []
        tid = status.task_id
        where: dict[str, Any] = {"appId": status.app_id, "taskId": tid, "instanceId": tid,
                                 "slaveId": status.node}
        if task is not None:
            view = v2_task(task, status)
            where.update(host=task.host, ports=list(task.host_ports), version=task.version,
                         ipAddresses=view.get("ipAddresses", []))
        if self.states.get(tid) != status.state:
            self.states[tid] = status.state
            out.append(self.event("status_update_event", taskStatus=v2_state(status.state),
                                   message=status.message, **where))
        if status.health != "unknown" and self.health.get(tid) != status.health:
            self.health[tid] = status.health
            out.append(self.event(
                "health_status_changed_event", appId=status.app_id, taskId=tid,
                instanceId=tid, version=where.get("version"),
                alive=status.health == "healthy"))
        if status.state in model.TERMINAL:
            self.states.pop(tid, None)
            self.health.pop(tid, None)
        return out

    def _deployment(self, dep: Deployment) -> list[Out]:
        if self.deployments.get(dep.id) == dep.status:
            return []
        self.deployments[dep.id] = dep.status
        plan = deployment_plan(dep)
        if dep.status == "running":
            current = plan["steps"][0] if plan["steps"] else {"actions": []}
            return [self.event("deployment_info", plan=plan, currentStep=current)]
        self.deployments.pop(dep.id, None)
        if dep.status == "succeeded":
            return [self.event("deployment_success", id=dep.id, plan=plan)]
        if dep.status in _FAILED:
            return [self.event("deployment_failed", id=dep.id, plan=plan,
                                reason=dep.message)]
        return []


def frame(revision: int | None, out: Out) -> bytes:
    kind, body = out
    head = f"id: {revision}\n" if revision is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


def marathon_events_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter()

    # Left out of the OpenAPI description: a stream that never ends is no operation a
    # generated client (or a fuzzer) can call and wait for; docs/marathon.md describes it.
    @r.get("/v2/events", include_in_schema=False)
    async def events(request: Request) -> StreamingResponse:
        wanted = set(request.query_params.getlist("event_type"))
        last = request.headers.get("last-event-id")
        since = int(last) if last and last.isdigit() else await store.revision()
        remote = request.client.host if request.client else ""
        translator = Translator(principal_of(request), clock)
        return StreamingResponse(
            _stream(store, since, translator, wanted, remote, closing_event(request.app)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache, no-store, must-revalidate"})

    return r


async def _stream(store: Store, since: int, translator: Translator, wanted: Collection[str],
                  remote: str, closing: asyncio.Event) -> AsyncIterator[bytes]:
    def keep(out: Out) -> bool:
        return not wanted or out[0] in wanted

    attached = translator.event("event_stream_attached", remoteAddress=remote)
    if keep(attached):
        yield frame(None, attached)
    else:
        yield b": kade event stream\n\n"
    try:
        async for batch in watch_until_closing(store, since, closing, KEEPALIVE_SECONDS):
            if batch is None:
                yield b"\n"  # Marathon's keepalive: an empty line
                continue
            for event in batch:
                task = None
                if event.key.startswith(model.STATUS) and event.entry is not None:
                    entry = await store.get(model.task_key(event.key[len(model.STATUS):]))
                    found = decode(entry, Task) if entry is not None else None
                    task = found if isinstance(found, Task) else None
                for out in translator.translate(event, task):
                    if keep(out):
                        yield frame(event.revision, out)
    except Compacted:
        return  # the client reconnects and resyncs, as after any drop
