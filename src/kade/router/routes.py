"""The routing table of all apps, built by the control plane (pure: same input, same output).

Routes come from an app's `routes` field and from Traefik-style labels, so that apps moved
from a Marathon + Traefik set-up keep their labels:

    traefik.enable=false                                    (label routers off for this app)
    traefik.http.routers.<router>.rule=Host(`a`)
    traefik.http.routers.<router>.ruleSyntax=v2             (a Traefik 2 rule; default v3)
    traefik.http.routers.<router>.priority=10
    traefik.http.routers.<router>.service=<service>
    traefik.http.routers.<router>.tls=true                  (HTTPS only; so is
    traefik.http.routers.<router>.entrypoints=websecure      an HTTPS-only entrypoint list)
    traefik.http.services.<service>.loadbalancer.server.port=<container port>
    kade.http.services.<service>.loadbalancer.server.portindex=<index>
    kade.http.services.<service>.loadbalancer.strategy=round-robin|least-conn

A route with a problem is left out and reported as a RouteError; the others keep serving.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kade.catalog.build import service_name
from kade.router.rules import RuleError, parse_rule
from kade.spec.model import AppSpec

STRATEGIES = ("round-robin", "least-conn")
_STRATEGY_ALIASES = {"wrr": "round-robin", "roundrobin": "round-robin", "rr": "round-robin",
                     "p2c": "least-conn", "leastconn": "least-conn", "least-connections":
                     "least-conn"}
_ROUTER_LABEL = re.compile(r"^traefik\.http\.routers\.([^.]+)\.(.+)$")
_SERVICE_LABEL = re.compile(r"^(traefik|kade)\.http\.services\.([^.]+)\.loadbalancer\.(.+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Backend:
    """A healthy task of an app: where its ports are reachable, in the app's port order."""

    task_id: str
    host: str
    ports: list[int]


@dataclass(frozen=True)
class RouteError:
    app: str
    router: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"app": self.app, "router": self.router, "message": self.message}


@dataclass
class _Service:
    port_index: int = 0
    strategy: str = "round-robin"
    problem: str = ""


@dataclass
class _Router:
    name: str
    rule: str
    priority: int
    service: str
    problem: str = ""
    tls: bool = False
    syntax: str = "v3"


@dataclass
class _Names:
    """Router and service names are global: the first app (by id) to use one keeps it."""

    routers: dict[str, str] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)


def build_table(
    apps: Mapping[str, AppSpec], backends: Mapping[str, list[Backend]], revision: int
) -> tuple[dict[str, Any], list[RouteError]]:
    """The router's table for `apps`, with `backends` the healthy tasks of each app id."""
    routers: list[dict[str, Any]] = []
    services: dict[str, dict[str, Any]] = {}
    errors: list[RouteError] = []
    names = _Names()
    for app_id in sorted(apps):
        app = apps[app_id]
        _add_app(app, backends.get(app_id, []), names, routers, services, errors)
    return {"revision": revision, "routers": routers, "services": services}, errors


def _add_app(
    app: AppSpec,
    backends: list[Backend],
    names: _Names,
    routers_out: list[dict[str, Any]],
    services_out: dict[str, dict[str, Any]],
    errors: list[RouteError],
) -> None:
    default = service_name(app)[0]  # the name discovery uses too (kade.service.name)
    label_routers_on = app.labels.get("traefik.enable", "true").strip().lower() != "false"
    services = _label_services(app) if label_routers_on else {}
    _strategy_labels(app, services, default)
    candidates: list[_Router] = []
    for j, spec in enumerate(app.routes):
        name = spec.name or (default if j == 0 else f"{default}-{j}")
        svc_name = default if spec.port_index == 0 else f"{default}-port{spec.port_index}"
        if svc_name not in services:
            services[svc_name] = _Service(port_index=spec.port_index,
                                          strategy=_default_strategy(app, svc_name))
        candidates.append(_Router(name, spec.rule, spec.priority or 0, svc_name,
                                  tls=spec.tls, syntax=spec.rule_syntax))
    if label_routers_on:
        candidates.extend(_label_routers(app, services, default))

    port_count = len(app.ports())
    for r in candidates:
        problem = r.problem or _check_router(r, names, app.id)
        svc = services.get(r.service)
        if not problem and svc is None:
            problem = f"unknown service {r.service!r}"
        if not problem and svc is not None:
            problem = svc.problem or _check_service(r.service, svc, names, app.id, port_count)
        if problem:
            errors.append(RouteError(app.id, r.name, problem))
            continue
        assert svc is not None
        names.routers[r.name] = app.id
        names.services[r.service] = app.id
        entry = {"name": r.name, "rule": r.rule, "priority": r.priority,
                 "service": r.service, "app": app.id}
        if r.tls:
            entry["tls"] = True
        if r.syntax != "v3":
            entry["ruleSyntax"] = r.syntax
        routers_out.append(entry)
        if r.service not in services_out:
            services_out[r.service] = {"strategy": svc.strategy,
                                       "servers": _servers(backends, svc.port_index)}


def _check_router(r: _Router, names: _Names, app_id: str) -> str:
    if not _NAME.match(r.name):
        return f"invalid router name {r.name!r}"
    owner = names.routers.get(r.name)
    if owner is not None:
        return f"router name {r.name!r} is already used by app {owner}"
    try:
        parse_rule(r.rule, r.syntax)
    except RuleError as e:
        return str(e)
    return ""


