"""The exec driver with real processes: command apps that outlive the agent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kade.drivers import DriverError, ExecDriver, LaunchSpec, WorkloadEvent
from kade.drivers.exec import TaskRecord, is_running
from kade.spec import parse_app

pytestmark = pytest.mark.timeout(60)


def launch(cmd: str, env: dict[str, str] | None = None, **app: Any) -> LaunchSpec:
    spec = parse_app({"id": "/kadetest/cmd", "cmd": cmd, **app}).app
    return LaunchSpec(
        task_id=f"kadetest_cmd.{uuid.uuid4().hex[:12]}", app=spec, version="v1",
        spec_hash="h1", node="testnode", host="127.0.0.1", host_ports=[],
        env=env or {},
    )


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


def kill_all(work_dir: Path) -> None:
    """Teardown: no process a test started survives it."""
    for meta in work_dir.glob("*/task.json"):
        rec = TaskRecord(**json.loads(meta.read_text()))
        if is_running(rec):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rec.pid, signal.SIGKILL)


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[ExecDriver]:
    d = ExecDriver(tmp_path / "tasks")
    try:
        yield d
    finally:
        await d.close()
        kill_all(tmp_path / "tasks")


class Events:
    """Collects a driver's events in the background, from the moment `open` returns."""

    def __init__(self, driver: ExecDriver) -> None:
        self.seen: list[WorkloadEvent] = []
        self._subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._run(driver))

    @classmethod
    async def open(cls, driver: ExecDriver) -> Events:
        events = cls(driver)
        await events._subscribed.wait()
        return events

    async def _run(self, driver: ExecDriver) -> None:
        stream = driver.events()
        self._subscribed.set()  # the first step below subscribes before anything else runs
        async for ev in stream:
            self.seen.append(ev)

    async def wait(self, task_id: str, kinds: list[str]) -> list[WorkloadEvent]:
        async def arrived() -> list[WorkloadEvent] | None:
            mine = [e for e in self.seen if e.task_id == task_id]
            return mine if [e.kind for e in mine] == kinds else None
        result: list[WorkloadEvent] = await until(arrived, f"events {kinds} of {task_id}")
        return result

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_start_runs_in_a_sandbox_with_only_the_task_env(
        driver: ExecDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KADE_TEST_AGENT_SECRET", "do-not-leak")
    spec = launch("env > env.txt; echo out; echo err >&2; sleep 300",
                  env={"PORT0": "31001", "GREETING": "hi there"}, labels={"team": "ops"})
    w = await driver.start(spec, lambda _: None)
    assert w.state == "running" and w.id.startswith("pid:") and w.started_at
    box = driver.work_dir / spec.task_id

    async def written() -> bool:
        return (box / "env.txt").exists() and (box / "stderr").read_bytes() == b"err\n"
    await until(written, "the task's output")
    env = dict(line.split("=", 1) for line in (box / "env.txt").read_text().splitlines())
    assert env["PORT0"] == "31001" and env["GREETING"] == "hi there" and env["PATH"]
    assert "KADE_TEST_AGENT_SECRET" not in env
    assert (box / "stdout").read_bytes() == b"out\n"
    meta = json.loads((box / "task.json").read_text())
    assert meta["pid"] == int(w.id.split(":")[1]) and meta["start_ticks"] > 0
    assert os.getpgid(meta["pid"]) == meta["pid"]  # its own session and process group

    [listed] = [x for x in await driver.list() if x.task_id == spec.task_id]
    assert listed.state == "running" and listed.app_id == "/kadetest/cmd"
    assert listed.labels["team"] == "ops" and listed.spec_hash == "h1"


async def test_events_report_exit_codes_at_once(driver: ExecDriver) -> None:
    events = await Events.open(driver)
    try:
        quick = await driver.start(launch("exit 3"), lambda _: None)
        [started, exited] = await events.wait(quick.task_id, ["started", "exited"])
        assert exited.exit_code == 3 and exited.id == quick.id
        [listed] = [x for x in await driver.list() if x.task_id == quick.task_id]
        assert listed.state == "exited" and listed.exit_code == 3

        slow = await driver.start(launch("sleep 300"), lambda _: None)
        os.killpg(int(slow.id.split(":")[1]), signal.SIGKILL)
        [_, killed] = await events.wait(slow.task_id, ["started", "exited"])
        assert killed.exit_code == 137

        await driver.remove(slow.id)
        await events.wait(slow.task_id, ["started", "exited", "removed"])
        assert not (driver.work_dir / slow.task_id).exists()
    finally:
        await events.close()


async def test_stop_terms_the_group_then_kills_after_the_grace(driver: ExecDriver) -> None:
    polite = await driver.start(launch("sleep 300 & wait"), lambda _: None)
    assert await driver.stop(polite.id, grace=30) == 143
    stubborn = await driver.start(launch("trap '' TERM; echo ready; sleep 300; sleep 300"),
                                  lambda _: None)
    stdout = driver.work_dir / stubborn.task_id / "stdout"

    async def trapped() -> bool:
        return stdout.read_bytes() == b"ready\n"
    await until(trapped, "the TERM trap to be set")
    assert await driver.stop(stubborn.id, grace=0.3) == 137
    listed = {x.task_id: x for x in await driver.list()}
    assert listed[polite.task_id].state == "exited" and listed[polite.task_id].exit_code == 143
    assert listed[stubborn.task_id].exit_code == 137
    assert await driver.stop(polite.id, grace=1) == 143  # stopping again is harmless
    for w in (polite, stubborn):  # the backgrounded or running sleeps went with the shell
        await until(group_gone(int(w.id.split(":")[1])), "the process group to end")


def group_gone(pgid: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False
    return check


AGENT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from kade.drivers import ExecDriver, LaunchSpec
    from kade.spec import parse_app

    async def main():
        d = ExecDriver(Path(sys.argv[1]))
        app = parse_app({"id": "/kadetest/cmd", "cmd": "echo started; sleep 300"}).app
        spec = LaunchSpec(task_id=sys.argv[2], app=app, version="v1", spec_hash="h1",
                          node="n", host="127.0.0.1", host_ports=[], env={})
        w = await d.start(spec, print)
        print(w.id)
        await d.close()

    asyncio.run(main())
""")


async def test_a_new_agent_adopts_what_an_exited_one_started(driver: ExecDriver) -> None:
    task_id = f"kadetest_cmd.{uuid.uuid4().hex[:12]}"
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AGENT, str(driver.work_dir), task_id, stdout=subprocess.PIPE)
    out, _ = await agent.communicate()
    assert agent.returncode == 0  # the old agent is gone; its task runs on
    workload_id = out.decode().split()[-1]

    [adopted] = [x for x in await driver.list() if x.task_id == task_id]
    assert adopted.state == "running" and adopted.id == workload_id
    events = await Events.open(driver)
    try:
        assert await driver.stop(workload_id, grace=10) is None  # not our child: code unknown
        [exited] = await events.wait(task_id, ["exited"])
        assert exited.exit_code is None
    finally:
        await events.close()
    [after] = [x for x in await driver.list() if x.task_id == task_id]
    assert after.state == "exited"
    logs = b"".join([c async for c in driver.logs(workload_id, follow=False, tail=None)])
    assert logs == b"started\n"


async def test_a_reused_pid_is_not_mistaken_for_the_task(driver: ExecDriver) -> None:
    task_id = "kadetest_cmd.reused"
    box = driver.work_dir / task_id
    box.mkdir(parents=True)
    # Our own pid runs, but it started at another time than the one recorded.
    rec = {"task_id": task_id, "pid": os.getpid(), "start_ticks": 1, "started_at": 1.0,
           "labels": {"kade.app-id": "/kadetest/cmd"}, "env": {}}
    (box / "task.json").write_text(json.dumps(rec))
    [listed] = [x for x in await driver.list() if x.task_id == task_id]
    assert listed.state == "exited"
    assert await driver.stop(listed.id, grace=1) is None
    await driver.remove(listed.id)
    assert not box.exists()


async def test_exec_runs_with_the_task_env_and_cwd(driver: ExecDriver) -> None:
    w = await driver.start(launch("sleep 300", env={"FOO": "bar"}), lambda _: None)
    ok = await driver.exec(w.id, "echo $FOO; pwd; echo oops >&2", timeout=10)
    assert ok.exit_code == 0
    assert ok.output.splitlines() == ["bar", str(driver.work_dir / w.task_id), "oops"]
    assert (await driver.exec(w.id, "exit 7", timeout=10)).exit_code == 7
    slow = await driver.exec(w.id, "sleep 300", timeout=0.3)
    assert slow.exit_code == 124 and slow.output == "timed out after 0.3s"
    await driver.stop(w.id, grace=5)
    with pytest.raises(DriverError, match="not running"):
        await driver.exec(w.id, "true", timeout=5)


async def test_signal_goes_to_the_process_group(driver: ExecDriver) -> None:
    w = await driver.start(
        launch("trap 'echo got-hup' HUP; echo ready; while true; do sleep 0.1; done"),
        lambda _: None)
    stdout = driver.work_dir / w.task_id / "stdout"

    async def logged(text: bytes) -> bool:
        return text in stdout.read_bytes()
    await until(lambda: logged(b"ready"), "the trap to be set")
    await driver.signal(w.id, "SIGHUP")
    await until(lambda: logged(b"got-hup"), "the app to get SIGHUP")
    [listed] = [x for x in await driver.list() if x.task_id == w.task_id]
    assert listed.state == "running"
    with pytest.raises(DriverError, match="unknown signal"):
        await driver.signal(w.id, "SIGNOPE")
    await driver.stop(w.id, grace=5)
    await driver.signal(w.id, "SIGHUP")  # not running: nothing to do, no error


async def test_logs_tail_and_follow(driver: ExecDriver) -> None:
    w = await driver.start(launch("echo 1; echo 2; echo 3; echo e >&2; sleep 0.5; echo 4"),
                           lambda _: None)
    followed = b"".join([c async for c in driver.logs(w.id, follow=True, tail=None)])
    assert sorted(followed.splitlines()) == [b"1", b"2", b"3", b"4", b"e"]
    tail = b"".join([c async for c in driver.logs(w.id, follow=False, tail=2)])
    assert tail == b"3\n4\ne\n"  # the last 2 lines of stdout, then of stderr
    assert b"".join([c async for c in driver.logs(w.id, follow=False, tail=0)]) == b""
    with pytest.raises(DriverError):
        async for _ in driver.logs("pid:1:kadetest_cmd.missing", follow=False, tail=None):
            pass


async def test_only_command_apps_and_missing_tasks_are_fine(driver: ExecDriver) -> None:
    image_app = parse_app({"id": "/kadetest/img", "cmd": "true",
                           "container": {"docker": {"image": "kade/busybox"}}}).app
    spec = launch("true")
    with pytest.raises(DriverError, match="only command apps"):
        await driver.start(LaunchSpec(**{**spec.__dict__, "app": image_app}), lambda _: None)
    assert await driver.stop("pid:1:kadetest_cmd.missing", grace=1) is None
    await driver.remove("pid:1:kadetest_cmd.missing")
    cpus, mem = await driver.resources()
    assert cpus >= 1 and mem > 100


@pytest.mark.skipif(os.geteuid() != 0, reason="changing users needs root")
async def test_a_command_app_without_a_user_runs_as_the_default_user(tmp_path: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    d = ExecDriver(tmp_path / "tasks", default_user="nobody")
    try:
        spec = launch("mkdir www && id -u > www/uid; id -g >> www/uid; id -G >> www/uid; "
                      "echo $HOME >> www/uid; sleep 300")
        w = await d.start(spec, lambda _: None)
        box = d.work_dir / spec.task_id
        uid_file = box / "www" / "uid"

        async def written() -> bool:
            return uid_file.exists() and len(uid_file.read_text().splitlines()) == 4
        await until(written, "the task's ids")
        uid, gid, groups, home = uid_file.read_text().splitlines()
        assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)
        assert "0" not in groups.split()  # root's group is not kept
        assert home == str(box)
        assert box.stat().st_uid == nobody.pw_uid and box.stat().st_mode & 0o777 == 0o700
        await d.stop(w.id, 5)

        asked = launch("id -u; sleep 300", user="root")  # admission allowed it: it is honoured
        w = await d.start(asked, lambda _: None)
        out = d.work_dir / asked.task_id / "stdout"

        async def said() -> bool:
            return out.read_bytes() == b"0\n"
        await until(said, "root's uid")
        await d.stop(w.id, 5)

        with pytest.raises(DriverError, match="user: 'no-such-user-x' is not a user of this host"):
            await d.start(launch("true", user="no-such-user-x"), lambda _: None)
    finally:
        await d.close()
        kill_all(tmp_path / "tasks")
