"""Parsing and validation of app definitions: everything is checked before anything is written.

Errors name the field (`instances: must be >= 0`). Fields kade knows from Marathon but does not
support, and fields nobody knows, are returned as warnings: accepted, reported, never dropped
without a word.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel, ValidationError

from kade.spec.docker_parameters import ENDPOINT_PARAMETERS, canonical, parameter_problem
from kade.spec.document import load_document
from kade.spec.errors import SpecError
from kade.spec.groups import parent_of, resolve_id
from kade.spec.legacy import migrate
from kade.spec.model import AppSpec

__all__ = ["MAX_ID_LENGTH", "RESERVED_ID_SEGMENTS", "Parsed", "SpecError", "load_document",
           "normalize_id", "parse_app", "spec_hash"]

# Marathon fields that kade accepts but does not act on (yet).
UNSUPPORTED = {
    "storeUrls": "not supported",
    "executor": "custom executors are not supported",
    "gpus": "GPUs are not supported",
    "secrets": "secrets are not supported",
    "readinessChecks": "readiness checks are not supported; health checks gate routing",
    "acceptedResourceRoles": "Mesos roles do not apply",
    "role": "Mesos roles do not apply",
    "tty": "not supported",
    "maxLaunchDelay": "did you mean maxLaunchDelaySeconds?",
}

_ID_SEGMENT = re.compile(r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*"
                         r"([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# App ids are paths in the API (`/v1/apps/shop/web/versions/…`): a segment that is an action
# word would make the app unreachable, so these are refused (today's actions and planned ones).
RESERVED_ID_SEGMENTS: frozenset[str] = frozenset({
    "scale", "restart", "rollback", "versions", "diff", "tasks", "plan",
    "logs", "metrics", "alerts", "deployments", "queue",
})
MAX_ID_LENGTH = 255  # characters of the whole id, slashes included
_CONSTRAINT_OPS = {"UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS"}


@dataclass
class Parsed:
    app: AppSpec
    warnings: list[str] = field(default_factory=list)


def parse_app(data: Any, *, app_id: str | None = None) -> Parsed:
    """Validate one app definition (a dict in Marathon's shape) and return it normalized."""
    if not isinstance(data, dict):
        raise SpecError(["app definition must be an object"])
    data = dict(data)
    if app_id is not None:
        given = data.get("id")
        if given is not None and normalize_id(str(given)) != normalize_id(app_id):
            raise SpecError([f"id: {given!r} does not match the path {app_id!r}"])
        data["id"] = app_id
    for server_side in ("version", "versionInfo", "tasks", "deployments", "tasksRunning",
                        "tasksHealthy", "tasksUnhealthy", "tasksStaged", "lastTaskFailure"):
        data.pop(server_side, None)
    migrated = migrate(data)
    if migrated.problems:
        raise SpecError(migrated.problems)
    try:
        app = AppSpec.model_validate(migrated.data)
    except ValidationError as e:
        raise SpecError([_describe(err) for err in e.errors()]) from e
    problems = _check(app)
    if problems:
        raise SpecError(problems)
    app_id = normalize_id(app.id)
    dependencies = [resolve_id(dep, parent_of(app_id)) for dep in app.dependencies]
    problems = _check_dependencies(app_id, app.dependencies, dependencies)
    if problems:
        raise SpecError(problems)
    app = app.model_copy(update={"id": app_id, "dependencies": dependencies})
    return Parsed(app=app, warnings=migrated.notes + _warnings(app))


def _check_dependencies(app_id: str, given: list[str], resolved: list[str]) -> list[str]:
    """Each dependency names another app or group by a valid id (resolved relative to the
    app's group, as Marathon does)."""
    problems = []
    for i, (ref, dep) in enumerate(zip(given, resolved, strict=True)):
        if dep == app_id:
            problems.append(f"dependencies.{i}: {ref!r} is the app itself")
        elif dep == "/" or not all(_ID_SEGMENT.match(seg) for seg in dep.strip("/").split("/")):
            problems.append(f"dependencies.{i}: {ref!r} is not a valid app or group id")
    return problems


def validation_problems(e: ValidationError, where: str = "") -> list[str]:
    """A model's validation errors as kade words them (`alerts.0.for: must be >= 0`)."""
    out = []
    for err in e.errors():
        problem = _describe(err)
        out.append(f"{where}.{problem}" if where and not problem.startswith("(app)")
                   else problem.replace("(app)", where or "(app)", 1))
    return out


def normalize_id(app_id: str) -> str:
    return "/" + app_id.strip().strip("/")


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(app)"
    ctx = err.get("ctx") or {}
    kind = err["type"]
    messages: dict[str, Callable[[], str]] = {
        "greater_than_equal": lambda: f"must be >= {ctx.get('ge')}",
        "greater_than": lambda: f"must be > {ctx.get('gt')}",
        "less_than_equal": lambda: f"must be <= {ctx.get('le')}",
        "less_than": lambda: f"must be < {ctx.get('lt')}",
        "missing": lambda: "is required",
        "literal_error": lambda: f"must be one of {ctx.get('expected')}",
        "string_too_short": lambda: "must not be empty",
        "int_parsing": lambda: "must be an integer",
        "int_from_float": lambda: "must be an integer",
        "int_parsing_size": lambda: "is too large",
        "float_parsing": lambda: "must be a number",
        "finite_number": lambda: "must be a finite number",
        "string_type": lambda: "must be a string",
        "dict_type": lambda: "must be an object",
        "list_type": lambda: "must be a list",
        "bool_parsing": lambda: "must be true or false",
        "value_error": lambda: str(ctx.get("error", err["msg"])),
        "too_long": lambda: f"at most {ctx.get('max_length')} items",
    }
    text = messages.get(kind)
    return f"{loc}: {text() if text else err['msg']}"


def _check(app: AppSpec) -> list[str]:
    problems: list[str] = []
    segments = app.id.strip().strip("/").split("/")
    if not app.id.strip("/ "):
        problems.append("id: is required")
    elif len(app.id) > MAX_ID_LENGTH:
        problems.append(f"id: is {len(app.id)} characters long, at most {MAX_ID_LENGTH} "
                        "are accepted")
    else:
        reserved = [seg for seg in segments if seg in RESERVED_ID_SEGMENTS]
        if reserved:
            problems.append(
                f"id: {app.id!r} has the segment {reserved[0]!r}, a word the API uses for "
                f"actions (reserved: {', '.join(sorted(RESERVED_ID_SEGMENTS))})")
        for seg in segments:
            if seg in (".", "..") or not _ID_SEGMENT.match(seg):
                problems.append(
                    f"id: {app.id!r} is invalid: each path segment must be lowercase letters, "
                    "digits, dashes and dots, starting and ending with a letter or digit"
                )
                break
    if app.cmd is not None and app.args is not None:
        problems.append("cmd: cmd and args cannot both be set")
    if app.image is None and not app.cmd and not app.args:
        problems.append("container.docker.image: an app needs an image, a cmd or args")
    if app.image is None and app.container is not None and app.container.type == "DOCKER":
        problems.append("container.docker.image: is required for a DOCKER container")
    if app.image is None and app.args is not None:
        problems.append("args: args need a container image (use cmd for a command app)")
    if app.image is None and app.network_mode != "host":
        problems.append("networks: a command app without a container runs on the host network")
    if app.network_mode == "container" and not app.docker_network_name:
        problems.append("networks.0.name: a `container` network needs the Docker network name")
    docker = app.container.docker if app.container else None
    for i, param in enumerate(docker.parameters if docker else []):
        if (why := parameter_problem(param.key, param.value)) is not None:
            problems.append(f"container.docker.parameters.{i}: {why}")
        elif canonical(param.key) in ENDPOINT_PARAMETERS and app.network_mode != "container":
            problems.append(f"container.docker.parameters.{i}: {param.key} applies on a "
                            "Docker network of the app's own: networks [{\"mode\": "
                            "\"container\", \"name\": …}]")
    for name in app.env:
        if not _ENV_NAME.match(name):
            problems.append(f"env.{name}: not a valid environment variable name")
    ports = app.ports()
    names = [p.name for p in ports if p.name]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"ports: the port name {dup!r} is used twice")
    fixed = [p.requested_host_port for p in ports if p.requested_host_port]
    for port in sorted({p for p in fixed if fixed.count(p) > 1}):
        problems.append(f"ports: host port {port} is requested twice")
    # containerPort 0 (or none): the container listens on the host port it is given, as in
    # Marathon ("same as hostPort"); the driver publishes that port on itself.
    for i, hc in enumerate(app.health_checks):
        where = f"healthChecks.{i}"
        if hc.kind == "COMMAND":
            if hc.command is None:
                problems.append(f"{where}.command: a COMMAND check needs command.value")
            continue
        if hc.port_index is not None and hc.port is not None:
            problems.append(f"{where}: set portIndex or port, not both")
        if hc.port is None:
            index = hc.port_index or 0
            if index >= len(ports):
                problems.append(
                    f"{where}.portIndex: {index} is out of range: the app has {len(ports)} port(s)"
                )
        if hc.kind in ("HTTP", "HTTPS") and not hc.path.startswith("/"):
            problems.append(f"{where}.path: must start with /")
    endpoint = app.metrics_endpoint()
    if endpoint is not None and endpoint.port_index >= len(ports):
        where = "metrics.portIndex" if app.metrics is not None else "labels.kade.metrics.path"
        problems.append(f"{where}: {endpoint.port_index} is out of range: the app has "
                        f"{len(ports)} port(s)")
    if app.type == "system" and "instances" in app.model_fields_set and app.instances > 1:
        problems.append(f"instances: {app.instances} does not apply to a system app: it runs one "
                        "task on every eligible node that matches its constraints (leave "
                        "instances out, or 0 to suspend it)")
    for i, c in enumerate(app.constraints):
        problems.extend(_check_constraint(i, c))
    for i, f in enumerate(app.fetch):
        problems.extend(_check_fetch(i, f.uri, f.output_file))
    return problems


