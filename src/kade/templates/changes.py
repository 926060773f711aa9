"""Deciding after a change: which templates to render again, when, and what `env: true`
templates put in the task's environment. Pure: times are passed in."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from kade.spec.templates import TemplateWait
from kade.templates.lookups import Reads
from kade.templates.render import TemplateError

T = TypeVar("T")


def affected_templates(
    reads: Mapping[T, Reads], *, keys: Iterable[str] = (), services: Iterable[str] = ()
) -> list[T]:
    """The templates (by whatever id the caller keys them) whose last render read any of the
    changed user KV `keys` or `services`."""
    keys, services = list(keys), list(services)
    return [t for t, r in reads.items() if r.touches(keys, services)]


def render_due(wait: TemplateWait | None, first_change: float, last_change: float) -> float:
    """When to render after changes seen at `first_change` .. `last_change`: once quiet for
    `wait.min`, but no later than `wait.max` after the first (consul-template's `wait`)."""
    if wait is None or wait.min <= 0:
        return last_change
    return min(last_change + wait.min, first_change + wait.effective_max)


_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_DQ_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$"}


def parse_env_file(text: str, destination: str = "") -> dict[str, str]:
    """`KEY=value` lines of a rendered `env: true` template → variables (Nomad's format):
    `#` comments, blank lines, optional `export`, values bare, 'single' or "double" quoted."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            raise TemplateError(destination, n, f"not a KEY=value line: {raw!r}")
        key, value = m.group(1), m.group(2)
        if value[:1] == '"':
            if len(value) < 2 or not value.endswith('"'):
                raise TemplateError(destination, n, f"unterminated double quote in {key}")
            value = re.sub(r"\\(.)", lambda e: _DQ_ESCAPES.get(e.group(1), "\\" + e.group(1)),
                           value[1:-1])
        elif value[:1] == "'":
            if len(value) < 2 or not value.endswith("'"):
                raise TemplateError(destination, n, f"unterminated single quote in {key}")
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value).strip()
        out[key] = value
    return out