def _check_service(name: str, svc: _Service, names: _Names, app_id: str, port_count: int) -> str:
    owner = names.services.get(name)
    if owner is not None and owner != app_id:
        return f"service name {name!r} is already used by app {owner}"
    if svc.port_index >= port_count:
        return f"service {name!r}: port index {svc.port_index} is out of range: " \
               f"the app has {port_count} port(s)"
    return ""


def _servers(backends: list[Backend], index: int) -> list[dict[str, str]]:
    out = []
    for b in backends:
        if index < len(b.ports) and b.ports[index]:
            host = f"[{b.host}]" if ":" in b.host else b.host
            out.append({"url": f"http://{host}:{b.ports[index]}", "task": b.task_id})
    return out


def _normalize_strategy(value: str) -> str | None:
    v = value.strip().lower()
    v = _STRATEGY_ALIASES.get(v, v)
    return v if v in STRATEGIES else None


def _default_strategy(app: AppSpec, service: str) -> str:
    value = app.labels.get(f"kade.http.services.{service}.loadbalancer.strategy", "")
    return _normalize_strategy(value) or "round-robin"


def _label_services(app: AppSpec) -> dict[str, _Service]:
    services: dict[str, _Service] = {}
    ports = app.ports()
    for key, value in sorted(app.labels.items()):
        m = _SERVICE_LABEL.match(key)
        if not m:
            continue
        _, name, attr = m.groups()
        svc = services.setdefault(name, _Service())
        if not _NAME.match(name):
            svc.problem = f"invalid service name {name!r}"
        elif attr == "server.port":
            index = _port_index(app, value, ports)
            if index is None:
                svc.problem = f"service {name!r}: port {value!r} is not one of the app's ports"
            else:
                svc.port_index = index
        elif attr.lower() == "server.portindex":
            if not value.strip().isdigit():
                svc.problem = f"service {name!r}: port index {value!r} is not a whole number"
            else:
                svc.port_index = int(value)
        elif attr == "strategy":
            strategy = _normalize_strategy(value)
            if strategy is None:
                svc.problem = f"service {name!r}: unknown strategy {value!r}, " \
                              f"expected one of {list(STRATEGIES)}"
            else:
                svc.strategy = strategy
    return services


def _strategy_labels(app: AppSpec, services: dict[str, _Service], default: str) -> None:
    """kade's strategy label may name the default service without any other service label."""
    if default not in services:
        services[default] = _Service(strategy=_default_strategy(app, default))


def _port_index(app: AppSpec, value: str, ports: list[Any]) -> int | None:
    """A container port (bridge) or declared port (host network) → the task's port index."""
    if not value.strip().isdigit():
        return None
    port = int(value)
    for p in ports:
        if p.container_port == port:
            return int(p.index)
    for i, d in enumerate(app.port_definitions or []):
        if d.port == port and i < len(ports):
            return i
    return None


def _label_routers(app: AppSpec, services: dict[str, _Service], default: str) -> list[_Router]:
    found: dict[str, dict[str, str]] = {}
    for key, value in sorted(app.labels.items()):
        m = _ROUTER_LABEL.match(key)
        if m:
            found.setdefault(m.group(1), {})[m.group(2)] = value
    label_services = [n for n in services if n != default or _has_service_label(app, n)]
    out: list[_Router] = []
    for name, attrs in found.items():
        rule = attrs.get("rule", "").strip()
        router = _Router(name, rule, 0, attrs.get("service", "").strip(),
                         tls=_label_tls(attrs), syntax=label_rule_syntax(attrs))
        if not rule:
            router.problem = f"router {name!r} has no rule"
        elif "middlewares" in attrs:
            router.problem = "middlewares are not supported; the router is left out " \
                             "so that it does not serve without them"
        prio = attrs.get("priority", "0").strip()
        if not router.problem and not re.fullmatch(r"-?\d+", prio):
            router.problem = f"priority {prio!r} is not a whole number"
        elif not router.problem:
            router.priority = int(prio)
        if not router.service:
            if len(label_services) > 1:
                router.problem = router.problem or (
                    f"several services are defined: set traefik.http.routers.{name}.service")
                router.service = default
            else:
                router.service = label_services[0] if label_services else default
        out.append(router)
    return out


def label_rule_syntax(attrs: Mapping[str, str]) -> str:
    """A router's `ruleSyntax` label: v3 (default) or v2 (checked by the rule parser)."""
    return attrs.get("ruleSyntax", "").strip() or "v3"


_SECURE_ENTRYPOINTS = frozenset({"websecure", "https"})


def _label_tls(attrs: dict[str, str]) -> bool:
    """`tls=true`, or entrypoints that are all HTTPS ones (Traefik's usual `websecure`)."""
    if attrs.get("tls", "").strip().lower() == "true":
        return True
    points = {p.strip().lower() for p in attrs.get("entrypoints", "").split(",") if p.strip()}
    return bool(points) and points <= _SECURE_ENTRYPOINTS


def _has_service_label(app: AppSpec, name: str) -> bool:
    return any(_SERVICE_LABEL.match(k) and k.split(".")[3] == name for k in app.labels)
