"""The records kade keeps in its store, and the keys they live under.

One writer per kind of fact (DESIGN.md):
- `apps/<id>`            the desired app (current version)          written by the API
- `versions/<id>/<ver>`  every accepted version of an app            written by the API
- `tasks/<task id>`      a task placed on a node, run or stop        written by the scheduler
- `status/<task id>`     what runs: container, state, health         written by the agent
- `nodes/<name>`         a node's resources and address              written by the agent
- `queue/<id>`           launch delay and why an app waits           written by the scheduler
- `kv/<key>`             user configuration (Consul KV)              written by the API
- `routers/<name>`       what a router may still send requests to    written by the API
- `deployments/<id>`     a change of an app being rolled out         created by the API,
                                                                     followed by the deployer
- `stable/<id>`          the app's last version that was all healthy  written by the deployer

App ids are path-like (`/shop/web`); in keys the leading slash is dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

APPS = "apps/"
VERSIONS = "versions/"
TASKS = "tasks/"
STATUS = "status/"
NODES = "nodes/"
QUEUE = "queue/"
KV = "kv/"
ROUTERS = "routers/"
DEPLOYMENTS = "deployments/"
STABLE = "stable/"


def app_key(app_id: str) -> str:
    return APPS + app_id.strip("/")


def version_key(app_id: str, version: str) -> str:
    return f"{VERSIONS}{app_id.strip('/')}/{version}"


def versions_prefix(app_id: str) -> str:
    return f"{VERSIONS}{app_id.strip('/')}/"


def task_key(task_id: str) -> str:
    return TASKS + task_id


def status_key(task_id: str) -> str:
    return STATUS + task_id


def node_key(name: str) -> str:
    return NODES + name


def deployment_key(deployment_id: str) -> str:
    return DEPLOYMENTS + deployment_id


def stable_key(app_id: str) -> str:
    return STABLE + app_id.strip("/")


def queue_key(app_id: str) -> str:
    return QUEUE + app_id.strip("/")


def app_id_of_key(key: str, prefix: str = APPS) -> str:
    return "/" + key[len(prefix):]


_TASK_PREFIX_RE = re.compile(r"[^a-zA-Z0-9_.-]")


def task_id_prefix(app_id: str) -> str:
    """Marathon's task ids: `/shop/web` → `shop_web.<unique>`."""
    return _TASK_PREFIX_RE.sub("_", app_id.strip("/").replace("/", "_"))


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def dump(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def load(cls, raw: bytes) -> Self:
        return cls.model_validate_json(raw)


class Task(Record):
    """A task the scheduler placed on a node. `desired` flips to "stop" to have it stopped."""

    id: str
    app_id: str
    version: str  # the app version it runs
    spec_hash: str
    node: str
    host: str = ""  # the node's address, for $HOST and endpoints
    host_ports: list[int] = Field(default_factory=list)
    cpus: float = 0.0  # reserved on the node, from the app version it runs
    mem: float = 0.0
    desired: Literal["run", "stop"] = "run"
    created_at: float
    stop_reason: str = ""


TaskState = Literal[
    "staging",  # the agent is pulling / creating
    "starting",  # container started, not yet healthy (or no checks and just started)
    "running",
    "failed",  # exited or killed on its own; the scheduler replaces it
    "finished",  # exited with code 0
    "killing",
    "killed",  # stopped on request
    "lost",  # its container vanished
]
TERMINAL: frozenset[str] = frozenset({"failed", "finished", "killed", "lost"})

Health = Literal["unknown", "healthy", "unhealthy"]


class HealthResult(Record):
    """Per health check, Marathon's healthCheckResults item."""

    index: int
    alive: bool
    consecutive_failures: int = 0
    first_success: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_failure_cause: str = ""


class TaskStatus(Record):
    task_id: str
    app_id: str
    node: str
    state: TaskState
    container_id: str = ""
    health: Health = "unknown"
    health_results: list[HealthResult] = Field(default_factory=list)
    started_at: float | None = None
    updated_at: float
    exit_code: int | None = None
    message: str = ""
    config_stale: bool = False  # a `restart` template rendered differently: replace the task
    config_error: str = ""  # the last re-render failed; the task keeps its last good files


class Node(Record):
    name: str
    address: str
    cpus: float
    mem: float  # MiB
    attributes: dict[str, str] = Field(default_factory=dict)
    drivers: list[str] = Field(default_factory=list)
    draining: bool = False
    updated_at: float = 0.0


class QueueEntry(Record):
    """Why an app has fewer tasks than wanted: a launch delay and/or a placement problem."""

    app_id: str
    failures: int = 0  # consecutive failed tasks, drives the backoff
    spec_hash: str = ""  # the spec those failures belong to: a new spec starts afresh
    delay_until: float = 0.0
    last_failure: str = ""
    last_failure_at: float | None = None
    waiting: str = ""  # e.g. "insufficient cpus on every node"


DeploymentStatus = Literal["running", "succeeded", "failed", "cancelled", "superseded"]


class Deployment(Record):
    """One change of an app being rolled out, and how far it got."""

    id: str
    app_id: str
    kind: Literal["deploy", "scale", "restart", "destroy", "rollback"]
    version: str | None  # the version rolled out (None for destroy)
    from_version: str | None
    status: DeploymentStatus = "running"
    started_at: float
    deadline: float
    finished_at: float | None = None
    message: str = ""
    instances: int = 0
    updated: int = 0  # active tasks of the new spec
    healthy: int = 0  # healthy tasks of the new spec
    old: int = 0  # tasks of older specs still active or draining


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
