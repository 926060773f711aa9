"""Pure views of kade's records in the exact shapes of Marathon's REST API v2.

Marathon clients are strict readers: the `marathon` Python client builds objects from every
key of an answer (an unknown key is an error), and marathon-lb does
`app.get("container", {}).get("docker", {})` (a `null` container is an error). So a /v2 answer
carries Marathon's keys only, with nulls left out; what only kade has (routes, templates, the
app's `status`) stays in `/v1`, and a PUT through /v2 keeps it (it merges, as Marathon does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kade.api.deployments import deployment_json
from kade.api.views import _MARATHON_STATE, AppTasks, app_json, task_json
from kade.model import TERMINAL, Deployment, QueueEntry, Task, TaskStatus, iso
from kade.spec import AppSpec

# The keys of Marathon's app object (AppDefinition plus the counts and embeds of /v2/apps).
APP_KEYS = frozenset({
    "id", "cmd", "args", "user", "env", "instances", "cpus", "mem", "disk", "gpus",
    "constraints", "container", "healthChecks", "upgradeStrategy", "labels",
    "backoffSeconds", "backoffFactor", "maxLaunchDelaySeconds", "taskKillGracePeriodSeconds",
    "killSelection", "portDefinitions", "requirePorts", "networks", "dependencies", "fetch",
    "uris", "version", "versionInfo", "tasksStaged", "tasksRunning", "tasksHealthy",
    "tasksUnhealthy", "deployments", "tasks", "lastTaskFailure", "ports",
})
_CONTAINER_KEYS = ("type", "docker", "portMappings", "volumes")
_UPGRADE_KEYS = ("minimumHealthCapacity", "maximumOverCapacity")
_TASK_KEYS = ("id", "appId", "host", "ports", "servicePorts", "slaveId", "stagedAt",
              "startedAt", "version", "state", "ipAddresses", "healthCheckResults")


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def service_ports(app: AppSpec) -> list[int]:
    """Marathon's `ports` of an app: its service ports. kade has no service-port range; the
    declared port (or 0) stands in, one per port the app's tasks get."""
    if app.network_mode in ("bridge", "container"):
        return [m.service_port for m in app.port_mappings()]
    if app.network_mode == "none":
        return []
    return [d.port for d in (app.port_definitions or [])] or [0]


def v2_definition(app: AppSpec) -> dict[str, Any]:
    """The app definition alone (a version of it), in Marathon's keys."""
    wire = app.wire()
    out = {k: v for k, v in wire.items() if k in APP_KEYS}
    out["version"] = app.version
    if isinstance(wire.get("container"), dict):
        out["container"] = {k: wire["container"].get(k) for k in _CONTAINER_KEYS}
    if isinstance(wire.get("upgradeStrategy"), dict):
        out["upgradeStrategy"] = {k: wire["upgradeStrategy"].get(k) for k in _UPGRADE_KEYS}
    if out.get("fetch"):  # Marathon names the file in the sandbox `destPath`
        out["fetch"] = [{("destPath" if k == "outputFile" else k): v for k, v in f.items()}
                        for f in out["fetch"]]
    out["ports"] = service_ports(app)
    out["versionInfo"] = {"lastScalingAt": app.version, "lastConfigChangeAt": app.version}
    return _drop_nulls(out)  # type: ignore[no-any-return]


def v2_state(state: str) -> str:
    """kade's task state → Marathon's (`running` → `TASK_RUNNING`)."""
    return _MARATHON_STATE.get(state, "TASK_" + state.upper())


def v2_task(task: Task, status: TaskStatus | None, app: AppSpec | None = None
            ) -> dict[str, Any]:
    """A task as Marathon's /v2/tasks lists it."""
    base = task_json(task, status, app)
    base.update({
        "slaveId": task.node,
        "servicePorts": service_ports(app) if app is not None else [],
        "ipAddresses": [{"ipAddress": task.host, "protocol": "IPv4"}] if task.host else [],
    })
    return _drop_nulls({k: base.get(k) for k in _TASK_KEYS})  # type: ignore[no-any-return]


