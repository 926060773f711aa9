"""kade as a cluster of processes: a `kade server` and `kade agent`s that follow it through its
store API (never its store), each agent running the tasks placed on its node."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import KadeAgent, KadeServer
from tests.integration.harness import wait_for

pytestmark = pytest.mark.timeout(240)

SPREAD = {"id": "/test/spread", "instances": 2, "cpus": 0.01, "mem": 16, "portDefinitions": [],
          "cmd": "exec sleep 3600", "constraints": [["hostname", "UNIQUE"]],
          "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                            "intervalSeconds": 1, "gracePeriodSeconds": 5}]}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KadeServer, list[KadeAgent]]]:
    server = KadeServer(tmp_path / "server")
    agents: list[KadeAgent] = []
    try:
        server.start()
        for name in ("a", "b"):
            agents.append(KadeAgent(tmp_path / name, [server], driver="exec",
                                    extra=["--attr", f"az=1{name}"]).start())
        yield server, agents
    finally:
        for agent in agents:
            agent.cleanup()
        server.cleanup()


def placed(server: KadeServer, app_id: str) -> dict[str, str]:
    """task id → node, of the app's healthy running tasks."""
    app = server.app(app_id)
    return {t["id"]: t["node"] for t in app["tasks"]
            if t["desired"] == "run" and t["state"] == "TASK_RUNNING" and t["healthy"]}


def test_agents_run_the_tasks_placed_on_their_nodes(
        cluster: tuple[KadeServer, list[KadeAgent]]) -> None:
    server, (a, b) = cluster
    nodes = {n["name"]: n for n in server.get("/v1/nodes")["nodes"]}
    assert nodes[a.node]["attributes"]["az"] == "1a"
    assert nodes[b.node]["attributes"]["az"] == "1b"

    server.deploy(SPREAD)
    tasks = wait_for(lambda: (p := placed(server, "/test/spread")) and len(p) == 2 and p,
                     90, "two healthy tasks")
    assert sorted(tasks.values()) == sorted([a.node, b.node])  # one on each node
    # each task is a process its own node's agent started
    for agent in (a, b):
        assert len(agent.task_pids()) == 1

    # an agent killed: its task keeps running; the agent back adopts it, nothing restarted
    pid_before = b.task_pids()
    b.kill9()
    assert b.task_pids() == pid_before
    b.start()
    wait_for(lambda: placed(server, "/test/spread") == tasks, 60, "the same two tasks")
    assert b.task_pids() == pid_before

    server.client.delete("/v1/apps/test/spread")
    wait_for(lambda: not a.task_pids() and not b.task_pids(), 60, "every process stopped")


def test_an_agent_with_a_bad_token_is_refused_and_says_so(
        cluster: tuple[KadeServer, list[KadeAgent]], tmp_path: Path) -> None:
    server, _ = cluster
    bad = tmp_path / "bad.token"
    bad.write_text("kade.000000000000.notasecret\n")
    agent = KadeAgent(tmp_path / "c", [server], driver="exec",
                      extra=["--token-file", str(bad)])
    agent.data_dir.mkdir(parents=True)
    try:
        with open(agent.log, "ab") as out:
            agent.proc = subprocess.Popen(agent.command(), stdout=out, stderr=subprocess.STDOUT)
        assert agent.proc.wait(60) != 0
        assert "the kade server refused: the token is not valid" in agent.logs()
        assert agent.node not in server.node_names()
    finally:
        agent.proc = None
        agent.cleanup()


def test_a_lost_node_is_replaced_elsewhere_and_cleans_up_when_it_comes_back(
        tmp_path: Path) -> None:
    server = KadeServer(tmp_path / "server")
    agents: list[KadeAgent] = []
    try:
        server.start()
        for name in ("a", "b"):
            agents.append(KadeAgent(tmp_path / name, [server], driver="exec",
                                    extra=["--node-ttl", "2"]).start())
        a, b = agents
        app = {**SPREAD, "id": "/test/lost", "constraints": []}
        server.deploy(app)
        placed_first = wait_for(lambda: (p := placed(server, "/test/lost")) and len(p) == 2
                                and len(set(p.values())) == 2 and p, 90, "one task per node")
        lost = next(t for t, n in placed_first.items() if n == b.node)

        b.kill9()  # the node is lost: its agent and its task
        for pid in b.task_pids():
            os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: next(n for n in server.get("/v1/nodes")["nodes"]
                              if n["name"] == b.node)["status"] == "down", 30, "b down")
        replaced = wait_for(lambda: (p := placed(server, "/test/lost")) and len(p) == 2
                            and lost not in p and p, 90, "a replacement")
        assert set(replaced.values()) == {a.node}  # on the node that stays

        b.start()  # it comes back: what was replaced is gone, nothing runs twice
        wait_for(lambda: lost not in {t["id"] for t in server.app("/test/lost")["tasks"]},
                 60, "the lost task forgotten")
        assert placed(server, "/test/lost") == replaced
        assert not b.task_pids() and len(a.task_pids()) == 2
        server.client.delete("/v1/apps/test/lost")
        wait_for(lambda: not a.task_pids(), 60, "every process stopped")
    finally:
        for agent in agents:
            agent.cleanup()
        server.cleanup()