FETCH_SCHEMES = ("http", "https", "file")


def _check_fetch(i: int, uri: str, output_file: str | None) -> list[str]:
    problems = []
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme not in FETCH_SCHEMES and not uri.startswith("/"):
        problems.append(f"fetch.{i}.uri: {uri!r}: only http, https and file URIs (or an "
                        "absolute path on the node) can be fetched")
    elif scheme == "file" and not uri.partition("://")[2].startswith("/"):
        problems.append(f"fetch.{i}.uri: {uri!r}: a file URI names a path on this node "
                        "(file:///path)")
    name = output_file if output_file is not None else fetch_name(uri)
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        where = "outputFile" if output_file is not None else "uri"
        problems.append(f"fetch.{i}.{where}: {name!r} cannot name a file in the sandbox")
    return problems


def fetch_name(uri: str) -> str:
    """The file name a fetched URI gets in the sandbox: the last segment of its path."""
    path = uri.partition("://")[2] if "://" in uri else uri
    path = path.split("?")[0].split("#")[0]
    if "://" in uri:
        path = path.partition("/")[2]  # without the host
    return unquote(path.rstrip("/").rpartition("/")[2])


def _check_constraint(i: int, c: list[str]) -> list[str]:
    where = f"constraints.{i}"
    if len(c) not in (2, 3):
        return [f"{where}: must be [field, operator] or [field, operator, value]"]
    op = c[1]
    if op not in _CONSTRAINT_OPS:
        return [f"{where}: unknown operator {op!r}, expected one of {sorted(_CONSTRAINT_OPS)}"]
    value = c[2] if len(c) == 3 else None
    if op in ("CLUSTER", "LIKE", "UNLIKE", "MAX_PER", "IS") and value is None:
        return [f"{where}: {op} needs a value"]
    if op in ("MAX_PER", "GROUP_BY") and value is not None and not value.isdigit():
        return [f"{where}: {op} value must be a whole number"]
    if op in ("LIKE", "UNLIKE") and value is not None:
        try:
            re.compile(value)
        except re.error as e:
            return [f"{where}: invalid regular expression: {e}"]
    return []


