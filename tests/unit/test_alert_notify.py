"""When notifications go out, as Alertmanager times them (group_wait, group_interval,
repeat_interval) for webhooks and as Prometheus resends to an Alertmanager."""

from __future__ import annotations

from kade.alerts.notify import ZERO_TIME, Dispatcher, Timing, rfc3339
from kade.alerts.state import Alert

T = Timing(group_wait=30, group_interval=300, repeat_interval=3600, resend_delay=60)


def alert(app: str, state: str = "firing", at: float = 0, resolved: float | None = None,
          name: str = "HighErrors") -> Alert:
    return Alert(rule=f"cluster/{name}", fingerprint=f"fp-{name}-{app}",
                 labels={"alertname": name, "app": app, "team": "shop"},
                 annotations={"summary": f"{app} fails"}, state=state,  # type: ignore[arg-type]
                 value=0.2, active_at=at, fired_at=at if state != "pending" else None,
                 resolved_at=resolved, last_seen=at)


def test_webhook_timing_and_body() -> None:
    d = Dispatcher(webhooks=["http://hook"], timing=T, external_url="http://kade")
    a = alert("/web")
    assert d.due([a], {}, 0) == []  # group_wait
    [n] = d.due([a], {}, 30)
    assert n.url == "http://hook"
    assert n.body["status"] == "firing" and n.body["groupLabels"] == {"alertname": "HighErrors"}
    assert n.body["commonLabels"] == {"alertname": "HighErrors", "app": "/web", "team": "shop"}
    assert n.body["alerts"][0]["startsAt"] == rfc3339(0)
    assert n.body["alerts"][0]["endsAt"] == ZERO_TIME
    assert n.body["version"] == "4" and n.body["receiver"] == "kade"
    b = alert("/api", at=40)
    assert d.due([a, b], {}, 60) == []  # a change waits for group_interval
    [n] = d.due([a, b], {}, 330)
    assert len(n.body["alerts"]) == 2
    assert n.body["commonLabels"] == {"alertname": "HighErrors", "team": "shop"}
    assert d.due([a, b], {}, 331 + 3000) == []
    [n] = d.due([a, b], {}, 330 + 3600)  # still firing: repeated
    gone = alert("/web", state="resolved", resolved=4000)
    [n] = d.due([gone, b], {}, 330 + 3600 + 300)
    assert [x["status"] for x in n.body["alerts"]] == ["firing", "resolved"]
    assert n.body["alerts"][1]["endsAt"] == rfc3339(4000)


def test_a_rule_s_own_webhooks_and_pending_alerts() -> None:
    d = Dispatcher(timing=T)
    assert d.due([alert("/web", state="pending")], {"cluster/HighErrors": ["http://own"]},
                 100) == []
    d.due([alert("/web")], {"cluster/HighErrors": ["http://own"]}, 100)
    [n] = d.due([alert("/web")], {"cluster/HighErrors": ["http://own"]}, 130)
    assert n.url == "http://own"


def test_resolved_before_anyone_was_told_says_nothing() -> None:
    d = Dispatcher(webhooks=["http://hook"], timing=T)
    assert d.due([alert("/web", state="resolved", resolved=5)], {}, 100) == []


def test_alertmanager_gets_firing_alerts_every_resend_delay_and_the_end_once() -> None:
    d = Dispatcher(alertmanagers=["http://am:9093/"], timing=T, external_url="http://kade")
    a = alert("/web")
    [n] = d.due([a], {}, 0)
    assert n.url == "http://am:9093/api/v2/alerts"
    [sent] = n.body["alerts"]
    assert sent["endsAt"] == rfc3339(240) and sent["labels"]["app"] == "/web"
    assert d.due([a], {}, 59) == []
    assert len(d.due([a], {}, 60)) == 1
    [n] = d.due([alert("/web", state="resolved", resolved=70)], {}, 70)
    assert n.body["alerts"][0]["endsAt"] == rfc3339(70)
    assert d.due([alert("/web", state="resolved", resolved=70)], {}, 200) == []
