"""The pages of the web interface that show the whole platform: the overview and the apps
list. Each reads the store through the same functions and pure views the JSON API uses
(kade.api.apps.snapshot, kade.api.views, kade.api.nodes.read_snapshot)."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from kade import model
from kade.alerts.state import Alert
from kade.api.apps import list_apps_json
from kade.api.nodes import read_snapshot
from kade.api.security import principal_of
from kade.model import Deployment, decode_all
from kade.store.base import Store
from kade.ui.app_page import app_page_router
from kade.ui.editor import editor_router
from kade.ui.kv_pages import kv_pages_router
from kade.ui.logs import logs_pages_router
from kade.ui.ops import ops_router
from kade.ui.render import page

ZONE_ATTRIBUTES = ("az", "zone", "region")  # the first a node has names its zone
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
                ".woff2": "font/woff2"}


async def app_rows(store: Store, request: Request, now: float) -> list[dict[str, Any]]:
    """Every app as `GET /v1/apps` lists it (environment hidden from read tokens)."""
    return await list_apps_json(store, now, principal_of(request))


async def running_deployments(store: Store) -> list[Deployment]:
    entries, _ = await store.range(model.DEPLOYMENTS)
    found = [d for d in decode_all(entries, Deployment)[0] if d.status == "running"]
    return sorted(found, key=lambda d: d.started_at)


async def active_alerts(store: Store) -> list[Alert]:
    entries, _ = await store.range(model.ALERTS)
    found = [a for a in decode_all(entries, Alert)[0] if a.state in ("firing", "pending")]
    return sorted(found, key=lambda a: (a.state != "firing", a.active_at))


def zone_of(node: dict[str, Any]) -> str:
    attributes = node.get("attributes", {})
    for name in ZONE_ATTRIBUTES:
        if attributes.get(name):
            return f"{name} {attributes[name]}"
    return "no zone"


def ui_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    r.include_router(editor_router(store, clock))
    r.include_router(logs_pages_router(store, clock))
    r.include_router(ops_router(store, clock))
    r.include_router(kv_pages_router(store))
    r.include_router(app_page_router(store, clock))

    @r.get("/ui")
    @r.get("/ui/")
    async def overview(request: Request) -> Response:
        now = clock()
        nodes = await read_snapshot(store)
        shown = [nodes.json(name, now) for name in nodes.names()]
        zones: dict[str, list[dict[str, Any]]] = {}
        for node in shown:
            zones.setdefault(zone_of(node), []).append(node)
        return page(request, "overview.html", {
            "now": now, "apps": await app_rows(store, request, now),
            "deployments": await running_deployments(store),
            "alerts": [a for a in await active_alerts(store) if a.state == "firing"],
            "zones": sorted(zones.items()), "node_count": len(shown),
        }, title="Overview", nav="overview")

    @r.get("/ui/apps")
    async def apps(request: Request) -> Response:
        now = clock()
        return page(request, "apps.html", {"now": now,
                                           "apps": await app_rows(store, request, now)},
                    title="Apps", nav="apps")

    @r.get("/ui/static/{name}")
    async def static(name: str) -> Response:
        suffix = name[name.rfind("."):] if "." in name else ""
        if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
            raise HTTPException(404, f"no static file {name!r}")
        try:
            body = resources.files("kade.ui").joinpath("static", name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise HTTPException(404, f"no static file {name!r}") from None
        return Response(body, media_type=STATIC_TYPES[suffix],
                        headers={"Cache-Control": "public, max-age=300",
                                 "X-Content-Type-Options": "nosniff"})

    return r
