"""The records kade keeps in its store, and the keys they live under.

One writer per kind of fact (DESIGN.md):
- `apps/<id>`            the desired app (current version)          written by the API
- `versions/<id>/<ver>`  every accepted version of an app            written by the API
- `tasks/<task id>`      a task placed on a node, run or stop        written by the scheduler
- `status/<task id>`     what runs: container, state, health         written by the agent
- `nodes/<name>`         a node's resources and address              written by the agent
- `alive/<name>`         the node's agent is alive: under a lease it    written by the agent
                         keeps alive (gone = the node is down)
- `nodectl/<name>`       what operators asked of a node: eligibility,  written by the API
                         a drain and its deadline
- `queue/<id>`           launch delay and why an app waits           written by the scheduler
- `kv/<key>`             user configuration (Consul KV)              written by the API
- `routers/<name>`       what a router may still send requests to    written by the API
- `deployments/<id>`     a change of an app being rolled out         created by the API,
                                                                     followed by the deployer
- `stable/<id>`          the app's last version that was all healthy  written by the deployer
- `serverkeys/<name>`    a server's public key: nodes check the       written by that server
                         requests it signs (kade.auth.assertions)

App ids are path-like (`/shop/web`); in keys the leading slash is dropped.

Every reader decodes stored records with `decode` (or `decode_all`): one bad-record policy.
A record that cannot load (an older format, a hand-edited database, a bug) is *quarantined*:
the reader skips it, it is logged once per key and revision, and the reader gets an
`Unreadable` to report; every other record is read and acted upon as usual. No reader may
stop, or crash-loop, on a record.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

APPS = "apps/"
VERSIONS = "versions/"
TASKS = "tasks/"
STATUS = "status/"
NODES = "nodes/"
NODECTL = "nodectl/"
ALIVE = "alive/"
QUEUE = "queue/"
KV = "kv/"
ROUTERS = "routers/"
DEPLOYMENTS = "deployments/"
STABLE = "stable/"
SERVERKEYS = "serverkeys/"
ALERTS = "alerts/"  # the alerts of every rule, by fingerprint (kade.alerts.state.Alert)
ALERT_RULES = "alertrules/"  # cluster-wide alert rules, by name (kade.spec.alerts.AlertRule)


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


def alive_key(name: str) -> str:
    return ALIVE + name


def nodectl_key(name: str) -> str:
    return NODECTL + name


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
    hostname: str = ""  # the machine's host name (the node's name may differ: `--node`)
    cpus: float
    mem: float  # MiB
    attributes: dict[str, str] = Field(default_factory=dict)
    # The kinds of task it runs (`docker`, `exec`). Empty: not told (a record of an older
    # agent, which ran whatever it was given), so any.
    drivers: list[str] = Field(default_factory=list)
    # Host ports something other than kade's tasks holds (seen by the agent's bind test):
    # the planner assigns them to no task until the agent sees them free again.
    ports_in_use: list[int] = Field(default_factory=list)
    # The host ports its tasks are given (`--ports`); empty: the scheduler's range. Agents
    # sharing a machine each take their own.
    port_range: list[int] = Field(default_factory=list)
    # Seconds of the lease under which its agent keeps `alive/<name>`: without that key the
    # node is down. 0: an agent that does not say (never counted down).
    liveness_ttl: float = 0.0
    draining: bool = False
    updated_at: float = 0.0
    # Where its node listener answers servers' log queries (`kade agent --listen`); empty:
    # none (left out of the record then, as an older agent wrote it).
    api_url: str = Field(default="", exclude_if=lambda v: not v)

    def alive(self, alive_keys: Collection[str]) -> bool:
        """Whether its agent is alive, given the names under `alive/`."""
        return not self.liveness_ttl or self.name in alive_keys

    def runs(self, driver: str) -> bool:
        """Whether tasks that need `driver` (see `driver_for`) can run here."""
        return not self.drivers or driver in self.drivers


class ServerKey(Record):
    """`serverkeys/<name>`: the Ed25519 public key (raw, base64) a server signs its requests
    to nodes with (kade.auth.assertions); made anew at each start."""

    server: str
    public_key: str
    created: float = 0.0


class Alive(Record):
    """`alive/<name>`: the node's agent is alive, under a lease it keeps (kade.agent.liveness)."""

    node: str
    since: float  # when this agent announced it
    lease: int = 0


