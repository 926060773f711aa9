"""`kade up` keeps an eye on the router process it started: a router that cannot start fails
`kade up` with the router's own words, and one that dies later is started again, with a
backoff, and reported (log, `GET /v1/processes`).

The router runs in its own session and outlives `kade up` (the data plane outlives the
control plane), so it may be a process this `kade up` did not start: its exit is watched
through a pidfd, which works for any process, not only for children.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("kade.supervise")

READY_TIMEOUT = 15.0  # seconds a router gets to answer its first ping
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a router up this long is well again: the backoff starts over


class StartFailed(Exception):
    pass


@dataclass
class ProcessState:
    pid: int | None = None
    state: str = "starting"  # starting | running | restarting | failed
    restarts: int = 0
    last_exit: str = ""
    last_exit_at: float | None = None
    started_at: float | None = None

    def json(self) -> dict[str, Any]:
        return {"pid": self.pid, "state": self.state, "restarts": self.restarts,
                "lastExit": self.last_exit, "lastExitAt": self.last_exit_at,
                "startedAt": self.started_at}


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


async def wait_exit(pid: int) -> str:
    """Wait until process `pid` is gone; how it ended, when it was our child."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return "gone"
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
        try:
            info = os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)  # noqa: ASYNC222
        except ChildProcessError:
            return "exited"
        if info is None:
            return "exited"
        return f"exit code {info.si_status}" if info.si_code == os.CLD_EXITED else (
            f"killed by signal {info.si_status}")
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


class RouterSupervisor:
    def __init__(self, start: Callable[[], int], ping_url: str, log_file: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self._start = start
        self.ping_url = ping_url
        self.log_file = log_file
        self.clock = clock
        self.state = ProcessState()

    async def start(self) -> int:
        """Start the router (or find the running one) and wait until it answers."""
        pid = await asyncio.to_thread(self._start)
        self.state.pid = pid
        exited = asyncio.ensure_future(wait_exit(pid))
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                if exited.done():
                    self.state.state = "failed"
                    raise StartFailed(f"the router exited at start ({exited.result()}): "
                                      f"{log_tail(self.log_file)}")
                if await _answers(self.ping_url):
                    self.state.state = "running"
                    self.state.started_at = self.clock()
                    return pid
                await asyncio.sleep(0.05)
            raise StartFailed(f"the router did not answer {self.ping_url} within "
                              f"{READY_TIMEOUT:.0f}s: {log_tail(self.log_file)}")
        finally:
            exited.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exited

    async def run(self) -> None:
        """Restart the router whenever it goes, with a backoff, for as long as kade runs."""
        backoff = BACKOFF_FIRST
        while True:
            assert self.state.pid is not None
            how = await wait_exit(self.state.pid)
            now = self.clock()
            if self.state.started_at is not None and now - self.state.started_at > STABLE_AFTER:
                backoff = BACKOFF_FIRST
            self.state.last_exit = f"{how}: {log_tail(self.log_file, 3)}"
            self.state.last_exit_at = now
            self.state.state = "restarting"
            log.warning("router (pid %d) stopped (%s); starting it again in %.0fs",
                        self.state.pid, self.state.last_exit, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            self.state.restarts += 1
            try:
                pid = await self.start()
                log.info("router started again (pid %d)", pid)
            except StartFailed as e:
                log.error("%s", e)
                self.state.started_at = None
