"""`/v1/alert-rules` and `/v1/alerts` through the API's front door."""

from __future__ import annotations

import httpx

from kade import model
from kade.alerts.state import Alert
from kade.api.alerts import alerts_router
from kade.api.app import create_app
from kade.auth import create_token, needed_permission
from kade.store.sqlite import SqliteStore

NOW = 1_700_000_000.0
RULES = """
groups:
  - name: shop
    rules:
      - alert: HighErrorRate
        expr: sum(rate(kade_service_requests_total{code="5xx"}[1m])) > 1
        for: 2m
        labels: {team: shop}
        annotations: {summary: "{{ $value }} errors a second"}
"""


async def _client(store: SqliteStore, role: str) -> httpx.AsyncClient:
    text, _ = await create_token(store, role=role, now=NOW)  # type: ignore[arg-type]
    app = create_app(store, extra=[alerts_router(store, errors=lambda: {
        "builtin/KadeNodeDown": "no data source"})])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="http://127.0.0.1:7400",
                             headers={"Authorization": f"Bearer {text}"})


def test_permissions() -> None:
    assert needed_permission("GET", "/v1/alerts") == "read"
    assert needed_permission("GET", "/v1/alert-rules") == "read"
    assert needed_permission("PUT", "/v1/alert-rules") == "admin"
    assert needed_permission("DELETE", "/v1/alert-rules/x") == "admin"


async def test_apply_a_prometheus_rule_file_then_list_and_delete(store: SqliteStore) -> None:
    async with await _client(store, "admin") as api:
        r = await api.put("/v1/alert-rules", content=RULES,
                          headers={"Content-Type": "application/yaml"})
        assert r.status_code == 200 and r.json() == {"rules": ["HighErrorRate"], "removed": []}
        rules = (await api.get("/v1/alert-rules")).json()["rules"]
        mine = next(x for x in rules if x["key"] == "cluster/HighErrorRate")
        assert mine["source"] == "cluster" and mine["rule"]["for"] == 120.0
        builtin = next(x for x in rules if x["key"] == "builtin/KadeNodeDown")
        assert builtin["error"] == "no data source"
        r = await api.put("/v1/alert-rules", json={"rules": []})
        assert r.json() == {"rules": [], "removed": ["HighErrorRate"]}
        assert (await api.delete("/v1/alert-rules/HighErrorRate")).status_code == 404


async def test_bad_rules_change_nothing_and_say_where(store: SqliteStore) -> None:
    async with await _client(store, "admin") as api:
        await api.put("/v1/alert-rules", content=RULES,
                      headers={"Content-Type": "application/yaml"})
        r = await api.put("/v1/alert-rules", json={"rules": [
            {"name": "A", "expr": "up =="}, {"name": "B", "expr": "up", "for": "soon"}]})
        assert r.status_code == 400
        assert r.json()["message"] == ("rules.0.expr: not PromQL: invalid promql query; "
                                       "rules.1: for: 'soon' is not a duration (use e.g. "
                                       "250ms, 10s, 5m)")
        entries, _ = await store.range(model.ALERT_RULES)
        assert [e.key for e in entries] == ["alertrules/HighErrorRate"]


async def test_a_read_token_lists_but_cannot_apply(store: SqliteStore) -> None:
    alert = Alert(rule="cluster/X", fingerprint="f1", labels={"alertname": "X", "app": "/a"},
                  state="firing", active_at=NOW, fired_at=NOW, last_seen=NOW)
    await store.put(model.ALERTS + "f1", alert.dump())
    async with await _client(store, "read") as api:
        got = (await api.get("/v1/alerts", params={"state": "firing"})).json()["alerts"]
        assert [a["labels"]["alertname"] for a in got] == ["X"]
        assert (await api.get("/v1/alerts", params={"app": "/b"})).json()["alerts"] == []
        r = await api.put("/v1/alert-rules", json={"rules": []})
        assert r.status_code == 403