def v2_app(
    app: AppSpec, group: AppTasks | None, queue: QueueEntry | None, now: float, *,
    deployments: Iterable[Deployment] = (), tasks: bool = False,
    last_failure: bool = False,
) -> dict[str, Any]:
    """An app with its counts, running `deployments` and, as asked, its tasks and last
    task failure (Marathon's `embed=apps.tasks`, `apps.lastTaskFailure`)."""
    counted = app_json(app, group, queue, now)
    out = v2_definition(app)
    for key in ("tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy"):
        out[key] = counted[key]
    out["deployments"] = [{"id": d.id} for d in deployments
                          if d.app_id == app.id and d.status == "running"]
    if tasks:
        out["tasks"] = [v2_task(t, s, app) for t, s in (group.tasks if group else [])]
    if last_failure and queue is not None and queue.last_failure:
        out["lastTaskFailure"] = _drop_nulls({
            "appId": app.id, "message": queue.last_failure, "state": "TASK_FAILED",
            "timestamp": iso(queue.last_failure_at), "version": app.version,
            "taskId": "", "host": "",
        })
    return out


def v2_deployment(dep: Deployment) -> dict[str, Any]:
    """A deployment as Marathon's /v2/deployments lists it (steps of actions)."""
    ours = deployment_json(dep)
    steps = [{"actions": step["actions"]} for step in ours["steps"]]
    current = ours["currentStep"]
    return {
        "id": dep.id,
        "version": dep.version or iso(dep.started_at),
        "affectedApps": [dep.app_id],
        "affectedPods": [],
        "steps": steps,
        "currentActions": [
            {**action, "readinessCheckResults": []}
            for action in steps[current - 1]["actions"]
        ] if dep.status == "running" else [],
        "currentStep": current,
        "totalSteps": ours["totalSteps"],
    }


def deployment_plan(dep: Deployment) -> dict[str, Any]:
    """The `plan` of Marathon's deployment events: original and target group states are
    named by version only (kade deploys apps one by one, not group trees)."""
    view = v2_deployment(dep)
    return {
        "id": dep.id,
        "version": view["version"],
        "original": {"id": "/", "apps": [], "groups": [], "dependencies": [],
                     "version": dep.from_version or view["version"]},
        "target": {"id": "/", "apps": [], "groups": [], "dependencies": [],
                   "version": view["version"]},
        "steps": view["steps"],
    }


def v2_queue_item(app: AppSpec, entry: QueueEntry, active: int, now: float
                  ) -> dict[str, Any]:
    """One app waiting to launch tasks: how many, and its launch delay."""
    left = max(entry.delay_until - now, 0.0)
    return {
        "app": v2_definition(app),
        "count": max(app.instances - active, 0),
        "delay": {"timeLeftSeconds": round(left), "overdue": left == 0.0},
        "since": iso(entry.last_failure_at) or app.version,
    }


def app_labels_match(labels: Mapping[str, str], selector: str) -> bool:
    """Marathon's `label` filter: `key`, `key==value`, `key!=value`, comma-separated (all
    must hold)."""
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "==" in term:
            key, value = (s.strip() for s in term.split("==", 1))
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


def embeds(values: Iterable[str]) -> set[str]:
    """`embed=apps.tasks&embed=app.deployments` → {"tasks", "deployments"} (Marathon accepts
    the `apps.` and `app.` prefixes and drops unknown ones)."""
    out = set()
    for value in values:
        for part in value.split(","):
            out.add(part.strip().removeprefix("apps.").removeprefix("app."))
    return out


def active_count(tasks: Iterable[tuple[Task, TaskStatus | None]]) -> int:
    """Tasks that should run and have not ended."""
    return sum(1 for t, s in tasks
               if t.desired == "run" and (s is None or s.state not in TERMINAL))
