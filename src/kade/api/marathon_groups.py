"""`/v2/groups`: Marathon's groups of apps, with nested groups and dependencies.

A group is not a record of its own: it is the apps under its id (`kade.spec.groups`). A
definition is flattened, every app passes `kade.admission`, and only when all are accepted
are they written, in dependency order; the scheduler then starts each app once its
dependencies are healthy. A rejected definition changes nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from kade.admission import LIMITS, ContainerPolicy, admit_apps
from kade.api.marathon import Snapshot, deployment_of, document
from kade.api.security import principal_of
from kade.auth import redact_env
from kade.deployments import intent
from kade.model import iso
from kade.spec import AppSpec, SpecError
from kade.spec.groups import dependency_order, flatten, is_under, resolve_id, tree
from kade.store.base import Store


def refused(e: SpecError) -> JSONResponse:
    """A group that cannot be deployed: every problem, each named by its place or app."""
    return JSONResponse({"message": f"invalid group definition: {e}", "details": e.problems},
                        status_code=422)


def groups_router(store: Store, *, clock: Callable[[], float] = time.time,
                  policy: ContainerPolicy | None = None) -> APIRouter:
    r = APIRouter(prefix="/v2", tags=["marathon"])
    container_policy = policy or ContainerPolicy()

    async def admitted(apps: list[dict[str, Any]]) -> list[AppSpec]:
        """Every app of the group, or a SpecError with every problem named by its app."""
        found = await asyncio.to_thread(admit_apps, apps, policy=container_policy)
        return [a.app for a in found]

    async def write(apps: list[AppSpec], now: float) -> JSONResponse | None:
        last = None
        for app in apps:  # already in dependency order
            stored, _ = await intent.put_app(store, app, now)
            last = stored
        if last is None:
            return None
        return JSONResponse({"version": last.version,
                             "deploymentId": await deployment_of(store, last.id)})

    def group_json(snap: Snapshot, node: dict[str, Any], now: float,
                   request: Request) -> dict[str, Any]:
        who = principal_of(request)
        apps = [redact_env(snap.app(a, now, set()), who) for a in node["apps"]]
        groups = [group_json(snap, g, now, request) for g in node["groups"]]
        versions = [a["version"] for a in apps if a.get("version")] + \
            [g["version"] for g in groups if g.get("version")]
        out: dict[str, Any] = {"id": node["id"], "apps": apps, "groups": groups,
                               "dependencies": [], "pods": []}
        if versions:
            out["version"] = max(versions)
        return out

    @r.get("/groups")
    async def root(request: Request) -> dict[str, Any]:
        snap = await Snapshot.load(store)
        return group_json(snap, tree(snap.apps, "/"), clock(), request)

    @r.get("/groups/{path:path}")
    async def one(path: str, request: Request) -> dict[str, Any]:
        group_id = resolve_id(path, "/")
        snap = await Snapshot.load(store)
        if group_id != "/" and not any(is_under(a, group_id) and a != group_id
                                       for a in snap.apps):
            raise HTTPException(404, f"Group '{group_id}' does not exist")
        return group_json(snap, tree(snap.apps, group_id), clock(), request)

    @r.post("/groups", status_code=201)
    async def create(request: Request) -> JSONResponse:
        try:
            return await create_group(await document(request, "group"))
        except SpecError as e:
            return refused(e)

    async def create_group(data: Any) -> JSONResponse:
        snap = await Snapshot.load(store)
        flat = flatten(data, known=snap.apps)
        taken = sorted(a for a in snap.apps if is_under(a, flat.id))
        if taken:
            raise HTTPException(409, f"group {flat.id} already exists (it has {taken[0]}): "
                               "use PUT /v2/groups" + flat.id)
        answer = await write(await admitted(flat.apps), clock())
        if answer is None:
            raise HTTPException(422, f"group {flat.id} has no apps: kade keeps groups as "
                               "the apps under their id")
        answer.status_code = 201
        return answer

    @r.put("/groups/{path:path}")
    async def update(path: str, request: Request) -> JSONResponse:
        try:
            return await update_group(resolve_id(path, "/"), await document(request, "group"))
        except SpecError as e:
            return refused(e)

    async def update_group(group_id: str, data: Any) -> JSONResponse:
        if not isinstance(data, dict):
            raise HTTPException(422, "invalid group definition: must be an object")
        snap = await Snapshot.load(store)
        mine = [a for a in snap.apps if is_under(a, group_id) and a != group_id]
        now = clock()
        if "scaleBy" in data:
            return await scale(group_id, mine, data["scaleBy"], now)
        if set(data) <= {"id", "version"} and "version" in data:
            raise HTTPException(400, "version: rolling a group back is not supported; roll "
                                "back each app (PUT /v2/apps/<id> with its version)")
        outside = {a for a in snap.apps if a not in mine}
        flat = flatten(data, group_id=group_id, known=outside)
        apps = await admitted(flat.apps)
        keep = {a.id for a in apps}
        answer = await write(apps, now)
        if "apps" in data or "groups" in data:  # the definition replaces the group
            gone = [a for a in mine if a not in keep]
            deps = {a: snap.apps[a].dependencies for a in gone}
            for app_id in reversed(dependency_order(deps)):
                await intent.delete_app(store, app_id, now)
                answer = answer or JSONResponse({
                    "version": iso(now), "deploymentId": await deployment_of(store, app_id)})
        if answer is None:
            return JSONResponse({"version": iso(now), "deploymentId": ""})
        if not mine:
            answer.status_code = 201
        return answer

    async def scale(group_id: str, mine: list[str], factor: Any, now: float) -> JSONResponse:
        if isinstance(factor, bool) or not isinstance(factor, int | float) or \
                not math.isfinite(factor) or factor < 0:
            raise HTTPException(400, "scaleBy: must be a finite number >= 0")
        if not mine:
            raise HTTPException(404, f"Group '{group_id}' does not exist")
        snap = await Snapshot.load(store)
        for app_id in mine:  # every count within bounds before any is written
            wanted = math.ceil(snap.apps[app_id].instances * factor)
            if wanted > LIMITS.max_instances:
                raise HTTPException(400, f"scaleBy: {factor} would give {app_id} more than "
                                    f"the {LIMITS.max_instances} instances accepted")
        last = ""
        for app_id in mine:
            await intent.update_app(
                store, app_id,
                lambda a: a.model_copy(update={"instances": math.ceil(a.instances * factor)}),
                now, kind="scale")
            last = app_id
        return JSONResponse({"version": iso(now), "deploymentId": await deployment_of(store, last)})

    @r.delete("/groups/{path:path}")
    async def delete(path: str) -> JSONResponse:
        group_id = resolve_id(path, "/")
        snap = await Snapshot.load(store)
        mine = {a: snap.apps[a].dependencies for a in snap.apps
                if is_under(a, group_id) and a != group_id}
        if not mine:
            raise HTTPException(404, f"Group '{group_id}' does not exist")
        now = clock()
        last = ""
        for app_id in reversed(dependency_order(mine)):  # dependents go first
            await intent.delete_app(store, app_id, now)
            last = app_id
        return JSONResponse({"version": iso(now), "deploymentId": await deployment_of(store, last)})

    return r
