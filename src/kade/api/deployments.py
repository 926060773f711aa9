"""`/v1/deployments`: changes being rolled out, their progress, cancel (= roll back).

A deployment record that cannot be read is left out of the list (`/v1/quarantine` shows it)
and answers 409 with the reason when asked for by id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException

from kade import model
from kade.deployments import intent
from kade.model import Deployment, Unreadable, decode, decode_all, iso
from kade.store.base import Store


def deployment_json(dep: Deployment) -> dict[str, Any]:
    return {
        "id": dep.id,
        "appId": dep.app_id,
        "kind": dep.kind,
        "version": dep.version,
        "fromVersion": dep.from_version,
        "status": dep.status,
        "message": dep.message,
        "startedAt": iso(dep.started_at),
        "deadline": iso(dep.deadline),
        "finishedAt": iso(dep.finished_at),
        "progress": {"instances": dep.instances, "updated": dep.updated,
                     "healthy": dep.healthy, "old": dep.old},
        **_steps(dep),
    }


_ACTION = {"deploy": "RestartApplication", "restart": "RestartApplication",
           "rollback": "RestartApplication", "scale": "ScaleApplication",
           "destroy": "StopApplication"}


def _steps(dep: Deployment) -> dict[str, Any]:
    """Marathon's steps of a deployment, as far as kade's rollout has them: tasks of the new
    version started, those healthy, the old ones drained and stopped."""
    if dep.kind == "destroy":
        steps = [("stop every task", dep.old == 0)]
    else:
        steps = [
            (f"start {dep.instances} task(s) of version {dep.version}",
             dep.updated >= dep.instances),
            (f"{dep.instances} task(s) healthy", dep.healthy >= dep.instances),
            ("old tasks drained and stopped", dep.old == 0 and dep.updated >= dep.instances),
        ]
    done = dep.status == "succeeded"
    current = next((i for i, (_, ok) in enumerate(steps) if not ok), len(steps) - 1)
    return {
        "steps": [{"step": i + 1, "description": text, "done": done or ok,
                   "actions": [{"action": _ACTION[dep.kind], "app": dep.app_id}]}
                  for i, (text, ok) in enumerate(steps)],
        "currentStep": len(steps) if done else current + 1,
        "totalSteps": len(steps),
    }


def deployments_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter()

    async def load(deployment_id: str) -> tuple[Deployment, int]:
        entry = await store.get(model.deployment_key(deployment_id))
        if entry is None:
            raise HTTPException(404, f"deployment {deployment_id} does not exist")
        dep = decode(entry, Deployment)
        if isinstance(dep, Unreadable):
            raise HTTPException(409, f"deployment {deployment_id} cannot be read ({dep})")
        return dep, entry.mod_revision

    @r.get("/v1/deployments")
    async def list_deployments(app: str | None = None, all: bool = False) -> dict[str, Any]:
        entries, _ = await store.range(model.DEPLOYMENTS)
        deps = decode_all(entries, Deployment)[0]
        if app is not None:
            deps = [d for d in deps if d.app_id == "/" + app.strip("/")]
        if not all and app is None:
            deps = [d for d in deps if d.status == "running"]
        deps.sort(key=lambda d: d.started_at, reverse=True)
        return {"deployments": [deployment_json(d) for d in deps]}

    @r.get("/v1/deployments/{deployment_id}")
    async def get_deployment(deployment_id: str) -> dict[str, Any]:
        dep, _ = await load(deployment_id)
        return {"deployment": deployment_json(dep)}

    @r.delete("/v1/deployments/{deployment_id}")
    async def cancel(deployment_id: str, force: bool = False) -> dict[str, Any]:
        """Cancel a running deployment: roll the app back to the version it came from
        (Marathon's behaviour); with `force`, leave the app as it is now."""
        dep, mod_revision = await load(deployment_id)
        if dep.status != "running":
            raise HTTPException(409, f"deployment {deployment_id} is {dep.status}, not running")
        now = clock()
        if force or dep.from_version is None or dep.kind == "destroy":
            ended = dep.model_copy(update={"status": "cancelled", "finished_at": now,
                                           "message": "cancelled"})
            await store.put(model.deployment_key(dep.id), ended.dump(), expect=mod_revision)
            return {"deployment": deployment_json(ended)}
        stored = await intent.roll_back(store, dep.app_id, dep.from_version, now)
        return {"rolledBackTo": dep.from_version, "version": stored.version}

    return r
