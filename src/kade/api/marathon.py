"""Marathon's REST API v2 (`/v2/apps`, `/v2/tasks`, `/v2/deployments`, `/v2/queue`,
`/v2/info`, `/v2/leader`) beside kade's `/v1`, so tools written for Marathon (the `marathon`
Python client, marathon-lb, Terraform and Jenkins integrations) work unchanged.

The same writes as `/v1` (`kade.deployments.intent`), every definition through
`kade.admission`; only the answer shapes are Marathon's (`kade.api.marathon_views`). A PUT is
a partial update, as in Marathon: the fields sent replace those of the stored app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

import kade
from kade import model
from kade.admission import Admitted, ContainerPolicy, admit, parse_body
from kade.api.marathon_views import (
    active_count,
    app_labels_match,
    embeds,
    v2_app,
    v2_definition,
    v2_deployment,
    v2_queue_item,
    v2_task,
)
from kade.api.paths import split_app_path
from kade.api.security import principal_of
from kade.api.views import group_tasks
from kade.auth import can_deploy_app, redact_env
from kade.deployments import intent
from kade.model import Deployment, QueueEntry, Task, TaskStatus, decode, decode_all, iso
from kade.spec import AppSpec, DocumentRefused, normalize_id
from kade.store.base import Store


class Snapshot:
    """Every app, task, status, queue entry and deployment, decoded under the one
    bad-record policy (unreadable records are left out of /v2; /v1 lists them)."""

    def __init__(self, apps: dict[str, AppSpec], tasks: list[Task],
                 statuses: dict[str, TaskStatus], queue: dict[str, QueueEntry],
                 deployments: list[Deployment]) -> None:
        self.apps = apps
        self.tasks = tasks
        self.statuses = statuses
        self.queue = queue
        self.deployments = deployments
        self.groups = group_tasks(tasks, statuses)

    @classmethod
    async def load(cls, store: Store) -> Snapshot:
        apps_e, _ = await store.range(model.APPS)
        tasks_e, _ = await store.range(model.TASKS)
        status_e, _ = await store.range(model.STATUS)
        queue_e, _ = await store.range(model.QUEUE)
        deps_e, _ = await store.range(model.DEPLOYMENTS)
        return cls(
            {a.id: a for a in decode_all(apps_e, AppSpec)[0]},
            decode_all(tasks_e, Task)[0],
            {s.task_id: s for s in decode_all(status_e, TaskStatus)[0]},
            {q.app_id: q for q in decode_all(queue_e, QueueEntry)[0]},
            decode_all(deps_e, Deployment)[0],
        )

    def app(self, app_id: str, now: float, want: set[str]) -> dict[str, Any]:
        app = self.apps[app_id]
        return v2_app(app, self.groups.get(app_id), self.queue.get(app_id), now,
                      deployments=self.deployments, tasks="tasks" in want,
                      last_failure="lastTaskFailure" in want)


async def deployment_of(store: Store, app_id: str) -> str:
    """The id of the app's newest deployment ("" if it never had one): what a write of the
    app just started, or the one still rolling out when nothing changed."""
    entries, _ = await store.range(model.DEPLOYMENTS)
    deps = [d for d in decode_all(entries, Deployment)[0] if d.app_id == app_id]
    return max(deps, key=lambda d: d.started_at).id if deps else ""


async def document(request: Request, what: str) -> Any:
    """A request body as plain data, under admission's document rules (the front door caps
    its size); 400 naming the problem."""
    try:
        return parse_body(await request.body())
    except DocumentRefused as e:
        raise HTTPException(400, f"invalid {what} definition: {e}") from None


def marathon_router(store: Store, *, clock: Callable[[], float] = time.time,
                    policy: ContainerPolicy | None = None) -> APIRouter:
    r = APIRouter(prefix="/v2", tags=["marathon"])
    container_policy = policy or ContainerPolicy()

    async def admitted(data: Any, app_id: str | None = None) -> Admitted:
        return await asyncio.to_thread(admit, data, policy=container_policy, app_id=app_id)

    def check_scope(request: Request, app_id: str) -> None:
        if not can_deploy_app(principal_of(request), app_id):
            who = principal_of(request)
            raise HTTPException(403, f"{who.describe() if who else 'this request'} may not "
                                f"change app {app_id}")

    async def result(app_id: str, version: str | None, status: int = 200) -> JSONResponse:
        return JSONResponse({"version": version or iso(clock()),
                             "deploymentId": await deployment_of(store, app_id)},
                            status_code=status)

    # -- apps ------------------------------------------------------------------------------

    @r.get("/apps")
    async def list_apps(request: Request, id: str | None = None, label: str | None = None,
                        cmd: str | None = None) -> dict[str, Any]:
        snap = await Snapshot.load(store)
        want = embeds(request.query_params.getlist("embed"))
        now = clock()
        who = principal_of(request)
        out = []
        for app_id in sorted(snap.apps):
            app = snap.apps[app_id]
            if id is not None and id.strip("/") not in app_id:
                continue
            if label is not None and not app_labels_match(app.labels, label):
                continue
            if cmd is not None and cmd not in (app.cmd or ""):
                continue
            out.append(redact_env(snap.app(app_id, now, want), who))
        return {"apps": out}

    @r.post("/apps", status_code=201)
    async def create_app(request: Request) -> JSONResponse:
        data = await document(request, "app")
        new = await admitted(_from_client(data) if isinstance(data, dict) else data)
        check_scope(request, new.app.id)
        stored, _ = await intent.put_app(store, new.app, clock(), create_only=True)
        snap = await Snapshot.load(store)
        body = snap.app(stored.id, clock(), set())
        return JSONResponse(body, status_code=201, headers={"Location": f"/v2/apps{stored.id}"})

    async def merged(app_id: str, data: dict[str, Any]) -> tuple[Admitted, bool]:
        """A PUT's fields over the stored app (Marathon's partial update), admitted; and
        whether the app is new."""
        data = _from_client(data)
        try:
            current = await intent.get_app(store, app_id)
        except intent.Quarantined:
            current = None  # replaced whole, as /v1 does
        if current is None:
            return await admitted(data, app_id), True
        whole = {**current.wire(), **data}
        whole.pop("version", None)
        return await admitted(whole, app_id), False

    @r.put("/apps")
    async def put_apps(request: Request) -> JSONResponse:
        """Several apps at once (Marathon's batch update): all are admitted before any is
        written."""
        data = await document(request, "app")
        if not isinstance(data, list) or not all(
                isinstance(a, dict) and isinstance(a.get("id"), str) for a in data):
            raise HTTPException(422, "invalid app definitions: send a list of apps with ids")
        news = []
        for item in data:
            app_id = normalize_id(item["id"])
            check_scope(request, app_id)
            news.append((await merged(app_id, item))[0])
        now = clock()
        last = None
        for new in news:
            last, _ = await intent.put_app(store, new.app, now)
        if last is None:
            return JSONResponse({"version": iso(now), "deploymentId": ""})
        return await result(last.id, last.version)

    @r.get("/apps/{path:path}")
    async def get_app(path: str, request: Request) -> Response:
        app_id, action, arg = split_app_path(path)
        who = principal_of(request)
        if action == "versions":
            if arg:
                version = await intent.get_version(store, app_id, arg)
                if version is None:
                    raise HTTPException(404, f"app {app_id} has no version {arg}")
                return JSONResponse(redact_env(v2_definition(version), who))
            versions = await intent.list_versions(store, app_id)
            if not versions:
                raise HTTPException(404, f"app {app_id} does not exist")
            return JSONResponse({"versions": versions})
        snap = await Snapshot.load(store)
        if app_id not in snap.apps:
            await _readable(store, app_id)
            raise HTTPException(404, f"App '{app_id}' does not exist")
        if action == "tasks":
            app = snap.apps[app_id]
            group = snap.groups.get(app_id)
            return JSONResponse({"tasks": [v2_task(t, s, app)
                                           for t, s in (group.tasks if group else [])]})
        if action:
            raise HTTPException(404, f"unknown app action {action!r}")
        body = snap.app(app_id, clock(), {"tasks", "deployments", "lastTaskFailure"})
        return JSONResponse({"app": redact_env(body, who)})

    @r.put("/apps/{path:path}")
    async def put_app(path: str, request: Request) -> JSONResponse:
        app_id, action, _ = split_app_path(path)
        if action:
            raise HTTPException(405, f"PUT is not allowed on /{action}")
        data = await document(request, "app")
        if not isinstance(data, dict):
            raise HTTPException(422, "invalid app definition: app definition must be an object")
        now = clock()
        if set(data) == {"version"}:  # Marathon's rollback: PUT {"version": "<old>"}
            stored = await intent.roll_back(store, app_id, str(data["version"]), now)
            return await result(app_id, stored.version)
        new, created = await merged(app_id, data)
        if created:
            stored, _ = await intent.put_app(store, new.app, now)
            return await result(app_id, stored.version, 201)
        kind: intent.DeploymentKind = "scale" if set(data) <= {"id", "instances"} else "deploy"
        stored, _ = await intent.put_app(store, new.app, now, kind=kind)
        return await result(app_id, stored.version)

    @r.post("/apps/{path:path}")
    async def app_action(path: str) -> JSONResponse:
        app_id, action, _ = split_app_path(path)
        if action != "restart":
            raise HTTPException(404, f"unknown app action {action!r}")
        now = clock()
        stored, _ = await intent.update_app(
            store, app_id, lambda a: a.model_copy(update={"restarted_at": f"{now:.6f}"}), now,
            kind="restart")
        return await result(app_id, stored.version)

    @r.delete("/apps/{path:path}")
    async def delete_app(path: str, request: Request, scale: bool = False,
                         host: str | None = None) -> JSONResponse:
        app_id, action, arg = split_app_path(path)
        now = clock()
        if action == "":
            await intent.delete_app(store, app_id, now)
            return await result(app_id, iso(now))
        if action != "tasks":
            raise HTTPException(405, f"DELETE is not allowed on /{action}")
        snap = await Snapshot.load(store)
        if app_id not in snap.apps:
            raise HTTPException(404, f"App '{app_id}' does not exist")
        app = snap.apps[app_id]
        if arg:  # one task
            task = next((t for t in snap.tasks if t.id == arg and t.app_id == app_id), None)
            if task is None:
                raise HTTPException(404, f"Task '{arg}' does not exist")
            killed = await intent.kill_task(store, arg, now, scale=scale)
            if scale:
                return await result(app_id, None)
            return JSONResponse({"task": v2_task(killed, snap.statuses.get(arg), app)})
        chosen = [t for t in snap.tasks if t.app_id == app_id and t.desired == "run"
                  and (host is None or t.host == host or t.node == host)]
        killed_tasks = [await intent.kill_task(store, t.id, now, scale=scale) for t in chosen]
        if scale:
            return await result(app_id, None)
        return JSONResponse({"tasks": [v2_task(t, snap.statuses.get(t.id), app)
                                       for t in killed_tasks]})

    # -- tasks -----------------------------------------------------------------------------

    @r.get("/tasks")
    async def list_tasks(request: Request) -> dict[str, Any]:
        snap = await Snapshot.load(store)
        wanted = {s.lower() for s in request.query_params.getlist("status")}
        out = []
        for task in sorted(snap.tasks, key=lambda t: (t.app_id, t.created_at, t.id)):
            body = v2_task(task, snap.statuses.get(task.id), snap.apps.get(task.app_id))
            if wanted and body["state"].removeprefix("TASK_").lower() not in wanted:
                continue
            out.append(body)
        return {"tasks": out}

    @r.post("/tasks/delete")
    async def delete_tasks(request: Request, scale: bool = False) -> JSONResponse:
        data = await document(request, "app")
        ids = data.get("ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise HTTPException(400, "ids: must be a list of task ids")
        for task_id in ids:  # all known before any is killed: a bad id changes nothing
            if await store.get(model.task_key(task_id)) is None:
                raise HTTPException(404, f"Task '{task_id}' does not exist")
        now = clock()
        killed = [await intent.kill_task(store, task_id, now, scale=scale) for task_id in ids]
        if scale and killed:
            return await result(killed[-1].app_id, None)
        return JSONResponse({})

    # -- deployments -----------------------------------------------------------------------

    @r.get("/deployments")
    async def list_deployments() -> list[dict[str, Any]]:
        entries, _ = await store.range(model.DEPLOYMENTS)
        running = [d for d in decode_all(entries, Deployment)[0] if d.status == "running"]
        running.sort(key=lambda d: d.started_at)
        return [v2_deployment(d) for d in running]

    @r.delete("/deployments/{deployment_id}")
    async def cancel_deployment(deployment_id: str, force: bool = False) -> Response:
        """Without `force` the app rolls back to the version it came from, in a new
        deployment (Marathon answers with it); with `force` the deployment just stops."""
        entry = await store.get(model.deployment_key(deployment_id))
        dep = decode(entry, Deployment) if entry is not None else None
        if entry is None or not isinstance(dep, Deployment) or dep.status != "running":
            raise HTTPException(404, f"DeploymentPlan {deployment_id} does not exist")
        now = clock()
        if force or dep.from_version is None or dep.kind == "destroy":
            ended = dep.model_copy(update={"status": "cancelled", "finished_at": now,
                                           "message": "cancelled"})
            await store.put(entry.key, ended.dump(), expect=entry.mod_revision)
            return Response(status_code=202)
        stored = await intent.roll_back(store, dep.app_id, dep.from_version, now)
        return await result(dep.app_id, stored.version)

    # -- queue, info, leader ---------------------------------------------------------------

    @r.get("/queue")
    async def queue() -> dict[str, Any]:
        snap = await Snapshot.load(store)
        now = clock()
        items = []
        for app_id, entry in sorted(snap.queue.items()):
            app = snap.apps.get(app_id)
            if app is None:
                continue
            group = snap.groups.get(app_id)
            active = active_count(group.tasks if group else [])
            if active < app.instances:
                items.append(v2_queue_item(app, entry, active, now))
        return {"queue": items}

    @r.get("/info")
    async def info(request: Request) -> dict[str, Any]:
        here = request.headers.get("host", "")
        return {
            "name": "kade", "version": kade.__version__, "buildref": "",
            "elected": True, "leader": here, "frameworkId": "kade",
            "marathon_config": {"framework_name": "kade", "hostname": here.split(":")[0],
                                "ha": False},
            "zookeeper_config": {},
            "http_config": {"http_port": _port_of(here)},
        }

    @r.get("/leader")
    async def leader(request: Request) -> dict[str, str]:
        return {"leader": request.headers.get("host", "")}

    return r


async def _readable(store: Store, app_id: str) -> None:
    """Raises Quarantined (409, with the reason) when the app exists but cannot be read:
    /v2 leaves such apps out of its lists, /v1/apps shows them."""
    await intent.get_app(store, app_id)


def _from_client(data: dict[str, Any]) -> dict[str, Any]:
    """What a client sends back of an app it read: `ports` (the service ports of the answer)
    beside `portDefinitions` says nothing more, and is dropped."""
    if "portDefinitions" in data or "container" in data:
        return {k: v for k, v in data.items() if k != "ports"}
    return data


def _port_of(hostport: str) -> int | None:
    _, _, port = hostport.rpartition(":")
    return int(port) if port.isdigit() else None
