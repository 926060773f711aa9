"""Alerts' life by Prometheus' rules (pending, firing after `for`, keepFiringFor, resolved and
kept a while) and Datadog's (warn/crit levels, recovery, no data), with plain values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kade.alerts.state import RESOLVED_KEPT, Alert, Change, Element, step_or_keep
from kade.spec.alerts import AlertRule


def rule(**fields: Any) -> AlertRule:
    return AlertRule.model_validate({"name": "HighErrors", "expr": "errors > 1", **fields})


class Run:
    """Evaluations of one rule at times the test chooses."""

    def __init__(self, r: AlertRule) -> None:
        self.rule = r
        self.alerts: dict[str, Alert] = {}
        self.empty_since: float | None = None
        self.note: str | None = None

    def at(self, now: float, *values: tuple[dict[str, str], float],
           silent: Sequence[str] = ()) -> list[Change]:
        """An evaluation; `silent`: the live nodes that did not answer it."""
        elements = [Element(labels, value) for labels, value in values]
        if elements:
            self.empty_since = None
        elif self.empty_since is None and not silent:
            self.empty_since = now
        self.alerts, changes, self.note = step_or_keep(
            self.rule, "cluster/HighErrors", elements, self.alerts, now, self.empty_since,
            silent)
        return changes

    def states(self) -> dict[str, str]:
        return {a.labels.get("app", "") + "/" + a.labels.get("severity", ""): a.state
                for a in self.alerts.values()}


WEB = {"app": "/web"}


def test_pending_then_firing_after_for_then_resolved_and_kept_a_while() -> None:
    run = Run(rule(**{"for": "2m"}))
    [c] = run.at(0, (WEB, 5))
    assert (c.previous, c.alert.state) == (None, "pending")
    assert run.at(60, (WEB, 6)) == []
    [c] = run.at(120, (WEB, 7))
    assert (c.previous, c.alert.state, c.alert.fired_at, c.alert.value) == (
        "pending", "firing", 120, 7)
    assert c.alert.labels == {"app": "/web", "alertname": "HighErrors"}
    [c] = run.at(180)
    assert (c.previous, c.alert.state, c.alert.resolved_at) == ("firing", "resolved", 180)
    assert run.at(180 + RESOLVED_KEPT - 1) == [] and run.states() == {"/web/": "resolved"}
    run.at(180 + RESOLVED_KEPT)
    assert run.alerts == {}


def test_a_pending_alert_that_goes_away_never_fires_nor_resolves() -> None:
    run = Run(rule(**{"for": "5m"}))
    run.at(0, (WEB, 5))
    assert run.at(60) == [] and run.alerts == {}


def test_without_for_it_fires_at_once() -> None:
    run = Run(rule())
    [c] = run.at(0, (WEB, 5))
    assert c.alert.state == "firing"


def test_keep_firing_for_rides_out_a_gap() -> None:
    run = Run(rule(keepFiringFor="3m"))
    run.at(0, (WEB, 5))
    assert run.at(60) == [] and run.states() == {"/web/": "firing"}
    assert run.at(120, (WEB, 4)) == []  # back: the same alert, still firing
    assert run.at(200) == []
    [c] = run.at(300)
    assert c.alert.state == "resolved"


def test_it_fires_again_after_it_resolved() -> None:
    run = Run(rule())
    run.at(0, (WEB, 5))
    run.at(60)
    [c] = run.at(120, (WEB, 5))
    assert (c.previous, c.alert.state, c.alert.active_at) == ("resolved", "firing", 120)


def test_each_label_set_is_its_own_alert() -> None:
    run = Run(rule(labels={"team": "shop"}))
    changes = run.at(0, (WEB, 5), ({"app": "/api"}, 3))
    assert sorted(c.alert.labels["app"] for c in changes) == ["/api", "/web"]
    assert all(c.alert.labels["team"] == "shop" for c in changes)
    [c] = run.at(60, (WEB, 5))
    assert c.alert.labels["app"] == "/api" and c.alert.state == "resolved"


def test_warn_and_crit_levels_with_recovery() -> None:
    run = Run(rule(expr="errors", warn=1, crit=5, recovery=3))
    assert run.at(0, (WEB, 0.5)) == []
    [c] = run.at(10, (WEB, 2))
    assert c.alert.labels["severity"] == "warning" and c.alert.state == "firing"
    changes = run.at(20, (WEB, 6))  # to critical: the warning resolves, the critical fires
    assert sorted((c.alert.labels["severity"], c.alert.state) for c in changes) == [
        ("critical", "firing"), ("warning", "resolved")]
    assert run.at(30, (WEB, 4)) == []  # above recovery: still critical
    changes = run.at(40, (WEB, 2))  # below recovery: back to warning
    assert sorted((c.alert.labels["severity"], c.alert.state) for c in changes) == [
        ("critical", "resolved"), ("warning", "firing")]


def test_levels_below() -> None:
    run = Run(rule(expr="free_ratio", op="below", warn=0.2, crit=0.1))
    [c] = run.at(0, (WEB, 0.05))
    assert c.alert.labels["severity"] == "critical"
    with pytest.raises(ValueError, match="warn: must be above crit when op is below"):
        rule(expr="x", op="below", warn=0.1, crit=0.2)


def test_no_data_fires_after_its_time_and_resolves_when_data_comes_back() -> None:
    run = Run(rule(noData="5m"))
    run.at(0, (WEB, 3))
    [c] = run.at(60)  # nothing returned from now on
    assert c.alert.state == "resolved"
    assert run.at(359) == []
    [c] = run.at(360)
    assert c.alert.labels == {"alertname": "HighErrors", "nodata": "true"}
    assert c.alert.state == "firing" and c.alert.value is None
    changes = run.at(420, (WEB, 3))
    assert sorted((c.alert.labels.get("nodata", ""), c.alert.state) for c in changes) == [
        ("", "firing"), ("true", "resolved")]


def test_a_round_a_live_node_did_not_answer_resolves_nothing_and_fires_no_no_data() -> None:
    r = rule(**{"noData": "1m"})
    run = Run(r)
    [c] = run.at(0, (WEB, 5))
    assert c.alert.state == "firing"
    before = dict(run.alerts)
    # its series were on the node that did not answer: no resolution, no "no data"
    after, changes, note = step_or_keep(r, "cluster/HighErrors", [], before, 600, 0, ["b"])
    assert (after, changes) == (before, [])
    assert note == ("node b did not answer: alerts whose series may be missing are kept as "
                    "they were")
    _, _, note = step_or_keep(r, "cluster/HighErrors", [], before, 600, 0, ["b", "c"])
    assert note is not None and note.startswith("nodes b, c did not answer: ")
    # every node answered: the same round resolves it, and "no data" fires
    after, changes, note = step_or_keep(r, "cluster/HighErrors", [], before, 600, 0, [])
    assert note is None
    assert sorted((c.alert.state, c.alert.labels.get("nodata", "")) for c in changes) == [
        ("firing", "true"), ("resolved", "")]


API, DB = {"app": "/api"}, {"app": "/db"}


def test_while_a_node_is_silent_what_the_others_answered_still_moves_alerts() -> None:
    run = Run(rule(**{"for": "2m"}))
    run.at(0, (WEB, 5), (API, 3))
    # b, which held /web's series, stops answering: /web's alert waits, the others go on
    [c] = run.at(60, (API, 4), (DB, 2), silent=["b"])
    assert (c.previous, c.alert.state, c.alert.labels["app"]) == (None, "pending", "/db")
    assert run.note is not None and run.note.startswith("node b did not answer")
    [c] = run.at(120, (API, 6), (DB, 2), silent=["b"])
    assert (c.previous, c.alert.state, c.alert.labels["app"]) == ("pending", "firing", "/api")
    assert run.states() == {"/web/": "pending", "/api/": "firing", "/db/": "pending"}
    assert run.at(180, (API, 9), silent=["b"]) == []  # /db's may be on b too: kept
    assert {a.labels["app"]: a.value for a in run.alerts.values()} == {
        "/web": 5, "/api": 9, "/db": 2}
    # b answers again, without /web's and /db's: they never fired, they are dropped
    assert run.at(240, (API, 9)) == [] and run.note is None
    assert run.states() == {"/api/": "firing"}


def test_while_a_node_is_silent_a_series_that_came_changes_level_and_no_data_ends() -> None:
    run = Run(rule(expr="errors", warn=1, crit=5, noData="1m"))
    run.at(0, (WEB, 2), (API, 2))
    changes = run.at(10, (WEB, 6), silent=["b"])  # /web's series came: to critical
    assert sorted((c.alert.labels["app"], c.alert.labels["severity"], c.alert.state)
                  for c in changes) == [("/web", "critical", "firing"),
                                        ("/web", "warning", "resolved")]
    assert run.states()["/api/warning"] == "firing"  # /api's did not: it stays
    assert run.at(20, (WEB, 0), silent=["b"])[0].alert.state == "resolved"  # back below
    assert run.at(600, silent=["b"]) == []  # nothing came: a hole, not "no data"
    [c] = run.at(700)  # every node answered, and nothing came: /api's resolves at last
    assert (c.alert.labels["app"], c.alert.state) == ("/api", "resolved")
    [c] = run.at(760)  # nothing came for a minute
    assert c.alert.labels.get("nodata") == "true" and c.alert.state == "firing"
    changes = run.at(770, (API, 0), silent=["b"])  # data again, b silent: "no data" ends
    assert [(c.alert.labels.get("nodata"), c.alert.state) for c in changes] == [
        ("true", "resolved")]