def _warnings(app: AppSpec) -> list[str]:
    found: list[str] = []

    def walk(model: BaseModel, path: str) -> None:
        for key in (model.model_extra or {}):
            where = f"{path}{key}"
            reason = UNSUPPORTED.get(key) if not path else None
            found.append(f"{where}: {reason or 'unknown field'}, ignored")
        for name in type(model).model_fields:
            value = getattr(model, name)
            alias = type(model).model_fields[name].alias or name
            if isinstance(value, BaseModel):
                walk(value, f"{path}{alias}.")
            elif isinstance(value, list):
                for j, item in enumerate(value):
                    if isinstance(item, BaseModel):
                        walk(item, f"{path}{alias}.{j}.")

    walk(app, "")
    if app.network_mode == "host" and app.port_mappings():
        found.append("container.portMappings: ignored on the host network (use portDefinitions)")
    if app.container and app.container.type == "MESOS":
        found.append("container.type: MESOS containers run as Docker containers in kade")
    return found


# Fields whose change does not need new tasks: scaling, rollout and restart policy.
# `dependencies` only orders starts, `logs` only bounds what nodes keep, `alerts` and
# `metrics` only watch: a change of them restarts nothing.
_NO_RESTART = {"instances", "version", "upgradeStrategy", "backoffSeconds", "backoffFactor",
               "maxLaunchDelaySeconds", "killSelection", "dependencies", "logs",
               "alerts", "metrics"}


def spec_hash(app: AppSpec) -> str:
    """A hash of everything that shapes a task; equal hashes mean a task need not be replaced."""
    wire = {k: v for k, v in app.wire().items() if k not in _NO_RESTART}
    raw = json.dumps(wire, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]
