"""The leader's alerting over real stores: app rules, cluster rules and built-in ones
evaluated on kade's series, alerts written to the store (hence on /v1/events), notices due."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kade import model
from kade.alerts.manager import Alerting
from kade.alerts.notify import Dispatcher, Timing
from kade.alerts.state import Alert
from kade.metrics.series import MemorySource
from kade.spec import parse_app
from kade.spec.alerts import AlertRule
from kade.store.base import NoQuorum
from kade.store.sqlite import SqliteStore
from kade.templates.isolate import TemplateWorkers

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def workers() -> Iterator[TemplateWorkers]:
    w = TemplateWorkers()
    yield w
    w.close()


@contextlib.asynccontextmanager
async def following(alerting: Alerting) -> AsyncIterator[Alerting]:
    """The alerting with its store mirror running (the leader's `run` does this)."""
    task = asyncio.create_task(alerting.mirror.run())
    assert await alerting.mirror.ready()
    try:
        yield alerting
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _errors(source: MemorySource, app: str, start: float, minutes: int, rate: float) -> None:
    """Requests of `app` every 10 s, a share `rate` of them 5xx."""
    for i in range(minutes * 6):
        t = int((start + i * 10) * 1000)
        source.add({"__name__": "kade_service_requests_total", "app": app, "code": "5xx"}, t,
                   i * 100 * rate)
        source.add({"__name__": "kade_service_requests_total", "app": app, "code": "2xx"}, t,
                   i * 100 * (1 - rate))


async def _stored(store: SqliteStore) -> list[Alert]:
    entries, _ = await store.range(model.ALERTS)
    return [Alert.load(e.value) for e in entries]


async def test_an_app_rule_fires_after_for_resolves_and_is_notified(
        store: SqliteStore, workers: TemplateWorkers) -> None:
    app = parse_app({"id": "/shop/web", "cmd": "sleep 1000", "alerts": [{
        "name": "HighErrorRate", "for": "2m",
        "expr": 'sum by (app) (rate(kade_service_requests_total{code="5xx"}[1m])) '
                "/ sum by (app) (rate(kade_service_requests_total[1m])) > 0.05",
        "annotations": {"summary": "{{ $labels.app }}: {{ printf \"%.0f\" $value }} "}}],
        }).app
    await store.put(model.app_key(app.id), app.model_dump_json(by_alias=True).encode())
    source = MemorySource()
    _errors(source, "/shop/web", T0, 10, 0.2)
    alerting = Alerting(store, source, workers, builtin=False,
                        dispatcher=Dispatcher(webhooks=["http://hook"],
                                              timing=Timing(group_wait=0)))
    async with following(alerting):
        assert await alerting.evaluate_once(T0 + 120) == []
        [pending] = await _stored(store)
        assert pending.state == "pending" and pending.labels == {
            "app": "/shop/web", "alertname": "HighErrorRate"}
        [notice] = await alerting.evaluate_once(T0 + 240)
        [firing] = await _stored(store)
        assert firing.state == "firing" and firing.annotations == {"summary": "/shop/web: 0 "}
        assert notice.url == "http://hook" and notice.body["status"] == "firing"
        await alerting.evaluate_once(T0 + 10 * 60 + 120)  # the samples ended: resolved
        [resolved] = await _stored(store)
        assert resolved.state == "resolved"


async def test_the_built_in_crash_loop_rule(store: SqliteStore,
                                            workers: TemplateWorkers) -> None:
    source = MemorySource()
    for i in range(60):
        source.add({"__name__": "kade_app_task_failures_total", "app": "/crashy"},
                   int((T0 + i * 10) * 1000), float(i // 6))  # one failure a minute
    async with following(Alerting(store, source, workers)) as alerting:
        await alerting.evaluate_once(T0 + 590)
        [alert] = await _stored(store)
        assert alert.labels["alertname"] == "KadeTaskCrashLooping"
        assert alert.state == "firing" and alert.labels["app"] == "/crashy"
        assert alert.annotations["summary"].startswith("tasks of /crashy keep failing: ")


async def test_a_cluster_rule_replaces_the_built_in_one_and_bad_rules_are_reported(
        store: SqliteStore, workers: TemplateWorkers) -> None:
    quiet = AlertRule.model_validate({"name": "KadeTaskCrashLooping", "expr": "vector(0) > 1"})
    broken = AlertRule.model_validate({"name": "Broken", "expr": "a + on(x) b"})
    for rule in (quiet, broken):
        await store.put(model.ALERT_RULES + rule.name, rule.model_dump_json(by_alias=True)
                        .encode())
    source = MemorySource()
    for name in ("a", "b"):
        for x in ("1", "1"):
            source.add({"__name__": name, "x": x, "y": name}, int(T0 * 1000), 1.0)
            source.add({"__name__": name, "x": x, "y": name + "2"}, int(T0 * 1000), 1.0)
    async with following(Alerting(store, source, workers)) as alerting:
        await alerting.evaluate_once(T0 + 10)
        assert [r.key for r in alerting.rules() if r.rule.name == "KadeTaskCrashLooping"] == [
            "cluster/KadeTaskCrashLooping"]
        assert "duplicate series" in alerting.errors["cluster/Broken"]


class PartOfTheCluster(MemorySource):
    """A query's source that could not reach some live nodes (kade.metrics.remote's)."""

    def __init__(self, silent: list[str]) -> None:
        super().__init__()
        self._silent = silent

    def warnings(self) -> list[str]:
        return [f"node {n} did not answer" for n in self._silent]

    def silent(self) -> list[str]:
        return list(self._silent)


class Rounds:
    """Each round's source, as a server makes one per query: the test says who answers."""

    def __init__(self) -> None:
        self.source = PartOfTheCluster([])
        self.made = 0

    async def for_query(self) -> MemorySource:
        self.made += 1
        return self.source


async def test_a_rule_keeps_its_alerts_while_a_live_node_does_not_answer(
        store: SqliteStore, workers: TemplateWorkers) -> None:
    rounds = Rounds()
    for i in range(6):
        rounds.source.add({"__name__": "kade_app_task_failures_total", "app": "/crashy"},
                          int((T0 + i * 10) * 1000), float(i))
    async with following(Alerting(store, rounds, workers)) as alerting:
        await alerting.evaluate_once(T0 + 60)
        [alert] = await _stored(store)
        assert alert.state == "firing"
        assert rounds.made == 1  # every rule of a round reads one source: nodes asked once
        rounds.source = PartOfTheCluster(["b"])  # the failures were counted on b's side
        await alerting.evaluate_once(T0 + 20 * 60)
        assert [a.state for a in await _stored(store)] == ["firing"]
        assert alerting.errors["builtin/KadeTaskCrashLooping"] == (
            "node b did not answer: alerts whose series may be missing are kept as they were")
        rounds.source = PartOfTheCluster([])  # b answers again: the loop is long over
        await alerting.evaluate_once(T0 + 21 * 60)
        assert [a.state for a in await _stored(store)] == ["resolved"]
        assert "builtin/KadeTaskCrashLooping" not in alerting.errors


async def test_a_new_alert_goes_pending_while_another_node_does_not_answer(
        store: SqliteStore, workers: TemplateWorkers) -> None:
    rule = AlertRule.model_validate({"name": "Up", "expr": "up == 0", "for": "1m"})
    await store.put(model.ALERT_RULES + rule.name, rule.model_dump_json(by_alias=True).encode())
    rounds = Rounds()
    rounds.source = PartOfTheCluster(["b"])  # b stays silent throughout
    rounds.source.add({"__name__": "up", "job": "db"}, int(T0 * 1000), 0.0)
    rounds.source.add({"__name__": "up", "job": "db"}, int((T0 + 60) * 1000), 0.0)
    async with following(Alerting(store, rounds, workers, builtin=False)) as alerting:
        await alerting.evaluate_once(T0)
        assert [(a.labels["job"], a.state) for a in await _stored(store)] == [("db", "pending")]
        await alerting.evaluate_once(T0 + 60)
        assert [(a.labels["job"], a.state) for a in await _stored(store)] == [("db", "firing")]
        assert alerting.errors["cluster/Up"].startswith("node b did not answer")


class FailsOnce(SqliteStore):
    """A store whose `fail_at`-th write of an alert fails, as etcd does without a quorum."""

    def __init__(self, path: Path, fail_at: int) -> None:
        super().__init__(path)
        self.fail_at = fail_at
        self.writes = 0

    async def put(self, key: str, value: bytes, *, expect: int | None = None,
                  lease: int = 0) -> int:
        if key.startswith(model.ALERTS):
            self.writes += 1
            if self.writes == self.fail_at:
                raise NoQuorum("etcd has no leader")
        return await super().put(key, value, expect=expect, lease=lease)


async def test_a_write_that_failed_part_way_is_made_in_the_next_round(
        tmp_path: Path, workers: TemplateWorkers) -> None:
    store = FailsOnce(tmp_path / "store", fail_at=2)
    for name in ("One", "Two", "Three"):
        rule = AlertRule.model_validate({"name": name, "expr": "vector(1)", "for": "5m"})
        await store.put(model.ALERT_RULES + name, rule.model_dump_json(by_alias=True).encode())
    try:
        async with following(Alerting(store, MemorySource(), workers, builtin=False)
                             ) as alerting:
            with pytest.raises(NoQuorum):
                await alerting.evaluate_once(T0)
            assert len(await _stored(store)) == 1
            await alerting.evaluate_once(T0 + 10)
            assert sorted((a.labels["alertname"], a.state) for a in await _stored(store)) == [
                ("One", "pending"), ("Three", "pending"), ("Two", "pending")]
    finally:
        await store.close()