class DrainSpec(Record):
    """A drain an operator started (`kade node drain`): its tasks move elsewhere, surge-first."""

    started_at: float
    deadline: float  # after it, tasks not yet moved are stopped where they are
    keep_system: bool = False  # leave the node's system-app tasks running
    max_parallel: int = 1  # tasks of one app moved at a time
    tasks_at_start: int = 0  # tasks on the node when the drain began: its progress's total


class NodeControl(Record):
    """What operators asked of a node. Kept apart from `nodes/<name>`, which the node's own
    agent writes, so that the two writers never race on one key."""

    name: str
    eligible: bool = True  # False: no new task is placed here; running ones stay
    drain: DrainSpec | None = None
    updated_at: float = 0.0


DRIVER_DOCKER = "docker"
DRIVER_EXEC = "exec"
# What users call the apps each kind of driver runs, for messages ("no node runs command apps").
DRIVER_APPS = {DRIVER_DOCKER: "apps with an image", DRIVER_EXEC: "command apps"}


class AppShape(Protocol):
    """What `driver_for` reads of an app (kade.spec.AppSpec has it)."""

    @property
    def image(self) -> str | None: ...


def driver_for(app: AppShape) -> str:
    """The kind of driver a task of `app` needs: an app with an image runs in a container;
    one without (Marathon's command app: `cmd` and no container image) as a plain process.
    Here, not in a driver, because the scheduler, the deploy path and the agent must agree."""
    return DRIVER_DOCKER if app.image else DRIVER_EXEC


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


class Stored(Protocol):
    """What `decode` needs of a store entry (kade.store.base.Entry has it)."""

    @property
    def key(self) -> str: ...

    @property
    def value(self) -> bytes: ...

    @property
    def mod_revision(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A stored record that cannot be decoded: skipped by its readers, shown to users until
    it is replaced by a valid one or deleted."""

    key: str
    revision: int  # its mod_revision: a rewrite of the key is a new case
    reason: str  # e.g. "mem: Input should be a valid number"

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"


M = TypeVar("M", bound=BaseModel)

_REASON_MAX = 500  # characters: a reason is shown in listings, not a dump of the record
_ERRORS_SHOWN = 3
_LOGGED_MAX = 4096  # (key, revision) pairs remembered for logging once
_logged: OrderedDict[tuple[str, int], None] = OrderedDict()
_qlog = logging.getLogger("kade.quarantine")


def decode(entry: Stored, cls: type[M]) -> M | Unreadable:
    """`entry`'s record as `cls`, or an `Unreadable` saying why it is not one.

    Every exception is caught, not only validation errors: a validator's bug or a record
    nested too deeply must cost that one record, never the reader (and with it kade)."""
    try:
        return cls.model_validate_json(entry.value)
    except Exception as e:  # noqa: BLE001 - the one bad-record policy (see the module doc)
        bad = Unreadable(entry.key, entry.mod_revision, describe(e))
        _log_once(bad)
        return bad


def decode_all(entries: Iterable[Stored], cls: type[M]) -> tuple[list[M], list[Unreadable]]:
    """The records of `entries` that load, and those that do not (in the same order)."""
    good: list[M] = []
    bad: list[Unreadable] = []
    for entry in entries:
        record = decode(entry, cls)
        if isinstance(record, Unreadable):
            bad.append(record)
        else:
            good.append(record)
    return good, bad


def describe(error: Exception) -> str:
    """A one-line reason naming the field and the problem: `mem: Input should be a valid
    number`; never the record's content (it may hold secrets from `env`)."""
    if isinstance(error, ValidationError):
        errors = error.errors(include_url=False, include_input=False, include_context=False)
        parts = [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" if err["loc"] else err["msg"]
            for err in errors[:_ERRORS_SHOWN]
        ]
        if len(errors) > _ERRORS_SHOWN:
            parts.append(f"and {len(errors) - _ERRORS_SHOWN} more problem(s)")
        reason = "; ".join(parts)
    else:
        reason = f"{type(error).__name__}: {error}"
    reason = " ".join(reason.split())
    return reason if len(reason) <= _REASON_MAX else reason[: _REASON_MAX - 1] + "…"


def _log_once(bad: Unreadable) -> None:
    """Log a quarantined record once per key and revision, whichever reader meets it first
    and however often it is met again (readers reload, the API lists on every request)."""
    mark = (bad.key, bad.revision)
    if mark in _logged:
        return
    _logged[mark] = None
    if len(_logged) > _LOGGED_MAX:
        _logged.popitem(last=False)
    _qlog.error("quarantined %s (revision %d): %s; it is skipped until it is replaced or "
                "deleted", bad.key, bad.revision, bad.reason)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
