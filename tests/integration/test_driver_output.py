"""Drivers' `output`: a task's lines as the log capture follows them, against real Docker
and real processes: whole long lines, streams apart, and a resume that repeats nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kade.drivers import DockerDriver, ExecDriver, LaunchSpec
from kade.drivers.base import OutputLine
from kade.logs.record import Resume, Stream
from kade.spec import parse_app

pytestmark = pytest.mark.timeout(90)

# 40 KiB on one line, then a line on stderr, then numbered lines, the last with no newline
SCRIPT = ("head -c 40960 /dev/zero | tr '\\0' x; echo; echo oops >&2; "
          "i=1; while [ $i -le 300 ]; do echo line $i; i=$((i+1)); done; printf end")


def launch(app: dict[str, Any]) -> LaunchSpec:
    spec = parse_app({"id": "/kadetest/out", "cpus": 0.1, "mem": 32, **app}).app
    return LaunchSpec(task_id=f"kadetest_out.{uuid.uuid4().hex[:12]}", app=spec, version="v1",
                      spec_hash="h1", node="testnode", host="127.0.0.1", host_ports=[],
                      env={})


async def collect(lines: AsyncIterator[OutputLine], limit: int | None = None
                  ) -> list[OutputLine]:
    out: list[OutputLine] = []
    async with asyncio.timeout(60):
        async for line in lines:
            out.append(line)
            if limit is not None and len(out) == limit:
                break
    return out


def resume_after(lines: list[OutputLine]) -> dict[Stream, Resume]:
    """What a store would answer after keeping `lines`."""
    out: dict[Stream, Resume] = {}
    for line in lines:
        old = out.get(line.stream, Resume())
        count = old.count + 1 if old.time == line.time else 1
        out[line.stream] = Resume(line.time, count, line.offset)
    return out


def check_whole(lines: list[OutputLine]) -> None:
    stdout = [x.line for x in lines if x.stream == "stdout"]
    assert stdout[0] == b"x" * 40960
    assert stdout[1:] == [f"line {i}".encode() for i in range(1, 301)] + [b"end"]
    assert [x.line for x in lines if x.stream == "stderr"] == [b"oops"]


@pytest.fixture
async def docker() -> AsyncIterator[DockerDriver]:
    d = DockerDriver()
    try:
        yield d
    finally:
        await d.close()


async def test_docker_output_whole_lines_then_resume(docker: DockerDriver) -> None:
    spec = launch({"cmd": SCRIPT, "container": {"docker": {"image": "kade/busybox:latest"}}})
    w = await docker.start(spec, lambda _: None)
    try:
        lines = await collect(docker.output(w.id, {}))
        check_whole(lines)
        assert all(b.time >= a.time for a, b in zip(lines, lines[1:], strict=False)
                   if a.stream == b.stream)
        # a capture that kept the first 100 lines goes on with the others, none twice
        first = lines[:100]
        rest = await collect(docker.output(w.id, resume_after(first)))
        assert sorted(first + rest, key=lambda x: (x.time, x.stream)) == sorted(
            lines, key=lambda x: (x.time, x.stream))
    finally:
        await docker.remove(w.id)


async def test_docker_output_of_a_tty_container(docker: DockerDriver) -> None:
    spec = launch({"cmd": "echo one; echo two >&2",
                   "container": {"docker": {"image": "kade/busybox:latest",
                                            "parameters": [{"key": "tty", "value": "true"}]}}})
    w = await docker.start(spec, lambda _: None)
    try:
        lines = await collect(docker.output(w.id, {}))
        assert [(x.stream, x.line) for x in lines] == [("stdout", b"one"), ("stdout", b"two")]
    finally:
        await docker.remove(w.id)


async def test_exec_output_whole_lines_then_resume(tmp_path: Path) -> None:
    driver = ExecDriver(tmp_path / "tasks")
    spec = launch({"cmd": SCRIPT})
    try:
        w = await driver.start(spec, lambda _: None)
        lines = await collect(driver.output(w.id, {}))
        check_whole(lines)
        first = lines[:100]
        rest = await collect(driver.output(w.id, resume_after(first)))
        assert [x.line for x in first + rest if x.stream == "stdout"] == [
            x.line for x in lines if x.stream == "stdout"]
    finally:
        await driver.remove(spec.task_id)
        await driver.close()


async def test_exec_output_follows_a_running_task(tmp_path: Path) -> None:
    driver = ExecDriver(tmp_path / "tasks")
    spec = launch({"cmd": "echo first; sleep 0.5; echo second; exec sleep 60"})
    try:
        w = await driver.start(spec, lambda _: None)
        got = await collect(driver.output(w.id, {}), limit=2)
        assert [x.line for x in got] == [b"first", b"second"]
    finally:
        await driver.remove(spec.task_id)
        await driver.close()
