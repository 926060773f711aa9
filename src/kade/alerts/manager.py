"""Alerting, run by the leader: every rule evaluated each interval over the node's (or the
cluster's: kade.metrics.remote) metrics, alerts kept in the store (`alerts/<fingerprint>`)
so that they survive a leader's change and appear on `/v1/events`, and notifications sent.
A round in which a live node did not answer resolves none of the alerts whose series may be
missing and fires no "no data" (kade.alerts.state.step_or_keep); each round reads the nodes
through one query source, so a node that did not answer is waited for once a round.

Rules come from three places: apps (`"alerts"` of their current version; their alerts get
the app's `app` label), the cluster (`alertrules/<name>`, `kade alert-rules apply`), and
kade's built-in ones (kade.alerts.builtin), which a cluster rule of the same name replaces.

A state change (pending, firing, resolved) is written at once; a firing alert's value is
refreshed in the store at most once a minute, so a steady alert does not churn the history.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from kade import model
from kade.alerts.annotations import render_annotations
from kade.alerts.builtin import BUILTIN
from kade.alerts.notify import Dispatcher, Notification, send
from kade.alerts.state import Alert, Change, Element, step_or_keep
from kade.metrics.promql import QueryError, instant_query
from kade.metrics.series import NAME, Partial, QuerySources, Source
from kade.metrics.values import Scalar, Vector
from kade.spec import AppSpec
from kade.spec.alerts import AlertRule
from kade.store.base import Store, StoreError
from kade.store.mirror import Mirror, records
from kade.templates.isolate import TemplateWorkers

log = logging.getLogger("kade.alerts")

INTERVAL = 10.0
VALUE_REFRESH = 60.0  # seconds between store writes of a steady firing alert's value

APPS = records(model.APPS, AppSpec, name=model.app_id_of_key)
RULES = records(model.ALERT_RULES, AlertRule)
ALERTS = records(model.ALERTS, Alert)


@dataclass(frozen=True)
class KeyedRule:
    key: str  # `<app id>/<name>`, `cluster/<name>`, `builtin/<name>`
    rule: AlertRule
    app: str | None = None


def all_rules(apps: dict[str, AppSpec], cluster: dict[str, AlertRule],
              builtin: bool) -> list[KeyedRule]:
    out = [KeyedRule(f"cluster/{r.name}", r) for r in cluster.values()]
    if builtin:
        out += [KeyedRule(f"builtin/{r.name}", r) for r in BUILTIN if r.name not in cluster]
    for app_id, app in sorted(apps.items()):
        out += [KeyedRule(f"{app_id}/{r.name}", r, app_id) for r in app.alerts]
    return out


def evaluate(source: Source, rule: KeyedRule, now: float) -> list[Element]:
    """The rule's expression now, as elements; a broken one raises QueryError."""
    value = instant_query(source, rule.rule.expr, int(now * 1000))
    if isinstance(value, Scalar):
        return [Element({"app": rule.app} if rule.app else {}, value.value)]
    if not isinstance(value, Vector):
        raise QueryError("an alert's expression must give an instant vector or a scalar")
    out = []
    for s in value.samples:
        labels = {k: v for k, v in s.labels if k != NAME}
        if rule.app and "app" not in labels:
            labels["app"] = rule.app
        out.append(Element(labels, s.value))
    return out


