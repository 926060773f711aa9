"""A routing table compiled for matching: built off to the side, then swapped in whole.

Matching dispatches on the request's host first (one dict lookup), then tries that host's
routers and the host-less routers merged in priority order. A router whose rule or service is
broken is left out and listed in `errors`; the rest of the table serves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kade.router.balancer import Server, Service, parse_server_url
from kade.router.metrics import Stats
from kade.router.rules import Matcher, Request, RuleError, parse_rule


class TableError(ValueError):
    """The table as a whole is unusable (the previous one stays in use)."""


class Route:
    __slots__ = ("name", "service", "app", "priority", "rule", "stats", "tls")

    def __init__(self, name: str, service: Service, app: str, priority: int, rule: str,
                 stats: Stats, tls: bool = False) -> None:
        self.name = name
        self.tls = tls  # served over HTTPS only: plain HTTP requests are redirected
        self.service = service
        self.app = app
        self.priority = priority
        self.rule = rule
        self.stats = stats


Candidates = tuple[tuple[Matcher | None, Route], ...]


class Table:
    def __init__(self, revision: int, data: dict[str, Any], routes: list[Route],
                 by_host: dict[str, Candidates], others: Candidates,
                 services: dict[str, Service], errors: list[dict[str, str]]) -> None:
        self.revision = revision
        self.data = data
        self.routes = routes
        self.by_host = by_host
        self.others = others
        self.services = services
        self.errors = errors

    def find(self, req: Request) -> Route | None:
        for match, route in self.by_host.get(req.host, self.others):
            if match is None or match(req):
                return route
        return None

    def servers(self) -> dict[str, Server]:
        return {s.url: s for svc in self.services.values() for s in svc.servers}


def empty_table() -> Table:
    return Table(0, {"revision": 0, "routers": [], "services": {}}, [], {}, (), {}, [])


ServerFor = Callable[[str, str], Server]  # (url, task) → the Server object for that url
StatsFor = Callable[[str, str], Stats]  # (router, service) → its Stats


def compile_table(data: Any, server_for: ServerFor, stats_for: StatsFor) -> Table:
    """Compile the table JSON (see docs/routing.md); raises TableError if its shape is wrong."""
    if not isinstance(data, dict):
        raise TableError("the table must be a JSON object")
    revision = data.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        raise TableError("revision: must be a whole number >= 0")
    routers = data.get("routers", [])
    services_in = data.get("services", {})
    if not isinstance(routers, list) or not isinstance(services_in, dict):
        raise TableError("routers must be a list and services an object")
    errors: list[dict[str, str]] = [e for e in data.get("errors", []) if isinstance(e, dict)]
    services: dict[str, Service] = {}
    for name, svc in services_in.items():
        problem, service = _service(str(name), svc, server_for)
        if problem:
            errors.append({"app": "", "router": "", "message": problem})
        services[str(name)] = service

    compiled: list[tuple[Route, Any]] = []
    seen: set[str] = set()
    for item in routers:
        if not isinstance(item, dict):
            errors.append({"app": "", "router": "", "message": "a router must be an object"})
            continue
        name = str(item.get("name", ""))
        app = str(item.get("app", ""))
        rule_text = item.get("rule")
        svc_name = str(item.get("service", ""))
        problem = ""
        if not name or name in seen:
            problem = f"router name {name!r} is empty or used twice"
        elif not isinstance(rule_text, str):
            problem = "rule: must be a string"
        elif svc_name not in services:
            problem = f"unknown service {svc_name!r}"
        prio = item.get("priority") or 0
        if not problem and (not isinstance(prio, int) or isinstance(prio, bool)):
            problem = "priority: must be a whole number"
        rule = None
        if not problem:
            try:
                rule = parse_rule(str(rule_text), str(item.get("ruleSyntax") or "v3"))
            except RuleError as e:
                problem = str(e)
        if problem or rule is None:
            errors.append({"app": app, "router": name, "message": problem})
            continue
        seen.add(name)
        priority = prio or len(rule.text)
        route = Route(name, services[svc_name], app, priority, rule.text,
                      stats_for(name, svc_name), item.get("tls") is True)
        compiled.append((route, rule))

    compiled.sort(key=lambda rr: (-rr[0].priority, rr[0].name))
    by_host_lists: dict[str, list[tuple[Matcher | None, Route]]] = {}
    others: list[tuple[Matcher | None, Route]] = []
    for route, rule in compiled:
        if rule.hosts is None:
            others.append((rule.match, route))
            for lst in by_host_lists.values():
                lst.append((rule.match, route))
        else:
            for host in rule.hosts:
                if host not in by_host_lists:
                    # routes seen so far without a host outrank this one: keep their order
                    by_host_lists[host] = list(others)
                by_host_lists[host].append((rule.rest, route))
    return Table(
        revision=revision,
        data=data,
        routes=[r for r, _ in compiled],
        by_host={h: tuple(v) for h, v in by_host_lists.items()},
        others=tuple(others),
        services=services,
        errors=errors,
    )


def _service(name: str, svc: Any, server_for: ServerFor) -> tuple[str, Service]:
    if not isinstance(svc, dict):
        return f"service {name!r}: must be an object", Service(name, "round-robin", [])
    strategy = svc.get("strategy", "round-robin")
    problems: list[str] = []
    if strategy not in ("round-robin", "least-conn"):
        problems.append(f"unknown strategy {strategy!r}, using round-robin")
        strategy = "round-robin"
    servers: list[Server] = []
    urls: set[str] = set()
    items = svc.get("servers", [])
    for item in items if isinstance(items, list) else []:
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str):
            problems.append("a server without url")
            continue
        try:
            parse_server_url(url)
        except ValueError as e:
            problems.append(str(e))
            continue
        if url in urls:
            continue
        urls.add(url)
        servers.append(server_for(url, str(item.get("task", ""))))
    problem = f"service {name!r}: " + "; ".join(problems) if problems else ""
    return problem, Service(name, strategy, servers)
