"""Every driver a node has, as one Driver: Docker and exec tasks side by side.

The app's shape picks the driver (`kade.model.driver_for`: an image runs on Docker, a command
app as a plain process); everything else a workload is asked (stop, exec, logs) goes to the
driver that started or listed it. Their event streams are merged into one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

from kade.drivers.base import (
    Driver,
    DriverError,
    ExecResult,
    LaunchSpec,
    OutputLine,
    Workload,
    WorkloadEvent,
)
from kade.logs.record import Resume, Stream
from kade.model import DRIVER_APPS, driver_for
from kade.spec import AppSpec


class NodeDrivers:
    """Drivers by name (`docker`, `exec`); the first one answers `resources()`."""

    def __init__(self, drivers: Sequence[Driver]) -> None:
        if not drivers:
            raise ValueError("a node needs at least one driver")
        self.drivers = {d.name: d for d in drivers}
        self.names = list(self.drivers)
        self.name = "+".join(self.names)
        # who runs a command app that names no user: the exec driver's choice
        self.default_user = next((d.default_user for d in drivers if d.default_user), None)
        # where a command app's files go: the exec driver's sandbox (see Templating)
        self.sandbox: Callable[[str], Path] | None = next(
            (d.sandbox for d in drivers if hasattr(d, "sandbox")), None)
        self._owner: dict[str, Driver] = {}  # workload id → the driver that has it

    def for_app(self, app: AppSpec) -> Driver:
        """The driver that runs tasks of `app`; DriverError when this node has none."""
        kind = driver_for(app)
        driver = self.drivers.get(kind)
        if driver is None:
            raise DriverError(f"node runs no {DRIVER_APPS.get(kind, kind)} "
                              f"(drivers: {', '.join(self.names)})")
        return driver

    async def _of(self, workload_id: str) -> Driver | None:
        driver = self._owner.get(workload_id)
        if driver is None:
            await self.list()  # e.g. one started before this agent and not listed yet
            driver = self._owner.get(workload_id)
        return driver

    # -- the Driver protocol -----------------------------------------------------------------

    async def resources(self) -> tuple[float, float]:
        return await next(iter(self.drivers.values())).resources()

    async def list(self) -> list[Workload]:
        out: list[Workload] = []
        for driver in self.drivers.values():
            for workload in await driver.list():
                self._owner[workload.id] = driver
                out.append(workload)
        return out

    async def start(self, spec: LaunchSpec, progress: Callable[[str], None]) -> Workload:
        driver = self.for_app(spec.app)
        workload = await driver.start(spec, progress)
        self._owner[workload.id] = driver
        return workload

    async def stop(self, workload_id: str, grace: float) -> int | None:
        driver = await self._of(workload_id)
        return None if driver is None else await driver.stop(workload_id, grace)

    async def signal(self, workload_id: str, signal: str) -> None:
        driver = await self._of(workload_id)
        if driver is not None:
            await driver.signal(workload_id, signal)

    async def remove(self, workload_id: str) -> None:
        driver = await self._of(workload_id)
        if driver is not None:
            await driver.remove(workload_id)
            self._owner.pop(workload_id, None)

    async def pid(self, workload_id: str) -> int | None:
        driver = await self._of(workload_id)
        return None if driver is None else await driver.pid(workload_id)

    async def alive(self, workload_id: str) -> bool:
        driver = await self._of(workload_id)
        return driver is not None and await driver.alive(workload_id)

    async def exec(self, workload_id: str, command: str, timeout: float) -> ExecResult:
        driver = await self._of(workload_id)
        if driver is None:
            raise DriverError(f"{workload_id} is not running")
        return await driver.exec(workload_id, command, timeout)

    async def events(self) -> AsyncIterator[WorkloadEvent]:
        """The events of every driver, as they come. A driver's stream that fails ends this
        one with its error (the agent's task group sees it), as a single driver's would."""
        queue: asyncio.Queue[WorkloadEvent | BaseException] = asyncio.Queue()

        async def pump(driver: Driver) -> None:
            try:
                async for event in driver.events():
                    if event.kind == "started":
                        self._owner.setdefault(event.id, driver)
                    queue.put_nowait(event)
                queue.put_nowait(DriverError(f"the {driver.name} driver's events ended"))
            except Exception as e:  # noqa: BLE001 - handed to the reader, who raises it
                queue.put_nowait(e)

        pumps = [asyncio.create_task(pump(d), name=f"events of {d.name}")
                 for d in self.drivers.values()]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    def logs(self, workload_id: str, *, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        return self._logs(workload_id, follow=follow, tail=tail)

    async def _logs(self, workload_id: str, *, follow: bool,
                    tail: int | None) -> AsyncIterator[bytes]:
        driver = await self._of(workload_id)
        if driver is None:
            raise DriverError(f"no such workload: {workload_id}")
        async for chunk in driver.logs(workload_id, follow=follow, tail=tail):
            yield chunk

    def output(self, workload_id: str,
               resume: Mapping[Stream, Resume]) -> AsyncIterator[OutputLine]:
        return self._output(workload_id, resume)

    async def _output(self, workload_id: str,
                      resume: Mapping[Stream, Resume]) -> AsyncIterator[OutputLine]:
        driver = await self._of(workload_id)
        if driver is None:
            return
        async for line in driver.output(workload_id, resume):
            yield line

    async def close(self) -> None:
        for driver in self.drivers.values():
            await driver.close()


def driver_names(driver: Driver) -> list[str]:
    """The kinds of task a node with `driver` runs, for its `Node.drivers`."""
    return list(driver.names) if isinstance(driver, NodeDrivers) else [driver.name]
