"""The services page of the web interface: the catalog (every service's endpoints, their
health and DNS names) and the routing table with the routes that could not be built.

Both are read from the objects the JSON API answers from: the catalog view
(kade.catalog.view, behind `/v1/catalog/*` and `/v1/health/*`) and the control plane's
routing (kade.api.routing.Routing, behind `/v1/router/table`, which only nodes may ask, and
`/v1/router/errors`). The page shows them to any read token, without the TLS keys.
The search page is here too: it finds services in the catalog as well as what the store
holds (kade.ui.ops.find).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kade.api.routing import Routing
from kade.catalog.model import Catalog, Instance, worst
from kade.ui.ops import MAX_QUERY, Hit, find
from kade.ui.render import page

DOMAIN = "consul"


def service_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """Each service: its worst health, how many endpoints pass, its DNS names, its
    endpoints (node, address:port, health, tags)."""
    rows = []
    for name in sorted(catalog.services):
        instances: tuple[Instance, ...] = catalog.services[name]
        tags = sorted({t for i in instances for t in i.tags})
        rows.append({
            "name": name,
            "health": worst(i.status for i in instances) if instances else "critical",
            "passing": sum(1 for i in instances if i.passing),
            "total": len(instances),
            "apps": sorted({i.app_id for i in instances}),
            "dns": [f"{name}.service.{DOMAIN}", *(f"{t}.{name}.service.{DOMAIN}" for t in tags)],
            "endpoints": [{"task": i.task_id, "node": i.node, "address": i.address,
                           "port": i.port, "health": i.status, "tags": list(i.tags),
                           "checks": [(c.name, c.status, c.output) for c in i.checks]}
                          for i in instances],
        })
    return rows


def route_rows(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The routers of the table, highest priority first, each with its service's servers."""
    services = table.get("services", {})
    rows = []
    for r in table.get("routers", []):
        servers = services.get(r["service"], {}).get("servers", [])
        rows.append({**r, "tls": bool(r.get("tls")), "priority": r.get("priority") or 0,
                     "servers": [s.get("url", "") for s in servers]})
    return sorted(rows, key=lambda r: (-int(r.get("priority") or 0), r["name"]))


def services_pages_router(routing: Routing, clock: Callable[[], float] = time.time
                          ) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/ui/services")
    async def services(request: Request) -> Response:
        catalog = routing.view.catalog
        return page(request, "services.html", {
            "services": service_rows(catalog), "problems": list(catalog.problems),
            "routes": route_rows(routing.table), "revision": routing.table.get("revision", 0),
            "errors": [{"app": e.app, "router": e.router, "message": e.message}
                       for e in routing.errors]}, title="Services", nav="services")

    @r.get("/ui/search")
    async def search(request: Request, q: str = "") -> Response:
        query = q.strip()
        error = f"q: at most {MAX_QUERY} characters" if len(query) > MAX_QUERY else ""
        hits: dict[str, tuple[list[Hit], bool]] = {}
        if query and not error:
            services = ((name, " ".join(sorted({i.app_id for i in instances})))
                        for name, instances in sorted(routing.view.catalog.services.items()))
            hits = await find(routing.store, request, query, clock(), services)
        return page(request, "search.html", {"q": query, "error": error, "hits": hits},
                    title=f"Search {query}" if query else "Search", nav="search",
                    status=400 if error else 200)

    return r
