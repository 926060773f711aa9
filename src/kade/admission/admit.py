"""The one door for app definitions: the API, `kade up --deploy`, and any later API call these.

bytes → document (size cap, no YAML aliases, depth, finite numbers) → strings (length, control
characters) → the spec (Marathon's fields, `kade.spec`) → what other parts must be able to
read (template syntax, service names, Traefik rule labels) → bounds → the container policy.
Every problem is collected and raised at once as a SpecError naming its field, before anything
is written: a rejected definition changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kade.admission.limits import LIMITS, Limits, check_bounds, check_strings
from kade.admission.policy import ContainerPolicy, check_policy
from kade.catalog.build import check_app
from kade.router.rules import check_rule
from kade.spec import AppSpec, SpecError, load_document, parse_app
from kade.spec.errors import DocumentError
from kade.spec.groups import flatten, is_group
from kade.templates import check_templates


class BodyTooLarge(SpecError):
    """More bytes than an app definition may have (an HTTP API answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__([f"body: larger than {_size(limit)}, the limit for an app "
                          "definition"])
        self.limit = limit


@dataclass(frozen=True)
class Admitted:
    app: AppSpec
    warnings: list[str] = field(default_factory=list)


def parse_body(raw: bytes, *, filename: str = "", limits: Limits = LIMITS) -> Any:
    """An app definition's bytes (JSON or YAML) → plain data, within the document bounds."""
    if len(raw) > limits.max_body_bytes:
        raise BodyTooLarge(limits.max_body_bytes)
    if not raw.strip():
        raise DocumentError(["body: is empty: send an app definition"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DocumentError([f"body: not UTF-8 text (byte {e.start})"]) from None
    return load_document(text, filename, max_depth=limits.max_depth)


def admit(data: Any, *, policy: ContainerPolicy, app_id: str | None = None,
          limits: Limits = LIMITS) -> Admitted:
    """One app definition (parsed data) checked in full; raises SpecError with every problem.

    `app_id` is the id from the request's path (PUT), which the body must agree with."""
    if not isinstance(data, dict):
        raise SpecError(["app definition must be an object"])
    problems = check_strings(data, limits)
    if problems:  # nothing more is read of a document with hostile strings
        raise SpecError(problems)
    parsed = parse_app(data, app_id=app_id)
    app = parsed.app
    problems = check_templates(app.templates) + check_app(app)
    for i, route in enumerate(app.routes):  # strictly in its syntax (RouteSpec is lenient)
        if why := check_rule(route.rule, route.rule_syntax):
            problems.append(f"routes.{i}.rule: {why}")
    for label, value in sorted(app.labels.items()):
        if label.startswith("traefik.http.routers.") and label.endswith(".rule"):
            why = check_rule(value, app.labels.get(label[:-len("rule")] + "ruleSyntax"))
            if why:
                problems.append(f"labels.{label}: {why}")
    problems += check_bounds(app, limits)
    problems += check_policy(app, policy)
    if problems:
        raise SpecError(problems)
    return Admitted(app=app, warnings=parsed.warnings)


def admit_body(raw: bytes, *, policy: ContainerPolicy, app_id: str | None = None,
               limits: Limits = LIMITS) -> Admitted:
    """`parse_body`, then `admit`: what `POST/PUT /v1/apps` call with the request's bytes."""
    return admit(parse_body(raw, limits=limits), policy=policy, app_id=app_id, limits=limits)


def admit_apps(apps: list[dict[str, Any]], *, policy: ContainerPolicy,
               limits: Limits = LIMITS) -> list[Admitted]:
    """The apps of a group (as `kade.spec.groups.flatten` gives them: absolute ids), all or
    nothing: one bad app refuses them all, each problem prefixed by its app's id."""
    admitted: list[Admitted] = []
    problems: list[str] = []
    for data in apps:
        try:
            admitted.append(admit(data, policy=policy, limits=limits))
        except SpecError as e:
            problems += [f"{data['id']}: {p}" for p in e.problems]
    if problems:
        raise SpecError(problems)
    return admitted


def admit_file(raw: bytes, filename: str, *, policy: ContainerPolicy,
               limits: Limits = LIMITS) -> list[Admitted]:
    """A file of one app definition, a list of them or a group (`kade up --deploy`). All or
    nothing: one bad app rejects the file, with the problems of each app prefixed by its place
    (its id, in a group). A group's dependencies must be apps of the file."""
    data = parse_body(raw, filename=filename, limits=limits)
    if is_group(data):
        return admit_apps(flatten(data).apps, policy=policy, limits=limits)
    items = data if isinstance(data, list) else [data]
    admitted: list[Admitted] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        try:
            admitted.append(admit(item, policy=policy, limits=limits))
        except SpecError as e:
            prefix = f"[{i}] " if isinstance(data, list) else ""
            problems += [prefix + p for p in e.problems]
    if problems:
        raise SpecError(problems)
    return admitted


def admit_scale(data: Any, limits: Limits = LIMITS) -> int:
    """The `instances` of a scale request (`{"instances": 3}`), within the bounds."""
    instances = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(instances, int) or isinstance(instances, bool) or instances < 0:
        raise SpecError(["instances: must be a whole number >= 0"])
    if instances > limits.max_instances:
        raise SpecError([f"instances: {instances} is more than the {limits.max_instances} "
                         "accepted"])
    return instances


def _size(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB ({n} bytes)"
    if n % 1024 == 0:
        return f"{n // 1024} KiB ({n} bytes)"
    return f"{n} bytes"
