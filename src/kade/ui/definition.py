"""An app's definition as text for the editor: what a person would have written.

A stored app carries every field with its default filled in (`app.wire()`): some forty keys
where a person writes five. The editor shows the fields that differ from the defaults of an
app of the same kind (same id, same `cmd` or `container`), and only if that shorter text reads
back as exactly the same app; otherwise the whole definition.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml

from kade.deployments.intent import same_definition
from kade.spec import AppSpec, SpecError, parse_app

Format = Literal["yaml", "json"]
FORMATS: tuple[Format, ...] = ("yaml", "json")
_KIND = ("id", "cmd", "args", "container")  # what a default app of the same kind keeps
MAX_TRIES = 120  # readings of the definition spent on leaving out nested defaults

NEW_APP: dict[str, Any] = {
    "id": "/web",
    "instances": 1,
    "cpus": 0.1,
    "mem": 64,
    "container": {"docker": {"image": "nginx:alpine"}},
    "portDefinitions": [{"port": 0, "name": "http"}],
    "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}],
}


def written(app: AppSpec) -> dict[str, Any]:
    """`app` as a person would write it: its fields that are not the defaults, without empty
    values inside them; whichever of the shorter forms reads back as exactly `app`."""
    full = app.wire()
    full.pop("version", None)
    kind = {k: v for k, v in full.items() if k in _KIND and v is not None}
    try:
        base = parse_app(kind).app.wire()
    except SpecError:
        return full
    short = {k: v for k, v in full.items() if k in kind or (k not in _KIND and base.get(k) != v)}
    for candidate in (_without_empty(short), short):
        if _reads_as(candidate, app):
            return _drop_nested_defaults(dict(candidate), app)
    return full


def _reads_as(definition: dict[str, Any], app: AppSpec) -> bool:
    try:
        return same_definition(parse_app(definition).app, app)
    except SpecError:
        return False


def _drop_nested_defaults(definition: dict[str, Any], app: AppSpec) -> dict[str, Any]:
    """Inside objects (a health check, `container.docker`), each key whose removal still
    reads back as `app` is left out (`gracePeriodSeconds: 60`, `type: DOCKER`); at most
    MAX_TRIES readings (~0.3 ms each)."""
    tries = 0

    def visit(holder: dict[str, Any], top: bool) -> None:
        nonlocal tries
        for key in list(holder):
            value = holder[key]
            if isinstance(value, dict):
                visit(value, False)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        visit(item, False)
            elif not top and tries < MAX_TRIES:
                tries += 1
                kept = list(holder.items())
                del holder[key]
                if not _reads_as(definition, app):  # needed: back where it was written
                    holder.clear()
                    holder.update(kept)

    visit(definition, True)
    return definition


def _without_empty(value: Any) -> Any:
    """Nulls, empty lists and empty objects left out, at every depth."""
    if isinstance(value, dict):
        out = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def as_text(definition: dict[str, Any], fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(definition, indent=2, ensure_ascii=False) + "\n"
    return str(yaml.safe_dump(definition, sort_keys=False, default_flow_style=False,
                              allow_unicode=True, width=100))