@dataclass
class Alerting:
    store: Store
    source: Source | QuerySources[Source]  # a server's: one per round (kade.metrics.remote)
    workers: TemplateWorkers
    dispatcher: Dispatcher = field(default_factory=Dispatcher)
    interval: float = INTERVAL
    builtin: bool = True
    clock: Callable[[], float] = time.time
    mirror: Mirror = field(init=False)
    errors: dict[str, str] = field(default_factory=dict)  # rule key → why it cannot run
    _alerts: dict[str, dict[str, Alert]] = field(default_factory=dict)  # rule key → alerts
    _empty_since: dict[str, float] = field(default_factory=dict)
    _written: dict[str, float] = field(default_factory=dict)  # fingerprint → last write
    _loaded: bool = False

    def __post_init__(self) -> None:
        self.mirror = Mirror(self.store, [APPS, RULES, ALERTS], name="alerting")

    async def _source(self) -> Source:
        if isinstance(self.source, QuerySources):
            return await self.source.for_query()
        return self.source

    def rules(self) -> list[KeyedRule]:
        return all_rules(self.mirror.table(APPS).items, self.mirror.table(RULES).items,
                         self.builtin)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg, httpx.AsyncClient() as client:
            tg.create_task(self.mirror.run())
            if not await self.mirror.ready():
                return
            while True:
                started = time.monotonic()
                try:
                    for n in await self.evaluate_once(self.clock()):
                        error = await send(client, n)
                        if error:
                            log.warning("alert notification failed: %s", error)
                except (StoreError, OSError) as e:
                    log.warning("alert evaluation: %s (trying again)", e)
                await asyncio.sleep(max(self.interval - (time.monotonic() - started), 0.5))

    async def evaluate_once(self, now: float) -> list[Notification]:
        """Every rule once; the alerts' changes written; the notifications now due.

        A rule's alerts change in memory only as the store takes them: a write that fails
        leaves its change to be found again in the next round."""
        if not self._loaded:  # go on from the alerts a previous leader left
            for alert in self.mirror.table(ALERTS).items.values():
                self._alerts.setdefault(alert.rule, {})[alert.fingerprint] = alert
            self._loaded = True
        rules = self.rules()
        source = await self._source()  # one per round: a silent node is waited for once
        for keyed in rules:
            try:
                elements = await asyncio.to_thread(evaluate, source, keyed, now)
            except QueryError as e:
                self.errors[keyed.key] = str(e)
                continue
            silent = source.silent() if isinstance(source, Partial) else []
            if elements:
                self._empty_since.pop(keyed.key, None)
            elif not silent:  # a hole in the data says nothing of "no data"
                self._empty_since.setdefault(keyed.key, now)
            empty_since = self._empty_since.get(keyed.key)
            current = self._alerts.get(keyed.key, {})
            after, changed, note = step_or_keep(keyed.rule, keyed.key, elements, current, now,
                                                empty_since, silent)
            if note:
                if self.errors.get(keyed.key) != note:
                    log.warning("rule %s: %s", keyed.key, note)
                self.errors[keyed.key] = note
            else:
                self.errors.pop(keyed.key, None)
            changed_fps = {c.alert.fingerprint for c in changed}
            refresh = [fp for fp, alert in after.items() if fp not in changed_fps
                       and alert.state == "firing"
                       and now - self._written.get(fp, 0) >= VALUE_REFRESH]
            after = await self._annotate(keyed.rule, after, changed_fps | set(refresh))
            await self._write(keyed.key, after,
                              [Change(after[c.alert.fingerprint], c.previous) for c in changed],
                              [after[fp] for fp in refresh], now)
        keys = {k.key for k in rules}
        for gone in [k for k in self._alerts if k not in keys]:  # a rule removed: its alerts go
            alerts = self._alerts[gone]
            for fp in list(alerts):
                await self.store.delete(model.ALERTS + fp)
                del alerts[fp]
            del self._alerts[gone]
        kept = {fp for alerts in self._alerts.values() for fp in alerts}
        for fp in [fp for fp in self._written if fp not in kept]:
            await self.store.delete(model.ALERTS + fp)  # resolved long enough ago, or dropped
            del self._written[fp]
        webhooks = {k.key: k.rule.webhooks for k in rules if k.rule.webhooks}
        every = [a for alerts in self._alerts.values() for a in alerts.values()]
        return list(self.dispatcher.due(every, webhooks, now))

    async def _annotate(self, rule: AlertRule, alerts: dict[str, Alert],
                        fingerprints: set[str]) -> dict[str, Alert]:
        if not rule.annotations:
            return alerts
        out = dict(alerts)
        for fp in fingerprints:
            alert = alerts.get(fp)
            if alert is None or alert.state == "resolved" and alert.annotations:
                continue
            value = alert.value if alert.value is not None else math.nan
            text = await asyncio.to_thread(render_annotations, self.workers, rule.annotations,
                                           alert.labels, value)
            out[fp] = alert.model_copy(update={"annotations": text})
        return out

    async def _write(self, key: str, after: dict[str, Alert], changes: Sequence[Change],
                     refresh: Sequence[Alert], now: float) -> None:
        """A rule's alerts after a round: each changed (or refreshed) one kept in memory once
        it is written, and the whole of them once every write went through."""
        alerts = self._alerts.setdefault(key, {})
        for alert in [*(c.alert for c in changes), *refresh]:
            await self.store.put(model.ALERTS + alert.fingerprint, alert.dump())
            alerts[alert.fingerprint] = alert
            self._written[alert.fingerprint] = now
        for change in changes:
            alert = change.alert
            log.info("alert %s %s: %s", alert.labels.get("alertname"), alert.state,
                     alert.annotations.get("summary", alert.labels))
        self._alerts[key] = after
