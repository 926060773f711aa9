"""Health of a task: Marathon's rules as a pure state machine, and the monitor that runs checks.

The rules (docs/health-checks.md tells users the same):

- A passed check makes it *alive*, resets its consecutive failures, sets firstSuccess once.
- A failed check counts (consecutiveFailures + 1, alive false) — except before the check's
  first success while the task is inside `gracePeriodSeconds` of its start: then the failure
  is not counted (its time and cause are kept, so the user sees why the task is not healthy).
- An `ignored` result (an HTTP 1xx with ignoreHttp1xx) changes nothing.
- Until a check first passes it is probed every `min(intervalSeconds, 1)` s, so a deploy turns
  healthy as soon as the app answers. Those extra probes must not make failures count faster:
  before the first success a failure counts at most once per `intervalSeconds`.
- A check is *healthy* while alive, *unhealthy* when its last counted result is a failure,
  *unknown* before either. A task is unhealthy when any check is unhealthy, healthy when every
  check is healthy (a task without checks is healthy), unknown otherwise.
- A task must be killed when a check's consecutive failures reach maxConsecutiveFailures
  (0 = never); Marathon waits for one failure more ("fails more than").

The pure part takes time as an argument; `HealthMonitor` reads it from a `Clock`, so tests
drive it with `kade.testing.clock.FakeClock` instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kade.agent.health_checkers import CheckOutcome, ExecFn, failed, run_check, timed_out
from kade.model import Health, HealthResult
from kade.spec import HealthCheck

__all__ = [
    "CheckOutcome", "CheckState", "Clock", "HealthMonitor", "SystemClock", "check_health",
    "describe", "initial_state", "kill_reason", "must_kill", "next_check_at", "record",
    "task_health",
]

log = logging.getLogger("kade.agent.health")

FAST_INTERVAL = 1.0  # longest gap between probes until a check first passes
FIRST_GAP = 0.1  # the gap after the first probe; it doubles up to FAST_INTERVAL


# -- the pure state machine ------------------------------------------------------------------

@dataclass(frozen=True)
class CheckState:
    """One check's state: Marathon's result, plus when a failure last counted."""

    result: HealthResult
    counted_failure_at: float | None = None


def initial_state(index: int) -> CheckState:
    return CheckState(HealthResult(index=index, alive=False))


def record(
    check: HealthCheck, state: CheckState, outcome: CheckOutcome, *, started_at: float,
    now: float,
) -> CheckState:
    """The state after one result of `check`, for a task started at `started_at`."""
    r = state.result
    if outcome.outcome == "ignored":
        return state
    if outcome.outcome == "passed":
        passed = r.model_copy(update={
            "alive": True,
            "consecutive_failures": 0,
            "first_success": now if r.first_success is None else r.first_success,
            "last_success": now,
        })
        return CheckState(passed, state.counted_failure_at)
    noted = r.model_copy(update={
        "alive": False, "last_failure": now, "last_failure_cause": outcome.cause,
    })
    if not _counts(check, state, started_at=started_at, now=now):
        return CheckState(noted, state.counted_failure_at)
    counted = noted.model_copy(update={"consecutive_failures": r.consecutive_failures + 1})
    return CheckState(counted, now)


def _counts(check: HealthCheck, state: CheckState, *, started_at: float, now: float) -> bool:
    if state.result.first_success is not None:
        return True
    if now < started_at + check.grace_period_seconds:
        return False
    last = state.counted_failure_at
    return last is None or now >= last + check.interval_seconds


def check_health(state: CheckState) -> Health:
    if state.result.alive:
        return "healthy"
    if state.result.consecutive_failures > 0:
        return "unhealthy"
    return "unknown"


def task_health(states: Sequence[CheckState]) -> Health:
    healths = [check_health(s) for s in states]
    if "unhealthy" in healths:
        return "unhealthy"
    if all(h == "healthy" for h in healths):
        return "healthy"
    return "unknown"


def must_kill(check: HealthCheck, state: CheckState) -> bool:
    limit = check.max_consecutive_failures
    return limit > 0 and state.result.consecutive_failures >= limit


def describe(check: HealthCheck) -> str:
    """A check in a few words, for reasons and logs: `HTTP /health`, `COMMAND redis-cli ping`."""
    kind = check.kind
    if kind == "COMMAND":
        return f"COMMAND {check.command.value}" if check.command else "COMMAND"
    if kind == "TCP":
        return f"TCP port {check.port}" if check.port else f"TCP portIndex {check.port_index or 0}"
    return f"{kind} {check.path}"


def kill_reason(check: HealthCheck, state: CheckState) -> str:
    r = state.result
    return (f"health check {r.index} ({describe(check)}) failed "
            f"{r.consecutive_failures} times: {r.last_failure_cause}")


def next_check_at(
    check: HealthCheck, state: CheckState, *, started_at: float, last_check_at: float | None
) -> float:
    """When to run `check` next; `last_check_at` is when its previous run began (None: never).

    The monitor never overlaps runs of one check: a check that took longer than its interval
    runs again as soon as it is done.
    """
    if last_check_at is None:
        return started_at + check.delay_seconds
    if state.result.first_success is None:
        # An app is often a moment from listening when first probed: retry soon, then back
        # off (0.1, 0.2, 0.4, 0.8, 1 s) so a slow starter is not probed in a tight loop.
        since_first = last_check_at - (started_at + check.delay_seconds)
        gap = min(max(FIRST_GAP, since_first), FAST_INTERVAL, check.interval_seconds)
        return last_check_at + gap
    return last_check_at + check.interval_seconds


# -- time ------------------------------------------------------------------------------------

class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds (task start times come from the runtime in the same unit)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


# -- the monitor -----------------------------------------------------------------------------

class HealthMonitor:
    """Runs a task's health checks on their cadence and reports what matters to the agent.

    `on_change` is awaited when the task's health or a check's alive flag changes (the agent
    writes the status then, not after every check); `on_kill` once, when the task must be
    replaced. A callback that raises is logged and tried again after the next check.
    """

    def __init__(
        self,
        checks: list[HealthCheck],
        *,
        host: str,
        ports: list[int],
        exec: ExecFn,
        started_at: float,
        clock: Clock,
        on_change: Callable[[Health, list[HealthResult]], Awaitable[None]],
        on_kill: Callable[[str], Awaitable[None]],
    ) -> None:
        self.checks = list(checks)
        self.host = host
        self.ports = list(ports)
        self.exec = exec
        self.started_at = started_at
        self.clock = clock
        self.on_change = on_change
        self.on_kill = on_kill
        self.states = [initial_state(i) for i in range(len(self.checks))]
        self._published: tuple[Health, tuple[bool, ...]] = (
            "unknown", tuple(False for _ in self.checks))
        self._killed = False
        self._lock = asyncio.Lock()
        self._loops: list[asyncio.Task[None]] = []

    @property
    def health(self) -> Health:
        return task_health(self.states)

    @property
    def results(self) -> list[HealthResult]:
        return [s.result for s in self.states]

    async def run(self) -> None:
        """Check until cancelled. After a kill was requested the checks stop; it waits."""
        async with asyncio.TaskGroup() as group:
            if not self.checks:
                await self._report()
            self._loops = [group.create_task(self._loop(i)) for i in range(len(self.checks))]
        await asyncio.get_running_loop().create_future()  # until cancelled

    async def _loop(self, i: int) -> None:
        check = self.checks[i]
        last: float | None = None
        while True:
            due = next_check_at(check, self.states[i], started_at=self.started_at,
                                last_check_at=last)
            wait = due - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
            last = self.clock.now()
            outcome = await self._probe(check)
            self.states[i] = record(check, self.states[i], outcome,
                                    started_at=self.started_at, now=self.clock.now())
            if await self._report():
                # The task is to be replaced: nothing is left to learn from any check.
                for loop in self._loops:
                    if loop is not asyncio.current_task():
                        loop.cancel()
                return

    async def _probe(self, check: HealthCheck) -> CheckOutcome:
        """One run of a check, cut off at its timeout as measured by the monitor's clock."""
        probe = asyncio.ensure_future(
            run_check(check, host=self.host, ports=self.ports, exec=self.exec))
        timer = asyncio.ensure_future(self.clock.sleep(check.timeout_seconds))
        try:
            await asyncio.wait({probe, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (probe, timer):
                t.cancel()
            await asyncio.gather(probe, timer, return_exceptions=True)
        if not probe.done() or probe.cancelled():
            return timed_out(check.timeout_seconds)
        error = probe.exception()
        if error is not None:  # checkers report failures as outcomes; this is a last resort
            return failed(str(error) or type(error).__name__)
        return probe.result()

    async def _report(self) -> bool:
        """Tell what changed; True once the kill was requested."""
        async with self._lock:
            health = self.health
            alive = tuple(s.result.alive for s in self.states)
            if (health, alive) != self._published:
                try:
                    await self.on_change(health, self.results)
                    self._published = (health, alive)
                except Exception:
                    log.exception("reporting health %s failed", health)
            if self._killed:
                return True
            for check, state in zip(self.checks, self.states, strict=True):
                if must_kill(check, state):
                    try:
                        await self.on_kill(kill_reason(check, state))
                    except Exception:
                        log.exception("requesting a kill failed")
                        return False
                    self._killed = True
                    return True
            return False
