"""Logs through a real `kade up`: an app's instances merged and prefixed, the filters, JSON
lines, a failed and replaced task that still answers with how it ended, a follow that sees
new lines, and `kade logs` as a user types it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.integration.harness import Kade, wait_for

pytestmark = pytest.mark.timeout(240)

TALKER = {
    "id": "/test/talker", "instances": 2, "cpus": 0.01, "mem": 16,
    "container": {"docker": {"image": "kade/busybox:latest"}},
    # pauses between streams: Docker stamps each stream as it reads it
    "cmd": "echo \"plain $KADE_TASK_ID\"; sleep 0.3; echo \"ERROR timeout $KADE_TASK_ID\" >&2; "
           "sleep 0.3; "
           "echo '{\"level\":\"error\",\"msg\":\"payment declined\"}'; "
           "echo '{\"level\":\"info\",\"msg\":\"ok\"}'; exec sleep 1000",
}


def text(kade: Kade, **params: Any) -> list[str]:
    return str(kade.get("/v1/logs", **params)).splitlines()


def cli(kade: Kade, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**kade.cli_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "kade", "logs", *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_instances_merged_filtered_and_as_json(kade: Kade) -> None:
    kade.deploy(TALKER)
    tasks = wait_for(lambda: (t := kade.running_tasks("/test/talker")) and len(t) == 2 and t,
                     90, "two running tasks")
    ids = sorted(t["id"] for t in tasks)
    lines = wait_for(lambda: (x := text(kade, app="/test/talker")) and len(x) == 8 and x, 30,
                     "four lines of each task")
    for task_id in ids:  # every line prefixed by its task
        assert f"{task_id} plain {task_id}" in lines
        assert f"{task_id} ERROR timeout {task_id}" in lines
    assert all(line.split(" ", 1)[0] in ids for line in lines)

    errors = text(kade, app="/test/talker", grep="ERROR|timeout", stream="stderr", since="10m")
    assert sorted(errors) == sorted(f"{i} ERROR timeout {i}" for i in ids)
    assert text(kade, app="/test/talker", grep="ERROR", stream="stdout") == []
    declined = text(kade, app="/test/talker", q="payment declined")
    assert len(declined) == 2 and all("payment declined" in x for x in declined)
    assert len(text(kade, app="/test/talker", where="level=error")) == 2
    assert len(text(kade, app="/test/talker", where=["level!=error", "msg~^o"])) == 2

    rows = [json.loads(x) for x in text(kade, app="/test/talker", format="json", tail=3)]
    assert len(rows) == 3
    assert set(rows[0]) == {"time", "app", "task", "version", "node", "stream", "line"}
    assert rows[0]["app"] == "/test/talker" and rows[0]["node"] == kade.node
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)

    # one task: its lines without a prefix, also through the older endpoint
    one = ids[0]
    assert text(kade, task=one)[0] == f"plain {one}"
    assert str(kade.get(f"/v1/tasks/{one}/logs", tail=1)).splitlines() == [
        '{"level":"info","msg":"ok"}']

    # as a user types it
    done = cli(kade, "/test/talker", "--where", "level=error", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["line"] for x in done.stdout.splitlines()] == [
        '{"level":"error","msg":"payment declined"}'] * 2
    done = cli(kade, one, "-n", "2", "--stream", "stdout")
    assert done.stdout.splitlines() == ['{"level":"error","msg":"payment declined"}',
                                        '{"level":"info","msg":"ok"}']
    done = cli(kade, "/test/talker", "--since", "10x")
    assert done.returncode != 0
    assert "since: '10x' is neither a duration ago" in done.stderr


def test_a_bad_query_is_refused_naming_the_parameter(kade: Kade) -> None:
    for params, message in [({"app": "/a", "tail": "20000"}, "tail: at most 10000"),
                            ({"app": "/a", "grep": "(x"}, "grep: missing ): (x"),
                            ({"app": "/a", "where": "level"}, "where: 'level' needs =, != or ~"),
                            ({}, "app, task: give exactly one")]:
        response = httpx.get(f"http://{kade.addr}/v1/logs", params=params, headers=kade.auth)
        assert response.status_code == 400
        assert response.json()["message"].startswith(message)
    assert httpx.get(f"http://{kade.addr}/v1/logs", params={"app": "/a"}).status_code == 401


def test_a_failed_task_still_answers_with_how_it_ended(kade: Kade) -> None:
    kade.deploy({"id": "/test/crasher", "instances": 1, "cpus": 0.01, "mem": 16,
                 "container": {"docker": {"image": "kade/busybox:latest"}},
                 "cmd": "echo \"about to fail $KADE_TASK_ID\"; sleep 1; exit 3"})
    ended = wait_for(lambda: kade.get("/v1/logs/tasks", app="/test/crasher",
                                      previous="true")["tasks"], 90, "a task that ended")
    gone = ended[0]
    assert gone["exitCode"] == 3 and gone["ended"] is not None
    answer = text(kade, app="/test/crasher", previous="true")
    assert answer[0].startswith(f"--- {gone['task']} on {kade.node}, version ")
    assert "3" in answer[0]
    assert f"about to fail {gone['task']}" in answer
    # replaced: the scheduler has forgotten it, its lines are still kept
    wait_for(lambda: any(t["id"] != gone["task"] for t in kade.app("/test/crasher")["tasks"]),
             90, "a replacement")
    assert str(kade.get(f"/v1/tasks/{gone['task']}/logs")).splitlines() == [
        f"about to fail {gone['task']}"]
    done = cli(kade, "/test/crasher", "--previous")
    assert done.returncode == 0 and done.stdout.startswith(f"--- {gone['task']} on ")


def test_follow_sends_history_then_new_lines(kade: Kade) -> None:
    kade.deploy({"id": "/test/ticker", "instances": 1, "cpus": 0.01, "mem": 16,
                 "container": {"docker": {"image": "kade/busybox:latest"}},
                 "cmd": "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"})
    wait_for(lambda: text(kade, app="/test/ticker"), 90, "a first tick")
    ticks: list[int] = []
    with httpx.stream("GET", f"http://{kade.addr}/v1/logs", headers=kade.auth, timeout=30,
                      params={"app": "/test/ticker", "follow": "1", "tail": "1"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "line":
                data = json.loads(line[6:])
                assert data["app"] == "/test/ticker"
                ticks.append(int(data["line"].split()[1]))
                if len(ticks) == 4:
                    break
    assert ticks == list(range(ticks[0], ticks[0] + 4))  # none lost, none twice

    # as a user types it: each line prefixed by its task, until Ctrl-C
    env = {**kade.cli_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    with subprocess.Popen([sys.executable, "-m", "kade", "logs", "/test/ticker", "-f", "-n", "1"],
                          env=env, stdout=subprocess.PIPE, text=True) as follower:
        assert follower.stdout is not None
        first, second = follower.stdout.readline(), follower.stdout.readline()
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
    task_id = first.split(" ", 1)[0]
    assert first.startswith(f"{task_id} tick ") and second.startswith(f"{task_id} tick ")
    assert int(second.split()[2]) == int(first.split()[2]) + 1
