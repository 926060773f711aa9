"""Upper bounds of an app definition: no single request may cost kade more than a small app.

Each bound is generous for a real app and far below what hurts: 10,000 instances, 1,000 env
variables, 64 KiB in one string. The body cap comes first (the API never reads more), then the
document's depth (spec.document), then these: strings (length, control characters) on the
document as sent, counts and sizes on the validated app. docs/app-spec.md lists them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kade.spec.model import AppSpec

# C0 control characters other than tab, newline and carriage return: in no field do they
# mean anything but trouble (NUL ends C strings: env, argv, paths, Docker labels).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1024 * 1024  # one app definition (or one file of them), 1 MiB
    max_depth: int = 32
    max_string: int = 64 * 1024  # any string, except a template's source
    max_template_source: int = 512 * 1024
    max_key: int = 256  # a map key: env name, label key
    max_instances: int = 10_000
    max_cpus: float = 1024
    max_mem: float = 4 * 1024 * 1024  # MiB: 4 TiB
    max_disk: float = 16 * 1024 * 1024  # MiB: 16 TiB
    max_seconds: float = 366 * 24 * 3600  # any *Seconds field: a year
    max_backoff_factor: float = 100
    max_ports: int = 100
    max_env: int = 1000
    max_env_value: int = 32 * 1024
    max_labels: int = 1000
    max_label_value: int = 4096
    max_health_checks: int = 16
    max_constraints: int = 64
    max_volumes: int = 64
    max_parameters: int = 256
    max_args: int = 1000
    max_networks: int = 8
    max_routes: int = 64
    max_templates: int = 64
    max_fetch: int = 64  # each one a download of up to 1 GiB before the task starts


LIMITS = Limits()


def check_strings(data: Any, limits: Limits = LIMITS) -> list[str]:
    """Control characters and lengths of every string and key of a parsed document."""
    problems: list[str] = []
    _walk(data, "", limits, problems)
    return problems


def _walk(value: Any, where: str, limits: Limits, problems: list[str]) -> None:
    if len(problems) >= 20:  # enough to fix; a hostile document need not be listed whole
        return
    if isinstance(value, dict):
        for key, item in value.items():
            key = str(key)
            here = f"{where}.{key}" if where else key
            if len(key) > limits.max_key:
                problems.append(f"{where or 'document'}: a key of {len(key)} characters is "
                                f"longer than {limits.max_key}")
                continue
            if _CONTROL.search(key) or "\n" in key or "\r" in key:
                problems.append(f"{_shown(here)}: control characters are not allowed in a key")
                continue
            _walk(item, here, limits, problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{where}.{i}" if where else str(i), limits, problems)
    elif isinstance(value, str):
        cap = limits.max_template_source if _is_template_source(where) else limits.max_string
        if len(value) > cap:
            problems.append(f"{_shown(where)}: is {len(value)} characters long, at most {cap} "
                            "are accepted")
        elif (m := _CONTROL.search(value)) is not None:
            problems.append(f"{_shown(where)}: the control character "
                            f"U+{ord(m.group()):04X} is not allowed")


def _shown(where: str) -> str:
    return where if len(where) <= 200 else where[:200] + "…"


def _is_template_source(where: str) -> bool:
    parts = where.split(".")
    return len(parts) == 3 and parts[0] == "templates" and parts[2] == "source"


def check_bounds(app: AppSpec, limits: Limits = LIMITS) -> list[str]:
    """Counts and sizes of a validated app beyond the server's bounds."""
    problems: list[str] = []

    def most(where: str, value: float, limit: float, what: str = "") -> None:
        if value > limit:
            problems.append(f"{where}: {what or f'{value:g}'} is more than the {limit:g} "
                            "accepted")

    most("instances", app.instances, limits.max_instances)
    most("cpus", app.cpus, limits.max_cpus)
    most("mem", app.mem, limits.max_mem)
    most("disk", app.disk, limits.max_disk)
    most("backoffFactor", app.backoff_factor, limits.max_backoff_factor)
    for where, seconds in _seconds(app.wire(), ""):
        most(where, seconds, limits.max_seconds, f"{seconds:g} seconds")
    for i, template in enumerate(app.templates):
        if template.wait is not None:
            for name in ("min", "max"):
                seconds = getattr(template.wait, name)
                most(f"templates.{i}.wait.{name}", seconds, limits.max_seconds,
                     f"{seconds:g} seconds")
    for i, route in enumerate(app.routes):
        most(f"routes.{i}.portIndex", route.port_index, limits.max_ports - 1)
    counts = {
        "env": (len(app.env), limits.max_env),
        "labels": (len(app.labels), limits.max_labels),
        "healthChecks": (len(app.health_checks), limits.max_health_checks),
        "constraints": (len(app.constraints), limits.max_constraints),
        "args": (len(app.args or []), limits.max_args),
        "networks": (len(app.networks), limits.max_networks),
        "routes": (len(app.routes), limits.max_routes),
        "templates": (len(app.templates), limits.max_templates),
        "fetch": (len(app.fetch), limits.max_fetch),
        "portDefinitions": (len(app.port_definitions or []), limits.max_ports),
        "container.portMappings": (len(app.port_mappings()), limits.max_ports),
        "container.volumes": (len(app.container.volumes) if app.container else 0,
                              limits.max_volumes),
        "container.docker.parameters": (
            len(app.container.docker.parameters) if app.container and app.container.docker
            else 0, limits.max_parameters),
    }
    for where, (count, limit) in counts.items():
        most(where, count, limit, f"{count} entries")
    for name, value in app.env.items():
        most(f"env.{name}", len(value), limits.max_env_value, f"a value of {len(value)} characters")
    for key, value in app.labels.items():
        most(f"labels.{key}", len(value), limits.max_label_value,
             f"a value of {len(value)} characters")
    return problems


def _seconds(wire: Any, where: str) -> list[tuple[str, float]]:
    """Every `…Seconds` number of the app's wire form, with its path."""
    found: list[tuple[str, float]] = []
    if isinstance(wire, dict):
        for key, value in wire.items():
            here = f"{where}.{key}" if where else key
            if key.endswith("Seconds") and isinstance(value, int | float):
                found.append((here, float(value)))
            else:
                found.extend(_seconds(value, here))
    elif isinstance(wire, list):
        for i, item in enumerate(wire):
            found.extend(_seconds(item, f"{where}.{i}"))
    return found
