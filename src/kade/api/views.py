"""Pure views of stored records in Marathon's JSON shape (what API clients and the CLI read)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kade import model
from kade.model import QueueEntry, Task, TaskStatus, Unreadable, iso
from kade.spec import AppSpec

_MARATHON_STATE = {
    "staging": "TASK_STAGING",
    "starting": "TASK_STARTING",
    "running": "TASK_RUNNING",
    "failed": "TASK_FAILED",
    "finished": "TASK_FINISHED",
    "killing": "TASK_KILLING",
    "killed": "TASK_KILLED",
    "lost": "TASK_LOST",
}


@dataclass
class AppTasks:
    """The tasks of one app with their statuses, as counted for `kade apps`."""

    tasks: list[tuple[Task, TaskStatus | None]] = field(default_factory=list)


def group_tasks(
    tasks: Iterable[Task], statuses: Mapping[str, TaskStatus]
) -> dict[str, AppTasks]:
    out: dict[str, AppTasks] = {}
    for task in tasks:
        out.setdefault(task.app_id, AppTasks()).tasks.append((task, statuses.get(task.id)))
    for group in out.values():
        group.tasks.sort(key=lambda pair: (pair[0].created_at, pair[0].id))
    return out


def is_healthy(app: AppSpec | None, status: TaskStatus | None) -> bool:
    """Running and passing its checks (or it has none); without the app, by health alone."""
    if status is None or status.state != "running":
        return False
    return status.health == "healthy" or (app is not None and not app.health_checks)


def task_json(task: Task, status: TaskStatus | None, app: AppSpec | None = None) -> dict[str, Any]:
    state = status.state if status else "staging"
    if task.desired == "stop" and state not in model.TERMINAL:
        state = "killing"
    out: dict[str, Any] = {
        "id": task.id,
        "appId": task.app_id,
        "host": task.host,
        "node": task.node,
        "ports": list(task.host_ports),
        "version": task.version,
        "state": _MARATHON_STATE[state],
        "stagedAt": iso(task.created_at),
        "startedAt": iso(status.started_at) if status else None,
        "containerId": status.container_id if status else "",
        "health": status.health if status else "unknown",
        "healthy": is_healthy(app, status) if app is not None else None,
        "message": (status.message if status else "") or task.stop_reason,
        "exitCode": status.exit_code if status else None,
        "configError": (status.config_error or None) if status else None,
        "desired": task.desired,
        "healthCheckResults": [
            {
                "taskId": task.id,
                "alive": r.alive,
                "consecutiveFailures": r.consecutive_failures,
                "firstSuccess": iso(r.first_success),
                "lastSuccess": iso(r.last_success),
                "lastFailure": iso(r.last_failure),
                "lastFailureCause": r.last_failure_cause or None,
            }
            for r in (status.health_results if status else [])
        ],
    }
    return out


def app_json(
    app: AppSpec,
    group: AppTasks | None,
    queue: QueueEntry | None,
    now: float,
    *,
    embed_tasks: bool = False,
) -> dict[str, Any]:
    out = app.wire()
    out["version"] = app.version
    pairs = [(t, s) for t, s in (group.tasks if group else []) if t.desired == "run"]
    live = [(t, s) for t, s in pairs if s is None or s.state not in model.TERMINAL]
    staged = sum(1 for _, s in live if s is None or s.state in ("staging", "starting"))
    running = sum(1 for _, s in live if s is not None and s.state == "running")
    healthy = sum(1 for _, s in live if is_healthy(app, s))
    unhealthy = sum(1 for _, s in live if s is not None and s.health == "unhealthy")
    out.update({
        "tasksStaged": staged,
        "tasksRunning": running,
        "tasksHealthy": healthy,
        "tasksUnhealthy": unhealthy,
        "status": app_status(app, healthy, len(live), queue, now),
    })
    if queue is not None:
        out["queue"] = {
            "delayUntil": iso(queue.delay_until) if queue.delay_until > now else None,
            "waiting": queue.waiting or None,
            "consecutiveFailures": queue.failures,
        }
        if queue.last_failure:
            out["lastTaskFailure"] = {
                "message": queue.last_failure,
                "timestamp": iso(queue.last_failure_at),
            }
    errors = sorted({s.config_error for _, s in live if s is not None and s.config_error})
    if errors:
        out["configErrors"] = errors
    if embed_tasks:
        out["tasks"] = [task_json(t, s, app) for t, s in (group.tasks if group else [])]
    return out


def quarantined_app_json(
    bad: Unreadable, group: AppTasks | None, *, embed_tasks: bool = False
) -> dict[str, Any]:
    """An app whose stored record cannot be read, as `kade apps` lists it: status
    `quarantined` and why. What its definition said is unknown (null); its tasks keep
    running untouched and are counted, until the app is replaced (PUT) or deleted."""
    pairs = [(t, s) for t, s in (group.tasks if group else []) if t.desired == "run"]
    live = [(t, s) for t, s in pairs if s is None or s.state not in model.TERMINAL]
    out: dict[str, Any] = {
        "id": model.app_id_of_key(bad.key),
        "instances": None, "cpus": None, "mem": None, "version": None,
        "tasksStaged": sum(1 for _, s in live if s is None or s.state in ("staging", "starting")),
        "tasksRunning": sum(1 for _, s in live if s is not None and s.state == "running"),
        "tasksHealthy": sum(1 for _, s in live if is_healthy(None, s)),
        "tasksUnhealthy": sum(1 for _, s in live if s is not None and s.health == "unhealthy"),
        "status": "quarantined",
        "quarantine": quarantine_json(bad),
    }
    if embed_tasks:
        out["tasks"] = [task_json(t, s) for t, s in (group.tasks if group else [])]
    return out


def quarantine_json(bad: Unreadable) -> dict[str, Any]:
    return {"key": bad.key, "revision": bad.revision, "reason": bad.reason, "message": str(bad)}


def app_status(
    app: AppSpec, healthy: int, live: int, queue: QueueEntry | None, now: float
) -> str:
    if queue is not None and queue.waiting:
        return f"waiting: {queue.waiting}"
    if queue is not None and queue.delay_until > now and live < app.instances:
        return f"delayed until {iso(queue.delay_until)}"
    if app.instances == 0:
        return "suspended" if live == 0 else "scaling"
    if healthy >= app.instances and live == app.instances:
        return "running"
    return "deploying"
