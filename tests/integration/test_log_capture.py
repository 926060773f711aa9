"""Every task's output captured into the node's log store by a real `kade up`, with Docker
and the exec driver: labels, streams apart, long lines whole, tasks that fail kept with how
they ended, and a `kill -9` of kade that loses no line and stores none twice.

The lines are read with the node's LogStore opened on kade's data dir beside it (SQLite in
WAL mode lets a second process read while kade writes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kade.logs.record import LogLine, LogQuery, TaskLog
from kade.logs.store import LogStore
from tests.integration.harness import Kade, wait_for

pytestmark = pytest.mark.timeout(240)

IMAGE = {"container": {"docker": {"image": "kade/busybox:latest"}}}
LONG = 40 * 1024
# a 40 KiB line, two lines on stdout and one on stderr, then it stays up
CHATTY = ("head -c 40960 /dev/zero | tr '\\0' x; echo; echo 'hello out'; echo 'hello err' >&2; "
          "echo 'bye out'; exec sleep 1000")
# 10,000 numbered lines over a few seconds (100 lines, then a pause), then it stays up
NUMBERED = ("i=1; while [ $i -le 10000 ]; do echo \"line $i\"; "
            "if [ $((i % 100)) -eq 0 ]; then sleep 0.05; fi; i=$((i+1)); done; exec sleep 1000")


def read(kade: Kade, q: LogQuery) -> list[LogLine]:
    async def run() -> list[LogLine]:
        store = await LogStore(kade.data_dir).open()
        try:
            return await store.query(q)
        finally:
            await store.close()
    return asyncio.run(run())


def tasks(kade: Kade, **which: Any) -> list[TaskLog]:
    async def run() -> list[TaskLog]:
        store = await LogStore(kade.data_dir).open()
        try:
            return await store.tasks(**which)
        finally:
            await store.close()
    return asyncio.run(run())


def lines_of(kade: Kade, app_id: str, count: int, **q: Any) -> list[LogLine]:
    """Once at least `count` lines of the app are stored: all of them."""
    def enough() -> list[LogLine] | None:
        got = read(kade, LogQuery(app=app_id, **q))
        return got if len(got) >= count else None
    return list(wait_for(enough, 60, f"{count} lines of {app_id}"))


@pytest.fixture
def both(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade", driver="docker,exec")
    try:
        yield k.start()
    finally:
        k.cleanup()


def app(app_id: str, cmd: str, *, docker: bool, **extra: Any) -> dict[str, Any]:
    return {"id": app_id, "cmd": cmd, "cpus": 0.05, "mem": 32, **(IMAGE if docker else {}),
            **extra}


@pytest.mark.parametrize("docker", [True, False], ids=["docker", "exec"])
def test_lines_are_stored_with_their_labels_and_streams(both: Kade, docker: bool) -> None:
    app_id = "/kadetest/chatty"
    both.deploy(app(app_id, CHATTY, docker=docker))
    got = lines_of(both, app_id, 4)
    task = both.running_tasks(app_id)[0]
    version = both.app(app_id)["version"]
    assert {(x.app, x.task, x.version, x.node) for x in got} == {
        (app_id, task["id"], version, both.node)}
    out = [x.line for x in got if x.stream == "stdout"]
    assert out == ["x" * LONG, "hello out", "bye out"]  # 40 KiB: one line, whole
    assert [x.line for x in got if x.stream == "stderr"] == ["hello err"]
    assert [x.line for x in read(both, LogQuery(app=app_id, streams=("stderr",)))] == [
        "hello err"]
    [started] = tasks(both, app=app_id)
    assert (started.task, started.ended) == (task["id"], None)


@pytest.mark.parametrize("docker", [True, False], ids=["docker", "exec"])
def test_a_failed_task_keeps_its_lines_and_how_it_ended(both: Kade, docker: bool) -> None:
    app_id = "/kadetest/failing"
    both.deploy(app(app_id, "echo 'about to fail'; echo 'the reason' >&2; exit 3",
                    docker=docker, backoffSeconds=1))

    def two_ended() -> list[TaskLog] | None:
        ended = tasks(both, app=app_id, previous=True)
        return ended if len(ended) >= 2 else None

    ended = wait_for(two_ended, 90, f"two failed tasks of {app_id}")
    assert len({t.task for t in ended}) == len(ended)  # each was replaced by another
    for t in ended:
        assert (t.exit_code, t.reason) == (3, "exited with code 3"), (t, both.logs())
        lines = read(both, LogQuery(task=t.task))
        assert [(x.stream, x.line) for x in lines] in (
            [("stdout", "about to fail"), ("stderr", "the reason")],
            [("stderr", "the reason"), ("stdout", "about to fail")]), (t, lines, both.logs())


@pytest.mark.parametrize("docker", [True, False], ids=["docker", "exec"])
def test_kill_9_of_kade_loses_no_line_and_stores_none_twice(both: Kade, docker: bool) -> None:
    app_id = "/kadetest/numbered"
    both.deploy(app(app_id, NUMBERED, docker=docker))
    before = lines_of(both, app_id, 1000)  # it writes on ...
    both.kill9()  # ... while kade is killed,
    assert len(before) < 10_000
    time.sleep(1.0)  # ... and goes on writing while nothing captures it
    both.start()
    got = lines_of(both, app_id, 10_000)
    assert [x.line for x in got] == [f"line {i}" for i in range(1, 10_001)]
    assert len({x.task for x in got}) == 1  # adopted, not restarted
