"""Health checks: Marathon's rules, the cadence, and the monitor driven by a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from kade.agent.health import (
    CheckOutcome,
    CheckState,
    HealthMonitor,
    check_health,
    describe,
    initial_state,
    kill_reason,
    must_kill,
    next_check_at,
    record,
    task_health,
)
from kade.agent.health_checkers import check_port, classify_status
from kade.drivers.base import ExecResult
from kade.model import Health, HealthResult
from kade.spec import HealthCheck, parse_app
from kade.testing.clock import FakeClock

# The check from the talk, verbatim.
TALK_CHECK = {"protocol": "COMMAND", "command": {"value": "redis-cli ping"},
              "gracePeriodSeconds": 300, "intervalSeconds": 60, "timeoutSeconds": 20,
              "maxConsecutiveFailures": 3, "ignoreHttp1xx": False}
REDIS_DOWN = "Could not connect to Redis at 127.0.0.1:6379: Connection refused"

T0 = 1_700_000_000.0
PASS = CheckOutcome("passed")


def fail(cause: str = "connection refused") -> CheckOutcome:
    return CheckOutcome("failed", cause)


def talk_check() -> HealthCheck:
    app = parse_app({"id": "/redis", "container": {"docker": {"image": "redis"}},
                     "healthChecks": [TALK_CHECK]}).app
    return app.health_checks[0]


def hc(**fields: Any) -> HealthCheck:
    return HealthCheck.model_validate(fields)


def run(check: HealthCheck, steps: list[tuple[float, CheckOutcome]],
        started_at: float = T0) -> CheckState:
    state = initial_state(0)
    for at, outcome in steps:
        state = record(check, state, outcome, started_at=started_at, now=started_at + at)
    return state


# -- the spec ----------------------------------------------------------------------------------

def test_the_talks_check_parses_with_its_values() -> None:
    check = talk_check()
    assert check.kind == "COMMAND"
    assert check.command is not None and check.command.value == "redis-cli ping"
    assert (check.grace_period_seconds, check.interval_seconds, check.timeout_seconds) == (
        300, 60, 20)
    assert check.max_consecutive_failures == 3 and check.ignore_http1xx is False


def test_kade_defaults() -> None:
    check = hc()
    assert (check.grace_period_seconds, check.interval_seconds, check.timeout_seconds,
            check.max_consecutive_failures, check.delay_seconds) == (60, 10, 5, 3, 0)


# -- the state machine -------------------------------------------------------------------------

def test_a_pass_makes_a_check_alive() -> None:
    state = run(hc(), [(3, fail()), (4, PASS), (14, PASS)])
    r = state.result
    assert r.alive and r.consecutive_failures == 0
    assert r.first_success == T0 + 4 and r.last_success == T0 + 14
    assert check_health(state) == "healthy"


def test_failures_in_the_grace_period_are_not_counted_until_the_first_success() -> None:
    state = run(hc(gracePeriodSeconds=60), [(1, fail("refused")), (30, fail("HTTP 503"))])
    r = state.result
    assert r.consecutive_failures == 0 and not r.alive
    assert check_health(state) == "unknown"
    # The cause is kept so the user can see why the task is not healthy yet.
    assert (r.last_failure, r.last_failure_cause) == (T0 + 30, "HTTP 503")


def test_after_the_first_success_every_failure_counts_even_in_the_grace_period() -> None:
    state = run(hc(gracePeriodSeconds=60), [(5, PASS), (15, fail("HTTP 500"))])
    assert state.result.consecutive_failures == 1 and not state.result.alive
    assert check_health(state) == "unhealthy"
    assert state.result.first_success == T0 + 5


def test_after_the_grace_period_failures_count_without_a_success() -> None:
    check = hc(gracePeriodSeconds=60, intervalSeconds=10)
    state = run(check, [(59, fail()), (60, fail())])
    assert state.result.consecutive_failures == 1
    assert check_health(state) == "unhealthy"


def test_fast_probes_before_the_first_success_count_once_per_interval() -> None:
    check = hc(gracePeriodSeconds=0, intervalSeconds=10, maxConsecutiveFailures=3)
    state = run(check, [(float(t), fail()) for t in range(0, 20)])  # probes every second
    assert state.result.consecutive_failures == 2  # at 0 and at 10
    assert not must_kill(check, state)
    state = record(check, state, fail(), started_at=T0, now=T0 + 20)
    assert state.result.consecutive_failures == 3 and must_kill(check, state)


def test_a_pass_resets_consecutive_failures() -> None:
    check = hc(gracePeriodSeconds=0)
    state = run(check, [(0, PASS), (10, fail()), (20, fail()), (30, PASS)])
    assert state.result.consecutive_failures == 0 and state.result.alive
    assert state.result.last_failure == T0 + 20 and state.result.first_success == T0


def test_an_ignored_result_changes_nothing() -> None:
    check = hc(ignoreHttp1xx=True)
    before = run(check, [(0, PASS)])
    after = record(check, before, classify_status(102, ignore_1xx=True), started_at=T0,
                   now=T0 + 10)
    assert after == before


@pytest.mark.parametrize("code, ignore, outcome", [
    (200, False, "passed"), (204, False, "passed"), (301, False, "passed"),
    (399, False, "passed"), (101, False, "failed"), (100, False, "failed"),
    (101, True, "ignored"), (199, True, "ignored"), (400, True, "failed"),
    (404, False, "failed"), (500, False, "failed"), (503, True, "failed"),
])
def test_http_status_codes(code: int, ignore: bool, outcome: str) -> None:
    assert classify_status(code, ignore_1xx=ignore).outcome == outcome


def test_a_failed_status_names_the_code() -> None:
    assert classify_status(500, "Internal Server Error").cause == "HTTP 500 Internal Server Error"


def test_killed_when_consecutive_failures_reach_the_maximum() -> None:
    check = hc(gracePeriodSeconds=0, maxConsecutiveFailures=3)
    two = run(check, [(0, PASS), (10, fail()), (20, fail())])
    assert not must_kill(check, two)
    three = record(check, two, fail("HTTP 500"), started_at=T0, now=T0 + 30)
    assert must_kill(check, three)
    assert kill_reason(check, three) == "health check 0 (HTTP /) failed 3 times: HTTP 500"


def test_max_consecutive_failures_zero_never_kills() -> None:
    check = hc(gracePeriodSeconds=0, maxConsecutiveFailures=0)
    state = run(check, [(float(t * 10), fail()) for t in range(50)])
    assert state.result.consecutive_failures == 50 and not must_kill(check, state)


def test_the_talks_check_through_the_state_machine() -> None:
    check = talk_check()
    # Redis takes 400 s to come up: 299 s of ignored failures, then one counted per minute.
    steps = [(float(t), fail(REDIS_DOWN)) for t in range(0, 420)]
    state = run(check, steps)
    assert state.result.consecutive_failures == 2  # at 300 and 360
    state = record(check, state, fail(REDIS_DOWN), started_at=T0, now=T0 + 420)
    assert must_kill(check, state)
    assert kill_reason(check, state) == (
        f"health check 0 (COMMAND redis-cli ping) failed 3 times: {REDIS_DOWN}")


def test_task_health_combines_checks() -> None:
    unknown, healthy = initial_state(0), run(hc(), [(0, PASS)])
    unhealthy = run(hc(gracePeriodSeconds=0), [(0, fail())])
    assert task_health([]) == "healthy"
    assert task_health([healthy, healthy]) == "healthy"
    assert task_health([healthy, unknown]) == "unknown"
    assert task_health([unknown, unknown]) == "unknown"
    assert task_health([healthy, unhealthy]) == "unhealthy"
    assert task_health([unknown, unhealthy]) == "unhealthy"


def test_describe() -> None:
    assert describe(hc(path="/health")) == "HTTP /health"
    assert describe(hc(protocol="MESOS_HTTPS", path="/h")) == "HTTPS /h"
    assert describe(hc(protocol="TCP", portIndex=1)) == "TCP portIndex 1"
    assert describe(hc(protocol="TCP", port=6379)) == "TCP port 6379"
    assert describe(talk_check()) == "COMMAND redis-cli ping"


def test_the_port_of_a_check() -> None:
    assert check_port(hc(), [31000, 31001]) == 31000
    assert check_port(hc(portIndex=1), [31000, 31001]) == 31001
    assert check_port(hc(port=8080), [31000]) == 8080
    assert check_port(hc(portIndex=2), [31000]) is None


# -- the cadence -------------------------------------------------------------------------------

def test_the_first_check_runs_after_delay_seconds() -> None:
    assert next_check_at(hc(), initial_state(0), started_at=T0, last_check_at=None) == T0
    assert next_check_at(hc(delaySeconds=15), initial_state(0), started_at=T0,
                         last_check_at=None) == T0 + 15


def test_every_second_until_the_first_success_then_every_interval() -> None:
    check = hc(intervalSeconds=60)
    waiting = run(check, [(0, fail())])
    assert next_check_at(check, waiting, started_at=T0, last_check_at=T0 + 7) == T0 + 8
    up = run(check, [(0, fail()), (8, PASS)])
    assert next_check_at(check, up, started_at=T0, last_check_at=T0 + 8) == T0 + 68
    down = record(check, up, fail(), started_at=T0, now=T0 + 68)
    assert next_check_at(check, down, started_at=T0, last_check_at=T0 + 68) == T0 + 128


def test_probes_back_off_from_a_tenth_of_a_second_until_the_first_success() -> None:
    check = hc(intervalSeconds=60)
    at, times = T0, [T0]
    state = initial_state(0)
    for _ in range(7):
        at = next_check_at(check, state, started_at=T0, last_check_at=at)
        times.append(at)
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]
    assert gaps == [0.1, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_an_interval_under_a_second_is_kept() -> None:
    check = hc(intervalSeconds=0.25)
    assert next_check_at(check, initial_state(0), started_at=T0,
                         last_check_at=T0 + 2) == T0 + 2.25


# -- the monitor -------------------------------------------------------------------------------

@dataclass
class FakeExec:
    """Plays `redis-cli ping` inside a container: PONG while redis is up."""

    clock: FakeClock
    up: bool = False
    hang: bool = False
    calls: list[tuple[float, str, float]] = field(default_factory=list)

    async def __call__(self, command: str, timeout: float) -> ExecResult:
        self.calls.append((self.clock.now() - T0, command, timeout))
        if self.hang:
            await asyncio.get_running_loop().create_future()
        if self.up or command == "true":
            return ExecResult(0, "PONG\n")
        return ExecResult(1, f"some noise\n{REDIS_DOWN}\n")


@dataclass
class Reports:
    clock: FakeClock
    changes: list[tuple[float, Health, list[HealthResult]]] = field(default_factory=list)
    kills: list[tuple[float, str]] = field(default_factory=list)
    fail_changes: int = 0

    async def on_change(self, health: Health, results: list[HealthResult]) -> None:
        if self.fail_changes:
            self.fail_changes -= 1
            raise RuntimeError("store unavailable")
        self.changes.append((self.clock.now() - T0, health, results))

    async def on_kill(self, reason: str) -> None:
        self.kills.append((self.clock.now() - T0, reason))

    def healths(self) -> list[tuple[float, Health]]:
        return [(at, h) for at, h, _ in self.changes]


@asynccontextmanager
async def monitoring(checks: list[HealthCheck], clock: FakeClock, exec: FakeExec,
                     reports: Reports, started_at: float = T0) -> AsyncIterator[HealthMonitor]:
    monitor = HealthMonitor(checks, host="127.0.0.1", ports=[], exec=exec,
                            started_at=started_at, clock=clock, on_change=reports.on_change,
                            on_kill=reports.on_kill)
    task = asyncio.create_task(monitor.run())
    await clock.advance(0)
    try:
        yield monitor
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.sleepers == 0


def setup() -> tuple[FakeClock, FakeExec, Reports]:
    clock = FakeClock(T0)
    return clock, FakeExec(clock), Reports(clock)


async def test_the_talks_check_turns_healthy_as_soon_as_redis_answers() -> None:
    clock, exec, reports = setup()
    async with monitoring([talk_check()], clock, exec, reports):
        await clock.advance(4.5)
        assert [at for at, _, _ in exec.calls] == pytest.approx(
            [0, 0.1, 0.2, 0.4, 0.8, 1.6, 2.6, 3.6])  # soon, then backing off to every second
        assert exec.calls[0][1:] == ("redis-cli ping", 20)
        assert reports.changes == []  # failures in the grace period: still unknown
        exec.up = True
        await clock.advance(0.5)
        assert [(round(at, 3), h) for at, h in reports.healths()] == [(4.6, "healthy")]
        result = reports.changes[0][2][0]
        assert result.alive and result.first_success == pytest.approx(T0 + 4.6)
        assert result.last_failure_cause == REDIS_DOWN
        # From now on once a minute, and no report while nothing changes.
        await clock.advance(600)
        assert [at for at, _, _ in exec.calls][9:] == pytest.approx(
            [64.6 + 60 * i for i in range(10)])
        assert len(reports.healths()) == 1 and reports.kills == []


async def test_the_talks_check_kills_redis_after_three_failed_minutes() -> None:
    clock, exec, reports = setup()
    exec.up = True
    async with monitoring([talk_check()], clock, exec, reports):
        await clock.advance(100)  # healthy at 0, checked at 60
        exec.up = False
        await clock.advance(100)  # failures at 120, 180: unhealthy, not yet killed
        assert reports.healths() == [(0, "healthy"), (120, "unhealthy")]
        assert reports.changes[-1][2][0].consecutive_failures == 1  # as of the change
        assert reports.kills == []
        await clock.advance(1000)
        assert reports.kills == [(240, "health check 0 (COMMAND redis-cli ping) failed 3 "
                                       f"times: {REDIS_DOWN}")]
        # The task is being replaced: no more checks, no more reports.
        assert [at for at, _, _ in exec.calls] == [0, 60, 120, 180, 240]
        assert reports.healths() == [(0, "healthy"), (120, "unhealthy")]


async def test_the_talks_check_kills_redis_that_never_comes_up() -> None:
    clock, exec, reports = setup()
    async with monitoring([talk_check()], clock, exec, reports):
        await clock.advance(299.5)
        assert len(exec.calls) == 303 and reports.changes == []  # probed every second
        await clock.advance(1.5)  # the first probe past the grace period counts
        assert [(round(at, 3), h) for at, h in reports.healths()] == [(300.6, "unhealthy")]
        await clock.advance(119)
        assert reports.kills == []
        await clock.advance(1)
        assert [round(at, 3) for at, _ in reports.kills] == [420.6]


async def test_a_check_that_hangs_fails_at_its_timeout() -> None:
    clock, exec, reports = setup()
    check = hc(protocol="COMMAND", command={"value": "sleep 1000"}, gracePeriodSeconds=0,
               intervalSeconds=10, timeoutSeconds=5, maxConsecutiveFailures=2)
    exec.hang = True
    async with monitoring([check], clock, exec, reports):
        await clock.advance(4.9)
        assert reports.changes == []
        await clock.advance(0.1)
        assert reports.healths() == [(5, "unhealthy")]
        assert reports.changes[0][2][0].last_failure_cause == "timed out after 5s"
        await clock.advance(100)
        assert reports.kills == [(
            15, "health check 0 (COMMAND sleep 1000) failed 2 times: timed out after 5s")]


async def test_a_task_is_healthy_when_every_check_passed() -> None:
    clock, exec, reports = setup()
    passing = hc(protocol="COMMAND", command={"value": "true"}, intervalSeconds=10)
    talk = talk_check()
    async with monitoring([passing, talk], clock, exec, reports) as monitor:
        await clock.advance(0)
        assert [s.result.alive for s in monitor.states] == [True, False]
        # An alive flag changed: reported, although the task is still unknown.
        assert reports.healths() == [(0, "unknown")]
        exec.up = True
        await clock.advance(1)
        assert reports.healths() == [(0, "unknown"), (pytest.approx(0.1), "healthy")]
        assert [r.index for r in reports.changes[-1][2]] == [0, 1]
        assert monitor.health == "healthy"


async def test_delay_seconds_postpones_the_first_check() -> None:
    clock, exec, reports = setup()
    check = hc(protocol="COMMAND", command={"value": "redis-cli ping"}, delaySeconds=15)
    exec.up = True
    async with monitoring([check], clock, exec, reports):
        await clock.advance(14)
        assert exec.calls == []
        await clock.advance(1)
        assert reports.healths() == [(15, "healthy")]


async def test_an_adopted_task_past_its_grace_period_is_checked_at_once() -> None:
    clock, exec, reports = setup()
    async with monitoring([talk_check()], clock, exec, reports, started_at=T0 - 3600):
        assert reports.healths() == [(0, "unhealthy")]
        exec.up = True
        await clock.advance(1)
        assert reports.healths() == [(0, "unhealthy"), (1, "healthy")]


async def test_a_report_that_failed_is_made_again_after_the_next_check() -> None:
    clock, exec, reports = setup()
    check = hc(protocol="COMMAND", command={"value": "redis-cli ping"}, intervalSeconds=10)
    exec.up = True
    reports.fail_changes = 1
    async with monitoring([check], clock, exec, reports):
        assert reports.changes == []
        await clock.advance(10)
        assert reports.healths() == [(10, "healthy")]


async def test_without_checks_a_task_is_reported_healthy_once() -> None:
    clock, exec, reports = setup()
    async with monitoring([], clock, exec, reports):
        await clock.advance(100)
        assert reports.healths() == [(0, "healthy")]


async def test_max_consecutive_failures_zero_keeps_checking() -> None:
    clock, exec, reports = setup()
    check = hc(protocol="COMMAND", command={"value": "redis-cli ping"}, gracePeriodSeconds=0,
               intervalSeconds=10, maxConsecutiveFailures=0)
    async with monitoring([check], clock, exec, reports) as monitor:
        await clock.advance(1000)
        assert reports.kills == []
        assert monitor.states[0].result.consecutive_failures == 100
        exec.up = True
        await clock.advance(10)
        assert [(round(at, 3), h) for at, h in reports.healths()] == [
            (0, "unhealthy"), (1000.6, "healthy")]


async def test_a_kill_stops_every_check_of_the_task() -> None:
    clock, exec, reports = setup()
    passing = hc(protocol="COMMAND", command={"value": "true"}, intervalSeconds=10)
    failing = hc(protocol="COMMAND", command={"value": "redis-cli ping"}, gracePeriodSeconds=0,
                 intervalSeconds=10, maxConsecutiveFailures=1)
    async with monitoring([passing, failing], clock, exec, reports):
        await clock.advance(100)
        assert [(at, cmd) for at, cmd, _ in exec.calls] == [(0, "true"), (0, "redis-cli ping")]
        assert [at for at, _ in reports.kills] == [0]


async def test_a_monitor_cancelled_by_its_kill_callback_ends() -> None:
    clock, exec, reports = setup()
    check = hc(protocol="COMMAND", command={"value": "redis-cli ping"}, gracePeriodSeconds=0,
               maxConsecutiveFailures=1)
    task: asyncio.Task[None] | None = None

    async def stop_at_once(reason: str) -> None:  # an agent that stops the monitor right away
        assert task is not None
        task.cancel()

    monitor = HealthMonitor([check], host="127.0.0.1", ports=[], exec=exec, started_at=T0,
                            clock=clock, on_change=reports.on_change, on_kill=stop_at_once)
    task = asyncio.create_task(monitor.run())
    await clock.advance(0)
    assert task.done() and task.cancelled()
    assert clock.sleepers == 0
