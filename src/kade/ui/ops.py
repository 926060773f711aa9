"""The operator's pages of the web interface: the nodes (eligibility, drains and their
progress), the alerts, and what the search of the top bar finds (its page is
kade.ui.services', which has the catalog).

Each page reads the store through the functions the JSON API uses (kade.api.nodes.
read_snapshot, kade.api.apps.snapshot) and shows what they give; every change goes through
the JSON API from the browser (`/v1/nodes/...`), so admission and authorization exist once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kade import model
from kade.alerts.state import Alert
from kade.api.nodes import Snapshot, read_snapshot
from kade.model import decode_all
from kade.store.base import Store
from kade.ui.render import page

MAX_QUERY = 200  # characters of a search
MAX_HITS = 20  # results of each kind a search shows
ALERT_STATES = ("firing", "pending", "resolved")
MAX_RESOLVED = 100  # resolved alerts shown, the latest first


@dataclass(frozen=True)
class Hit:
    kind: str
    label: str
    href: str
    detail: str = ""


def matching(query: str, candidates: Iterable[tuple[str, str]], limit: int = MAX_HITS
             ) -> tuple[list[tuple[str, str]], bool]:
    """The (text, detail) candidates whose text or detail holds every word of `query`
    (case-insensitive), the first `limit` of them in order, and whether more matched."""
    words = query.lower().split()
    found: list[tuple[str, str]] = []
    for text, detail in candidates:
        haystack = f"{text} {detail}".lower()
        if words and all(w in haystack for w in words):
            if len(found) == limit:
                return found, True
            found.append((text, detail))
    return found, False


def node_rows(snap: Snapshot, now: float, zone_of: Callable[[dict[str, Any]], str]
              ) -> list[dict[str, Any]]:
    """Every node as /v1/nodes shows it, with its zone and the tasks it runs."""
    rows = []
    for name in snap.names():
        shown = snap.json(name, now)
        tasks = sorted(snap.index.on.get(name, []), key=lambda t: (t.app_id, t.id))
        shown["zone"] = zone_of(shown)
        shown["taskList"] = [
            {"id": t.id, "app": t.app_id,
             "state": (s.state if (s := snap.index.statuses.get(t.id)) else "placed")}
            for t in tasks if t.desired == "run"]
        rows.append(shown)
    return rows


def alert_groups(alerts: Iterable[Alert]) -> dict[str, list[Alert]]:
    """Alerts by state: firing and pending the oldest first, resolved the latest first
    (at most MAX_RESOLVED)."""
    groups: dict[str, list[Alert]] = {state: [] for state in ALERT_STATES}
    for alert in alerts:
        groups.setdefault(alert.state, []).append(alert)
    for state in ("firing", "pending"):
        groups[state].sort(key=lambda a: a.active_at)
    groups["resolved"] = sorted(groups["resolved"], key=lambda a: -(a.resolved_at or 0)
                                )[:MAX_RESOLVED]
    return groups


async def find(store: Store, request: Request, query: str, now: float,
               services: Iterable[tuple[str, str]]) -> dict[str, tuple[list[Hit], bool]]:
    """What the search box finds: apps, tasks, nodes, services (name, apps) and KV keys."""
    from kade.ui.pages import app_rows  # kade.ui.pages includes these pages' router

    apps = await app_rows(store, request, now)
    snap = await read_snapshot(store)
    out: dict[str, tuple[list[Hit], bool]] = {}
    found, more = matching(query, ((a["id"], a.get("status", "")) for a in apps))
    out["Apps"] = ([Hit("app", t, f"/ui/apps{t}", d) for t, d in found], more)
    running = {t.id: t for t in snap.tasks if t.desired == "run"}
    found, more = matching(query, ((i, f"{t.app_id} on {t.node}") for i, t in running.items()))
    out["Tasks"] = ([Hit("task", i, f"/ui/apps{running[i].app_id}", d) for i, d in found],
                    more)
    nodes = ((n, " ".join(f"{k}={v}" for k, v in sorted(node.attributes.items())))
             for n in snap.names() for node in [snap.nodes.get(n)] if node is not None)
    found, more = matching(query, nodes)
    out["Nodes"] = ([Hit("node", t, f"/ui/nodes#node-{t}", d) for t, d in found], more)
    found, more = matching(query, services)
    out["Services"] = ([Hit("service", t, f"/ui/services#service-{t}", d) for t, d in found],
                       more)
    keys, _ = await store.range(model.KV)
    found, more = matching(query, ((e.key[len(model.KV):], "") for e in keys))
    out["KV keys"] = ([Hit("key", t, "/ui/kv/" + quote(t), "") for t, _ in found], more)
    return out


def ops_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    # kade.ui.pages includes this router: its helpers are imported when the router is made
    from kade.ui.pages import zone_of

    r = APIRouter(include_in_schema=False)

    @r.get("/ui/nodes")
    async def nodes(request: Request) -> Response:
        now = clock()
        rows = node_rows(await read_snapshot(store), now, zone_of)
        return page(request, "nodes.html", {"now": now, "nodes": rows},
                    title="Nodes", nav="nodes")

    @r.get("/ui/alerts")
    async def alerts(request: Request) -> Response:
        entries, _ = await store.range(model.ALERTS)
        groups = alert_groups(decode_all(entries, Alert)[0])
        return page(request, "alerts.html", {"now": clock(), "groups": groups},
                    title="Alerts", nav="alerts")

    return r
