"""How far a deployment got: a pure function of the app, its tasks and the time.

A deployment succeeds when the app has exactly `instances` active tasks of its current spec
(a system app: one on each node it runs on), all healthy, and no task of an older spec (or
being stopped) is left. It fails when that is
not reached by its deadline. The scheduler does the rolling itself (level-triggered, with
Marathon's upgradeStrategy arithmetic); this only watches and judges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kade import model
from kade.model import Deployment, Task, TaskStatus
from kade.scheduler.rollout import is_healthy
from kade.spec import AppSpec, spec_hash


def assess(
    dep: Deployment,
    app: AppSpec | None,
    tasks: Iterable[Task],
    statuses: Mapping[str, TaskStatus],
    now: float,
) -> Deployment:
    """The deployment with its progress counted and, when it ended, its outcome."""
    if dep.status != "running":
        return dep
    mine = [t for t in tasks if t.app_id == dep.app_id]
    if dep.kind == "destroy":
        if app is not None:
            return _end(dep, "superseded", now, "the app was created again")
        if not mine:
            return _end(dep.model_copy(update={"old": 0}), "succeeded", now, "")
        progressed = dep.model_copy(update={"old": len(mine)})
        return _deadline(progressed, now, f"{len(mine)} task(s) still stopping")
    if app is None:
        return _end(dep, "cancelled", now, "the app was destroyed")
    if app.version != dep.version:
        return _end(dep, "superseded", now, f"superseded by version {app.version}")

    current = spec_hash(app)
    new, old = [], 0
    for task in mine:
        status = statuses.get(task.id)
        terminal = status is not None and status.state in model.TERMINAL
        if task.desired == "stop":
            old += 0 if terminal else 1
        elif terminal:
            continue
        elif task.spec_hash == current:
            new.append(task)
        else:
            old += 1
    healthy = sum(1 for t in new if is_healthy(app, statuses.get(t.id)))
    wanted = app.instances
    if app.type == "system":
        # One task per eligible node that matches: the scheduler places them all in one plan,
        # so the tasks there are the ones wanted (none when no node matches, or suspended).
        wanted = len(new) if app.instances > 0 else 0
    progressed = dep.model_copy(update={
        "instances": wanted, "updated": len(new), "healthy": healthy, "old": old,
    })
    if len(new) == wanted and healthy == wanted and old == 0:
        return _end(progressed, "succeeded", now, "")
    return _deadline(
        progressed, now,
        f"{healthy}/{wanted} tasks of version {app.version} healthy, "
        f"{old} old task(s) left",
    )


def _deadline(dep: Deployment, now: float, progress: str) -> Deployment:
    if now < dep.deadline:
        return dep
    return _end(dep, "failed", now, f"not done by its progress deadline: {progress}")


def _end(dep: Deployment, status: model.DeploymentStatus, now: float, message: str
         ) -> Deployment:
    return dep.model_copy(update={"status": status, "finished_at": now, "message": message})
