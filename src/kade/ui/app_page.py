"""The page of one app (`/ui/apps/<id>`): what it runs and why it fails, in one place.

Everything it shows is read through the same functions and views the JSON API uses
(`kade.api.views`, `kade.deployments.intent`, `deployment_json`), so the page and
`GET /v1/apps/<id>` never disagree; every action on it is a call of that API from the browser
(`static/kade.js`, `static/app.js`), so admission and authorization exist once. The stderr tail,
the diff of two versions and the metrics charts are fetched by `static/app.js` from
`/v1/logs`, `/v1/apps/<id>/diff` and `/api/v1/query_range`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from html import escape
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kade import model
from kade.alerts.state import Alert
from kade.api.apps import read_app
from kade.api.deployments import deployment_json
from kade.api.security import principal_of
from kade.auth import redact_env
from kade.catalog.build import service_name
from kade.deployments import intent
from kade.model import Deployment, decode_all
from kade.spec import AppSpec, normalize_id
from kade.store.base import Store
from kade.ui.render import NO_STORE, page

SHOWN_DEPLOYMENTS = 10  # the current one and the recent ones
SHOWN_VERSIONS = 50
SHOWN_ALERTS = 50
ENDED_STATES = frozenset({"TASK_FAILED", "TASK_FINISHED", "TASK_KILLED", "TASK_LOST"})
# the ranges of the metrics charts: name → seconds
RANGES = {"15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800}


def split_tasks(tasks: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
    """(active, ended) tasks, the newest first in each: ended ones are shown on demand."""
    ordered = sorted(tasks, key=lambda t: (t.get("startedAt") or t.get("stagedAt") or "",
                                           t["id"]), reverse=True)
    return ([t for t in ordered if t["state"] not in ENDED_STATES],
            [t for t in ordered if t["state"] in ENDED_STATES])


def last_failed(tasks: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The task that failed last (its exit code, message and stderr are what users look
    for when an app does not come up), None when none has."""
    failed = [t for t in tasks if t["state"] == "TASK_FAILED"]
    return max(failed, key=lambda t: (t.get("startedAt") or t.get("stagedAt") or "", t["id"]),
               default=None)


def dns_names(app: AppSpec) -> tuple[str, list[str], str | None]:
    """The app's service name, its DNS names (docs/discovery.md), and a problem when its
    name label was ignored."""
    name, problem = service_name(app)
    names = [f"{name}.service.consul"]
    for port in app.ports():
        if port.name:
            names.append(f"{port.name}.{name}.service.consul")
    return name, names, problem


def _label(value: str) -> str:
    return json.dumps(value)  # a PromQL string literal: quotes and backslashes escaped


def chart_queries(app_id: str, service: str) -> list[dict[str, str]]:
    """The charts of the app page: title, unit, PromQL. `$w` is replaced by the rate window
    the browser picks for the range shown (a few steps wide)."""
    app, svc = _label(app_id), _label(service)
    return [
        {"id": "cpu", "title": "CPU (cores)", "unit": "",
         "query": f"sum by (task) (rate(kade_task_cpu_seconds_total{{app={app}}}[$w]))"},
        {"id": "memory", "title": "Memory (working set)", "unit": "bytes",
         "query": f"sum by (task) (kade_task_memory_working_set_bytes{{app={app}}})"},
        {"id": "requests", "title": "Requests / s", "unit": "",
         "query": f"sum(rate(kade_service_requests_total{{service={svc}}}[$w]))"},
        {"id": "errors", "title": "Errors (5xx) / s", "unit": "",
         "query": f"sum(rate(kade_service_requests_total{{service={svc},code=\"5xx\"}}[$w]))"},
        {"id": "p99", "title": "p99 latency (s)", "unit": "s",
         "query": "histogram_quantile(0.99, sum by (le) (rate("
                  f"kade_service_request_duration_seconds_bucket{{service={svc}}}[$w])))"},
    ]


async def app_deployments(store: Store, app_id: str) -> list[dict[str, Any]]:
    entries, _ = await store.range(model.DEPLOYMENTS)
    found = [d for d in decode_all(entries, Deployment)[0] if d.app_id == app_id]
    found.sort(key=lambda d: (d.status != "running", -d.started_at))
    return [deployment_json(d) for d in found[:SHOWN_DEPLOYMENTS]]


async def app_alerts(store: Store, app_id: str) -> list[Alert]:
    entries, _ = await store.range(model.ALERTS)
    found = [a for a in decode_all(entries, Alert)[0] if a.labels.get("app") == app_id]
    order = {"firing": 0, "pending": 1, "resolved": 2}
    found.sort(key=lambda a: (order.get(a.state, 3),
                              -max(a.active_at, a.fired_at or 0, a.resolved_at or 0)))
    return found[:SHOWN_ALERTS]


def app_page_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/ui/apps/{path:path}")
    async def app_page(path: str, request: Request) -> Response:
        app_id = normalize_id(path)
        if app_id == "/":
            return RedirectResponse("/ui/apps", status_code=303)
        now = clock()
        try:
            shown, spec = await read_app(store, app_id, now)  # every task, ended ones too
        except HTTPException as e:
            if request.query_params.get("fragment") is None:
                raise
            # a live region of a page whose app is gone meanwhile: it says so
            return HTMLResponse(f'<p class="empty">{escape(str(e.detail))}</p>',
                                headers=NO_STORE)
        shown = redact_env(shown, principal_of(request))
        active, ended = split_tasks(shown.get("tasks", []))
        service, names, name_problem = dns_names(spec) if spec else (None, [], None)
        versions = (await intent.list_versions(store, app_id))[:SHOWN_VERSIONS]
        return page(request, "app.html", {
            "now": now, "app": shown, "app_id": app_id, "active": active, "ended": ended,
            "failed": last_failed(ended), "versions": versions,
            "current": shown.get("version"),
            "deployments": await app_deployments(store, app_id),
            "alerts": await app_alerts(store, app_id),
            "service": service, "dns_names": names, "name_problem": name_problem,
            "routes": spec.wire().get("routes", []) if spec else [],
            "charts": chart_queries(app_id, service) if service else [],
            "ranges": list(RANGES.items()),
        }, title=app_id, nav="apps")

    return r
