"""The life of an alert, as Prometheus' rule manager gives it: pure, so every rule of it is
tested with plain values and a made-up clock.

Each evaluation of a rule yields elements (label set, value). An element that is active
— returned by a plain rule, or past a `warn`/`crit` level of a threshold rule — makes its
alert **pending**; after `for` seconds still active it is **firing**. When it is no longer
active a pending alert is simply dropped; a firing one stays firing for `keepFiringFor`
more seconds, then is **resolved** (kept for `RESOLVED_KEPT` seconds, so that notifiers
send the resolution). A threshold rule's alert carries `severity` (`warning`, `critical`):
crossing from one level to the other resolves the old alert and starts the new one, as
Alertmanager tells alerts apart by their labels. With `noData`, an evaluation that returns
nothing for that long fires an alert labelled `nodata="true"`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from kade.model import Record
from kade.spec.alerts import AlertRule

AlertStatus = Literal["pending", "firing", "resolved"]
RESOLVED_KEPT = 15 * 60.0  # seconds a resolved alert is kept (Prometheus' resolvedRetention)


class Alert(Record):
    rule: str  # the rule's key: `<app>/<name>` or `cluster/<name>`
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    state: AlertStatus
    value: float | None = None
    active_at: float  # when it became pending
    fired_at: float | None = None
    resolved_at: float | None = None
    last_seen: float  # the last evaluation that found it active


def fingerprint(labels: dict[str, str]) -> str:
    text = "\0".join(f"{k}\0{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Element:
    labels: dict[str, str]  # the expression's labels, `__name__` left out
    value: float


@dataclass(frozen=True)
class Change:
    """What an evaluation changed about one alert: for the event stream and notifiers."""

    alert: Alert
    previous: AlertStatus | None  # None: it is new


def _level(rule: AlertRule, value: float, firing: str | None) -> str | None:
    """The severity an element's value reaches, with the recovery level for one already
    critical; None below every level (NaN never alerts)."""
    if math.isnan(value):
        return None

    def past(level: float | None) -> bool:
        if level is None:
            return False
        return value >= level if rule.op == "above" else value <= level

    if firing == "critical" and rule.recovery is not None and past(rule.recovery):
        return "critical"  # between recovery and crit: still critical
    if past(rule.crit):
        return "critical"
    if past(rule.warn):
        return "warning"
    return None


def active(rule: AlertRule, elements: Sequence[Element],
           current: dict[str, Alert]) -> dict[str, tuple[dict[str, str], float]]:
    """Fingerprint → (labels, value) of the alerts this evaluation finds active."""
    critical = {a.fingerprint for a in current.values()
                if a.state == "firing" and a.labels.get("severity") == "critical"}
    found: dict[str, tuple[dict[str, str], float]] = {}
    for e in elements:
        labels = _labels(rule, e)
        if rule.thresholds:
            crit_fp = fingerprint({**labels, "severity": "critical"})
            level = _level(rule, e.value, "critical" if crit_fp in critical else None)
            if level is None:
                continue
            labels["severity"] = level
        found[fingerprint(labels)] = (labels, e.value)
    return found


def step(rule: AlertRule, key: str, elements: Sequence[Element], current: dict[str, Alert],
         now: float, empty_since: float | None, partial: bool = False
         ) -> tuple[dict[str, Alert], list[Change]]:
    """One evaluation: the rule's alerts after it, and what changed. `empty_since`: since
    when the expression has returned nothing (None: it returned something now). `partial`:
    some series may be missing from `elements`; an alert whose series did not come is kept
    as it was (neither dropped nor resolved), and "no data" does not fire."""
    found = active(rule, elements, current)
    if (not partial and rule.no_data and empty_since is not None
            and now - empty_since >= rule.no_data):
        labels = _no_data_labels(rule)
        found[fingerprint(labels)] = (labels, math.nan)
    came = _series_of(rule, elements) if partial else set()
    after: dict[str, Alert] = {}
    changes: list[Change] = []
    for fp, (labels, value) in found.items():
        old = current.get(fp)
        if old is None or old.state == "resolved":
            state: AlertStatus = "firing" if rule.for_ == 0 else "pending"
            alert = Alert(rule=key, fingerprint=fp, labels=labels, state=state,
                          value=_finite(value), active_at=now, last_seen=now,
                          fired_at=now if state == "firing" else None)
            changes.append(Change(alert, old.state if old else None))
        else:
            state = old.state
            fired = old.fired_at
            if state == "pending" and now - old.active_at >= rule.for_:
                state, fired = "firing", now
            alert = old.model_copy(update={"state": state, "value": _finite(value),
                                           "last_seen": now, "fired_at": fired})
            if state != old.state:
                changes.append(Change(alert, old.state))
        after[fp] = alert
    for fp, old in current.items():
        if fp in after:
            continue
        if partial and old.state != "resolved" and _series_key(rule, old.labels) not in came:
            after[fp] = old  # its series may be on a node that did not answer
            continue
        if old.state == "pending":
            continue  # never fired: dropped without a word
        if old.state == "firing":
            if now - old.last_seen < rule.keep_firing_for:
                after[fp] = old
                continue
            resolved = old.model_copy(update={"state": "resolved", "resolved_at": now})
            after[fp] = resolved
            changes.append(Change(resolved, "firing"))
        elif old.resolved_at is not None and now - old.resolved_at < RESOLVED_KEPT:
            after[fp] = old
    return after, changes


def step_or_keep(rule: AlertRule, key: str, elements: Sequence[Element],
                 current: dict[str, Alert], now: float, empty_since: float | None,
                 silent: Sequence[str] = ()) -> tuple[dict[str, Alert], list[Change], str | None]:
    """`step`, knowing which nodes that should have answered (their agent is alive) did
    not: their series are missing from `elements`, and an alert would resolve, or "no data"
    fire, for a hole in the data rather than a change in what is measured. What did come
    still counts (a new alert, a pending one firing after `for`, values), but the alerts
    whose series did not come are kept as they were, and the reason is returned (the rule's
    status shows it).

    A node known down is not a hole: its tasks are being replaced, KadeNodeDown says so, and
    what was measured there is gone from the answer as it is gone from the cluster."""
    after, changes = step(rule, key, elements, current, now, empty_since, partial=bool(silent))
    if not silent:
        return after, changes, None
    return after, changes, (f"node{'s' if len(silent) > 1 else ''} {', '.join(silent)} did not"
                            " answer: alerts whose series may be missing are kept as they were")


def _labels(rule: AlertRule, element: Element) -> dict[str, str]:
    return {**element.labels, **rule.labels, "alertname": rule.name}


def _no_data_labels(rule: AlertRule) -> dict[str, str]:
    return {**rule.labels, "alertname": rule.name, "nodata": "true"}


def _series_key(rule: AlertRule, labels: dict[str, str]) -> str:
    """What tells an alert's series apart: its labels, less the severity a threshold rule
    gives (a warning and a critical alert of one series share it)."""
    return fingerprint({k: v for k, v in labels.items()
                        if not (rule.thresholds and k == "severity")})


def _series_of(rule: AlertRule, elements: Sequence[Element]) -> set[str]:
    """The series that came in this evaluation; with any, there is data: "no data" too."""
    came = {_series_key(rule, _labels(rule, e)) for e in elements}
    if elements:
        came.add(_series_key(rule, _no_data_labels(rule)))
    return came


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
