"""`/v1/apps` and `/v1/tasks`: Marathon's app API, with Marathon's field names.

App ids contain slashes, so app routes take the rest of the path and split off a trailing
action (`/scale`, `/restart`, `/versions[/<v>]`, `/diff`, `/plan`), as Marathon does;
admission refuses ids with such a segment. Only HTTP is here: every definition is checked by
`kade.admission`.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from kade import model
from kade.admission import (
    LIMITS,
    Admitted,
    BodyTooLarge,
    ContainerPolicy,
    Limits,
    admit_body,
    admit_scale,
    parse_body,
)
from kade.admission.located import Located
from kade.api.app_plan import plan_json
from kade.api.paths import split_app_path
from kade.api.security import principal_of
from kade.api.views import app_json, group_tasks, quarantined_app_json, task_json
from kade.auth import Principal, can_deploy_app, redact_env
from kade.deployments import intent
from kade.model import QueueEntry, Task, TaskStatus, Unreadable, decode, decode_all
from kade.spec import AppSpec, SpecError, normalize_id
from kade.store.base import Store


async def snapshot(store: Store) -> tuple[dict[str, AppSpec], list[Task], dict[str, TaskStatus],
                                       dict[str, QueueEntry], dict[str, Unreadable]]:
    """Every app, task, status and queue record, decoded under the one bad-record policy:
    unreadable apps are returned apart (listed as quarantined), other unreadable records left
    out. The API's lists and the web interface's pages read through this."""
    apps_e, _ = await store.range(model.APPS)
    tasks_e, _ = await store.range(model.TASKS)
    status_e, _ = await store.range(model.STATUS)
    queue_e, _ = await store.range(model.QUEUE)
    good, bad = decode_all(apps_e, AppSpec)
    apps = {app.id: app for app in good}
    quarantined = {model.app_id_of_key(b.key): b for b in bad}
    tasks = decode_all(tasks_e, Task)[0]
    statuses = {s.task_id: s for s in decode_all(status_e, TaskStatus)[0]}
    queue = {q.app_id: q for q in decode_all(queue_e, QueueEntry)[0]}
    return apps, tasks, statuses, queue, quarantined


async def read_app(store: Store, app_id: str, now: float, *, embed: bool = True
                   ) -> tuple[dict[str, Any], AppSpec | None]:
    """One app as `GET /v1/apps/<id>` shows it (its tasks embedded when `embed`), and its
    definition (None when its record is unreadable: it is shown as quarantined). 404 when it
    does not exist. The API and the web interface's app page read through this."""
    try:
        app: AppSpec | Unreadable | None = await intent.get_app(store, app_id)
    except intent.Quarantined as e:
        app = e.bad
    if app is None:
        raise HTTPException(404, f"app {app_id} does not exist")
    tasks_e, _ = await store.range(model.TASKS)
    tasks = [t for t in decode_all(tasks_e, Task)[0] if t.app_id == app_id]
    statuses = {}
    for t in tasks:
        entry = await store.get(model.status_key(t.id))
        status = decode(entry, TaskStatus) if entry is not None else None
        if isinstance(status, TaskStatus):
            statuses[t.id] = status
    group = group_tasks(tasks, statuses).get(app_id)
    if isinstance(app, Unreadable):
        return quarantined_app_json(app, group, embed_tasks=embed), None
    queue_entry = await store.get(model.queue_key(app.id))
    queue = decode(queue_entry, QueueEntry) if queue_entry else None
    return app_json(app, group, queue if isinstance(queue, QueueEntry) else None, now,
                    embed_tasks=embed), app


async def list_apps_json(store: Store, now: float, who: Principal | None, *,
                         embed: bool = False) -> list[dict[str, Any]]:
    """Every app as `GET /v1/apps` lists it, environment hidden from who may not read it.
    The API and the web interface's pages list apps through this."""
    apps, tasks, statuses, queue, quarantined = await snapshot(store)
    groups = group_tasks(tasks, statuses)
    return [redact_env(app_json(apps[i], groups.get(i), queue.get(i), now, embed_tasks=embed),
                       who)
            if i in apps else
            quarantined_app_json(quarantined[i], groups.get(i), embed_tasks=embed)
            for i in sorted(apps.keys() | quarantined.keys())]


