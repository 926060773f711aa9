"""`/v1/alerts` and `/v1/alert-rules`: what is pending, firing or resolved, and the rules.

    GET    /v1/alerts?state=firing&app=/shop/web     alerts, newest change first
    GET    /v1/alert-rules                           every rule: cluster, built-in, apps'
    PUT    /v1/alert-rules                           the cluster-wide set, replaced at once
    DELETE /v1/alert-rules/<name>

Rules of apps are changed with their app (`"alerts"`); the cluster-wide set needs an admin
token (it decides who is woken up for everyone), reading needs a `read` token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.exceptions import HTTPException

from kade import model
from kade.admission.alert_rules import admit_rules
from kade.alerts.manager import all_rules
from kade.alerts.state import Alert
from kade.model import decode_all
from kade.spec import AppSpec, SpecError
from kade.spec.alerts import AlertRule
from kade.store.base import Compare, Delete, Put, Store

MAX_ALERTS = 10_000


def alerts_router(store: Store, *, builtin: bool = True,
                  errors: Callable[[], dict[str, str]] = dict) -> APIRouter:
    """`errors`: why rules cannot be evaluated, as the leader in this process last saw."""
    r = APIRouter()

    @r.get("/v1/alerts")
    async def list_alerts(
        state: Annotated[str | None, Query(pattern="^(pending|firing|resolved)$")] = None,
        app: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> dict[str, Any]:
        entries, _ = await store.range(model.ALERTS)
        alerts = decode_all(entries, Alert)[0]
        shown = [a for a in alerts if (state is None or a.state == state)
                 and (app is None or a.labels.get("app") == app)]
        shown.sort(key=lambda a: max(a.active_at, a.fired_at or 0, a.resolved_at or 0),
                   reverse=True)
        return {"alerts": [a.model_dump() for a in shown[:MAX_ALERTS]]}

    @r.get("/v1/alert-rules")
    async def list_rules() -> dict[str, Any]:
        apps_entries, _ = await store.range(model.APPS)
        rules_entries, _ = await store.range(model.ALERT_RULES)
        apps = {a.id: a for a in decode_all(apps_entries, AppSpec)[0]}
        cluster = {r.name: r for r in decode_all(rules_entries, AlertRule)[0]}
        problems = errors()
        out = []
        for keyed in all_rules(apps, cluster, builtin):
            source = ("app" if keyed.app else "builtin" if keyed.key.startswith("builtin/")
                      else "cluster")
            item = {"key": keyed.key, "source": source, "rule": keyed.rule.wire()}
            if keyed.app:
                item["app"] = keyed.app
            if keyed.key in problems:
                item["error"] = problems[keyed.key]
            out.append(item)
        return {"rules": out}

    @r.put("/v1/alert-rules")
    async def apply_rules(request: Request) -> dict[str, Any]:
        try:
            rules = admit_rules(await request.body())
        except SpecError as e:
            raise HTTPException(400, str(e)) from None
        entries, _ = await store.range(model.ALERT_RULES)
        present = {e.key: e for e in entries}
        wanted = {model.ALERT_RULES + r.name: r for r in rules}
        ops: list[Put | Delete] = [
            Put(key, rule.model_dump_json(by_alias=True, exclude_none=True).encode())
            for key, rule in wanted.items()]
        removed = [key for key in present if key not in wanted]
        ops += [Delete(key) for key in removed]
        guards = [Compare(e.key, e.mod_revision) for e in entries]
        result = await store.txn(guards, ops)
        if not result.succeeded:
            raise HTTPException(409, "the alert rules changed meanwhile: apply them again")
        return {"rules": sorted(r.name for r in rules),
                "removed": sorted(k.removeprefix(model.ALERT_RULES) for k in removed)}

    @r.delete("/v1/alert-rules/{name}")
    async def delete_rule(name: str) -> dict[str, Any]:
        if await store.get(model.ALERT_RULES + name) is None:
            raise HTTPException(404, f"no cluster-wide alert rule {name!r}")
        await store.delete(model.ALERT_RULES + name)
        return {"deleted": name}

    return r
