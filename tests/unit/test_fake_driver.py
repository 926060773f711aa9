"""The fake driver behaves like a runtime as far as the agent can tell."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from kade.drivers import (
    DockerDriver,
    Driver,
    DriverError,
    ExecDriver,
    ExecResult,
    LaunchSpec,
    WorkloadEvent,
)
from kade.spec import parse_app
from kade.testing.fake_driver import FakeDriver


def spec(task_id: str = "web.1") -> LaunchSpec:
    app = parse_app({"id": "/web", "cmd": "serve"}).app
    return LaunchSpec(task_id=task_id, app=app, version="v1", spec_hash="h", node="n1",
                      host="127.0.0.1", host_ports=[31000], env={})


def test_every_driver_fits_the_protocol(tmp_path: Path) -> None:
    drivers: list[Driver] = [FakeDriver(), DockerDriver(), ExecDriver(tmp_path)]
    assert [d.name for d in drivers] == ["fake", "docker", "exec"]


async def test_lifecycle_is_recorded_and_announced() -> None:
    d = FakeDriver()
    seen: list[WorkloadEvent] = []

    async def follow() -> None:
        async for ev in d.events():
            seen.append(ev)
    follower = asyncio.create_task(follow())
    await asyncio.sleep(0)
    d.progress_lines = ["pulling web:1: 50%"]
    lines: list[str] = []
    w = await d.start(spec(), lines.append)
    assert lines == ["pulling web:1: 50%"]
    assert w.state == "running" and w.labels["kade.task-id"] == "web.1"
    assert [x.id for x in await d.list()] == [w.id]

    crashed = d.crash("web.1", 3)
    assert crashed.state == "exited" and crashed.exit_code == 3
    assert await d.stop(w.id, 5) == 3  # already exited: its code
    await d.remove(w.id)
    assert await d.list() == []
    await asyncio.sleep(0)
    assert [(e.kind, e.exit_code) for e in seen] == [
        ("started", None), ("exited", 3), ("removed", None)]
    assert [c.method for c in d.calls] == ["start", "list", "stop", "remove", "list"]
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower


async def test_stop_exec_logs_and_failures() -> None:
    d = FakeDriver(stop_exit_code=0)
    d.fail_start("/web", "image web:1 not found and could not be pulled: no registry")
    with pytest.raises(DriverError, match="could not be pulled"):
        await d.start(spec(), lambda _: None)
    d.start_errors.clear()
    w = await d.start(spec(), lambda _: None)
    d.exec_result = lambda wl, cmd: ExecResult(0 if cmd == "ping" else 1, wl.task_id)
    assert await d.exec(w.id, "ping", 5) == ExecResult(0, "web.1")
    assert (await d.exec(w.id, "other", 5)).exit_code == 1
    d.log_data["web.1"] = b"a\nb\nc\n"
    assert b"".join([c async for c in d.logs(w.id, follow=False, tail=2)]) == b"b\nc\n"
    await d.signal(w.id, "SIGHUP")
    assert d.signals == [("web.1", "SIGHUP")]
    assert await d.stop(w.id, 5) == 0
    await d.signal(w.id, "SIGHUP")  # not running any more: nothing is delivered
    assert d.signals == [("web.1", "SIGHUP")]
    with pytest.raises(DriverError):
        await d.exec(w.id, "ping", 5)
    assert await d.stop("missing", 1) is None
    assert await d.resources() == (4.0, 8192.0)