def apps_router(store: Store, *,
                clock: Callable[[], float] = time.time, policy: ContainerPolicy | None = None,
                limits: Limits = LIMITS) -> APIRouter:
    """`policy`: what app definitions may ask of the host (None: the defaults, deny)."""
    r = APIRouter()
    container_policy = policy or ContainerPolicy()

    async def read_capped(request: Request) -> bytes:
        """The body, never more than the limit read (a 10 MB body costs 1 MiB at most)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise _too_large(limits.max_body_bytes)
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limits.max_body_bytes:
                raise _too_large(limits.max_body_bytes)
        return bytes(raw)

    async def admitted(request: Request, app_id: str | None = None,
                       runnable: bool = False) -> Admitted:
        """The body admitted; with `runnable`, also runnable by a registered node. A refusal
        names each problem's field and its line in the body (`Located`)."""
        raw = await read_capped(request)
        try:  # off the event loop: a large definition must not stall other requests
            new = await asyncio.to_thread(admit_body, raw, policy=container_policy,
                                          app_id=app_id, limits=limits)
            if runnable:
                await intent.refuse_unrunnable(store, new.app)
            return new
        except BodyTooLarge:
            raise
        except SpecError as e:
            text = raw.decode("utf-8", errors="replace")
            raise await asyncio.to_thread(Located, e, text) from None

    async def one_app(app_id: str, embed: bool = True) -> dict[str, Any]:
        return (await read_app(store, app_id, clock(), embed=embed))[0]

    @r.get("/v1/apps")
    async def list_apps(request: Request, embed: str | None = None) -> dict[str, Any]:
        return {"apps": await list_apps_json(store, clock(), principal_of(request),
                                             embed=embed in ("apps.tasks", "tasks"))}

    @r.post("/v1/apps", status_code=201)
    async def create_app(request: Request) -> JSONResponse:
        new = await admitted(request, runnable=True)
        if not can_deploy_app(principal_of(request), new.app.id):
            raise HTTPException(403, f"{describe(request)} may not change app {new.app.id}")
        stored, _ = await intent.put_app(store, new.app, clock(), create_only=True)
        body = await one_app(stored.id, embed=False)
        body["warnings"] = new.warnings
        return JSONResponse(body, status_code=201, headers={"Location": f"/v1/apps{stored.id}"})

    @r.get("/v1/apps/{path:path}")
    async def get_app_path(path: str, request: Request) -> Response:
        app_id, action, arg = split_app_path(path)
        who = principal_of(request)
        if action == "":
            return JSONResponse({"app": redact_env(await one_app(app_id), who)})
        if action == "versions":
            if arg:
                app = await intent.get_version(store, app_id, arg)
                if app is None:
                    raise HTTPException(404, f"app {app_id} has no version {arg}")
                return JSONResponse(redact_env(app.model_dump(mode="json", by_alias=True), who))
            versions = await intent.list_versions(store, app_id)
            if not versions:
                raise HTTPException(404, f"app {app_id} does not exist")
            return JSONResponse({"versions": versions})
        if action == "diff":
            return await diff(app_id, request)
        if action == "tasks":
            body = await one_app(app_id)
            return JSONResponse({"tasks": body["tasks"]})
        raise HTTPException(404, f"unknown app action {action!r}")

    async def diff(app_id: str, request: Request) -> Response:
        versions = await intent.list_versions(store, app_id)
        if not versions:
            raise HTTPException(404, f"app {app_id} does not exist")
        to = request.query_params.get("to") or versions[0]
        frm = request.query_params.get("from") or (versions[1] if len(versions) > 1 else to)
        texts = []
        for v in (frm, to):
            app = await intent.get_version(store, app_id, v)
            if app is None:
                raise HTTPException(404, f"app {app_id} has no version {v}")
            wire = redact_env(app.wire(), principal_of(request))
            wire.pop("version", None)
            texts.append(json.dumps(wire, indent=2, sort_keys=True).splitlines(keepends=True))
        out = "".join(difflib.unified_diff(texts[0], texts[1], fromfile=frm, tofile=to))
        return PlainTextResponse(out)

    @r.put("/v1/apps/{path:path}")
    async def put_app(path: str, request: Request) -> JSONResponse:
        app_id, action, _ = split_app_path(path)
        if action:
            raise HTTPException(405, f"PUT is not allowed on /{action}")
        new = await admitted(request, app_id, runnable=True)
        stored, changed = await intent.put_app(store, new.app, clock())
        body = await one_app(stored.id, embed=False)
        body["warnings"] = new.warnings
        body["changed"] = changed
        return JSONResponse(body)

    @r.post("/v1/apps/{path:path}")
    async def app_action(path: str, request: Request) -> JSONResponse:
        app_id, action, _ = split_app_path(path)
        now = clock()
        if action == "plan":
            new = await admitted(request, app_id, runnable=True)
            return JSONResponse(await plan_json(store, new, await snapshot(store), now))
        if action == "scale":
            try:
                instances = admit_scale(parse_body(await read_capped(request), limits=limits),
                                        limits)
            except SpecError as e:
                raise HTTPException(400, str(e)) from None
            stored, _ = await intent.update_app(
                store, app_id, lambda a: a.model_copy(update={"instances": instances}), now,
                kind="scale")
        elif action == "rollback":
            stored = await intent.roll_back(store, app_id, request.query_params.get("version"),
                                            now)
        elif action == "restart":
            stamp = f"{now:.6f}"
            stored, _ = await intent.update_app(
                store, app_id, lambda a: a.model_copy(update={"restarted_at": stamp}), now,
                kind="restart")
        else:
            raise HTTPException(404, f"unknown app action {action!r}")
        return JSONResponse({"app": await one_app(stored.id, embed=False),
                             "version": stored.version})

    @r.delete("/v1/apps/{path:path}")
    async def delete_app(path: str) -> dict[str, Any]:
        app_id, action, _ = split_app_path(path)
        if action:
            raise HTTPException(405, f"DELETE is not allowed on /{action}")
        await intent.delete_app(store, app_id, clock())
        return {"deleted": app_id}

    @r.get("/v1/tasks")
    async def list_tasks(app: str | None = None) -> dict[str, Any]:
        apps, tasks, statuses, _, _ = await snapshot(store)
        if app is not None:
            wanted = normalize_id(app)
            tasks = [t for t in tasks if t.app_id == wanted]
        tasks.sort(key=lambda t: (t.app_id, t.created_at, t.id))
        return {"tasks": [task_json(t, statuses.get(t.id), apps.get(t.app_id)) for t in tasks]}

    @r.delete("/v1/tasks/{task_id}")
    async def kill_task(task_id: str, scale: bool = False) -> dict[str, Any]:
        task = await intent.kill_task(store, task_id, clock(), scale=scale)
        return {"task": task_json(task, None)}

    return r


# Each is also in kade.spec's RESERVED_ID_SEGMENTS, so no app id can contain one.
def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, str(BodyTooLarge(limit)))


def describe(request: Request) -> str:
    who = principal_of(request)
    return who.describe() if who else "this request"
