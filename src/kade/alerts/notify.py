"""Telling people: webhooks with Alertmanager's webhook body, and an existing Alertmanager
fed as Prometheus feeds it.

**Webhooks** (`--alert-webhook URL`, and a rule's own `webhooks`) get what Alertmanager's
webhook receiver would send them: alerts grouped by receiver and `alertname`, a group's first
notice at the evaluation where it fires (`group_wait` 0: alerts that fire together are
evaluated together), a change to it after `group_interval` (5 m), the same still-firing group
again after `repeat_interval` (4 h) — Alertmanager's defaults — and the resolution once.
**Alertmanager** (`--alertmanager URL`) gets every firing alert on `/api/v2/alerts` again
each `resend_delay` (1 m) with an end time four delays ahead, and a resolved one with its
end, as Prometheus sends them; it then groups, silences and routes.

The planning (`Dispatcher.due`) is pure and clocked by its caller; sending is `send`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from kade.alerts.state import Alert

log = logging.getLogger("kade.alerts")

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end"
MAX_ALERTS = 1000  # per notification; the rest counted in truncatedAlerts
TIMEOUT = 10.0


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@dataclass(frozen=True)
class Timing:
    # Alertmanager waits 30 s for more alerts of a new group; kade evaluates every rule at
    # once, so alerts that fire together are already together: the first notice goes at once.
    group_wait: float = 0.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    resend_delay: float = 60.0  # to an Alertmanager


@dataclass
class _Group:
    receiver: str
    alertname: str
    first_seen: float
    sent_at: float | None = None
    sent: frozenset[tuple[str, str]] = frozenset()  # (fingerprint, state) last notified


@dataclass(frozen=True)
class Notification:
    url: str
    body: dict[str, Any]


def _common(dicts: Sequence[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def webhook_body(receiver: str, alertname: str, alerts: Sequence[Alert],
                 external_url: str) -> dict[str, Any]:
    shown = list(alerts)[:MAX_ALERTS]
    status = "firing" if any(a.state == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": len(alerts) - len(shown),
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": alertname},
        "commonLabels": _common([a.labels for a in shown]),
        "commonAnnotations": _common([a.annotations for a in shown]),
        "externalURL": external_url,
        "alerts": [{
            "status": "firing" if a.state == "firing" else "resolved",
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.fired_at or a.active_at),
            "endsAt": rfc3339(a.resolved_at) if a.resolved_at else ZERO_TIME,
            "generatorURL": f"{external_url}/ui/alerts?rule={a.rule}",
            "fingerprint": a.fingerprint,
        } for a in shown],
    }


def alertmanager_body(alerts: Iterable[Alert], now: float, timing: Timing,
                      external_url: str) -> list[dict[str, Any]]:
    out = []
    for a in alerts:
        ends = a.resolved_at if a.state == "resolved" else now + 4 * timing.resend_delay
        out.append({"labels": a.labels, "annotations": a.annotations,
                    "startsAt": rfc3339(a.fired_at or a.active_at),
                    "endsAt": rfc3339(ends or now),
                    "generatorURL": f"{external_url}/ui/alerts?rule={a.rule}"})
    return out


@dataclass
class Dispatcher:
    """Which notifications are due now, given every alert and who wants them."""

    webhooks: Sequence[str] = ()  # for every rule
    alertmanagers: Sequence[str] = ()
    timing: Timing = field(default_factory=Timing)
    external_url: str = ""
    receiver: str = "kade"
    _groups: dict[tuple[str, str], _Group] = field(default_factory=dict)
    _am_sent: dict[str, tuple[str, float]] = field(default_factory=dict)  # fp → (state, at)

    def due(self, alerts: Iterable[Alert], rule_webhooks: Mapping[str, Sequence[str]],
            now: float) -> list[Notification]:
        """`rule_webhooks`: a rule key's own webhooks. Pending alerts are never sent."""
        shown = [a for a in alerts if a.state != "pending"]
        out = self._webhooks(shown, rule_webhooks, now)
        out += self._alertmanagers(shown, now)
        return out

    def _webhooks(self, alerts: list[Alert], rule_webhooks: Mapping[str, Sequence[str]],
                  now: float) -> list[Notification]:
        by_group: dict[tuple[str, str], list[Alert]] = {}
        for a in alerts:
            for url in (*self.webhooks, *rule_webhooks.get(a.rule, ())):
                by_group.setdefault((url, a.labels.get("alertname", "")), []).append(a)
        out = []
        t = self.timing
        for key, members in by_group.items():
            group = self._groups.get(key)
            if group is None:
                if not any(a.state == "firing" for a in members):
                    continue  # resolved before anyone was told: nothing to say
                group = self._groups[key] = _Group(key[0], key[1], now)
            state = frozenset((a.fingerprint, a.state) for a in members)
            if group.sent_at is None:
                ready = now - group.first_seen >= t.group_wait
            elif state != group.sent:
                ready = now - group.sent_at >= t.group_interval
            else:
                ready = (any(a.state == "firing" for a in members)
                         and now - group.sent_at >= t.repeat_interval)
            if not ready:
                continue
            members.sort(key=lambda a: (a.state != "firing", a.fingerprint))
            out.append(Notification(key[0], webhook_body(self.receiver, key[1], members,
                                                         self.external_url)))
            group.sent_at, group.sent = now, state
        for key in [k for k in self._groups if k not in by_group]:
            del self._groups[key]  # every alert of it is gone (resolved and told)
        return out

    def _alertmanagers(self, alerts: list[Alert], now: float) -> list[Notification]:
        if not self.alertmanagers:
            return []
        send = []
        for a in alerts:
            last = self._am_sent.get(a.fingerprint)
            if a.state == "resolved" and last is not None and last[0] == "resolved":
                continue  # its end was sent
            if last is None or last[0] != a.state or now - last[1] >= self.timing.resend_delay:
                if a.state == "resolved" and last is None:
                    continue  # never sent firing: no end to send
                send.append(a)
                self._am_sent[a.fingerprint] = (a.state, now)
        known = {a.fingerprint for a in alerts}
        for fp in [fp for fp in self._am_sent if fp not in known]:
            del self._am_sent[fp]
        if not send:
            return []
        body = alertmanager_body(send, now, self.timing, self.external_url)
        return [Notification(f"{url.rstrip('/')}/api/v2/alerts", {"alerts": body})
                for url in self.alertmanagers]


async def send(client: httpx.AsyncClient, notification: Notification) -> str | None:
    """POST it; the error (as text) if it failed, None if it was taken."""
    body: Any = notification.body
    if notification.url.endswith("/api/v2/alerts"):
        body = body["alerts"]  # Alertmanager's API takes the list itself
    try:
        r = await client.post(notification.url, json=body, timeout=TIMEOUT)
    except httpx.HTTPError as e:
        return f"{notification.url}: {e or type(e).__name__}"
    if r.status_code >= 300:
        return f"{notification.url}: HTTP {r.status_code} {r.text[:200]}"
    return None
