"""A clock that moves only when a test says so, for code written against a `Clock`.

`FakeClock` satisfies the `Clock` protocol (`now()`, `async sleep()`). `await advance(s)` moves
time forward and wakes each sleeper at its own deadline, earliest first, letting the woken
code run (and go back to sleep) before the next deadline is reached. So a 300-second scenario
with checks every second runs in milliseconds, in the same order every time.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field


@dataclass(order=True)
class _Sleeper:
    deadline: float
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0, *, settle_rounds: int = 50) -> None:
        self._now = start
        self._sleepers: list[_Sleeper] = []
        self._seq = itertools.count()
        # How many event-loop turns woken code gets to reach its next await of the clock.
        self.settle_rounds = settle_rounds

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        sleeper = _Sleeper(self._now + seconds, next(self._seq),
                           asyncio.get_running_loop().create_future())
        self._sleepers.append(sleeper)
        try:
            await sleeper.future
        finally:
            if sleeper in self._sleepers:
                self._sleepers.remove(sleeper)

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock."""
        return sum(1 for s in self._sleepers if not s.future.done())

    def next_deadline(self) -> float | None:
        pending = [s.deadline for s in self._sleepers if not s.future.done()]
        return min(pending) if pending else None

    async def settle(self) -> None:
        """Let runnable tasks run until they wait again (a bounded number of loop turns)."""
        for _ in range(self.settle_rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking sleepers in deadline order on the way."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._now + seconds
        await self.settle()
        while True:
            due = sorted(s for s in self._sleepers if s.deadline <= target and not s.future.done())
            if not due:
                break
            self._now = max(self._now, due[0].deadline)
            for s in due:
                if s.deadline <= self._now:
                    self._sleepers.remove(s)
                    s.future.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    async def advance_to(self, when: float) -> None:
        await self.advance(max(0.0, when - self._now))
