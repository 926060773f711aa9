"""Logs in a cluster: a server asks every node's listener and merges their answers; a node
answers only requests a server signed for it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kade.auth.assertions import HEADER, ServerKey
from tests.etcd import EtcdCluster
from tests.integration.cluster import KadeAgent, KadeServer
from tests.integration.harness import free_port, wait_for

pytestmark = pytest.mark.timeout(240)

SPREAD = {"id": "/test/spread-logs", "instances": 2, "cpus": 0.01, "mem": 16,
          "portDefinitions": [], "constraints": [["hostname", "UNIQUE"]],
          "cmd": "echo \"hello from $KADE_TASK_ID\"; exec sleep 3600"}


@pytest.fixture
def cluster(tmp_path: Path, etcd_cluster: EtcdCluster
            ) -> Iterator[tuple[KadeServer, list[KadeAgent]]]:
    server = KadeServer(tmp_path / "server", etcd=etcd_cluster.endpoints,
                        prefix=f"kade-{uuid.uuid4().hex[:8]}/")
    agents: list[KadeAgent] = []
    try:
        server.start()
        for name in ("a", "b"):
            agents.append(KadeAgent(tmp_path / name, [server], driver="exec", extra=[
                "--listen", f"127.0.0.1:{free_port()}"]).start())
        yield server, agents
    finally:
        for agent in agents:
            agent.cleanup()
        server.cleanup()


def test_a_server_merges_the_lines_of_every_node(
        cluster: tuple[KadeServer, list[KadeAgent]]) -> None:
    server, (a, b) = cluster
    nodes = {n["name"]: n for n in server.get("/v1/nodes")["nodes"]}
    assert nodes[a.node]["apiUrl"].startswith("http://127.0.0.1:")

    server.deploy(SPREAD)
    rows = wait_for(lambda: (r := [json.loads(x) for x in str(server.get(
        "/v1/logs", app="/test/spread-logs", format="json")).splitlines()]) and len(r) == 2
        and r, 90, "a line from each node")
    assert sorted(r["node"] for r in rows) == sorted([a.node, b.node])
    assert all(r["line"] == f"hello from {r['task']}" for r in rows)
    assert rows[0]["time"] <= rows[1]["time"]
    tasks = server.get("/v1/logs/tasks", app="/test/spread-logs")
    assert sorted(t["node"] for t in tasks["tasks"]) == sorted([a.node, b.node])
    assert tasks["unanswered"] == []

    # a node listener answers only what a server of this cluster signed for it
    listener = nodes[a.node]["apiUrl"]
    path = "/node/v1/logs?app=%2Ftest%2Fspread-logs"
    refused = httpx.get(listener + path)
    assert refused.status_code == 401
    assert refused.json()["message"].startswith("a node answers only servers")
    stranger = ServerKey(server.name)  # the server's name, another key
    token = stranger.sign(a.node, "GET", path, time.time())
    refused = httpx.get(listener + path, headers={HEADER: token})
    assert refused.status_code == 401 and "signature" in refused.json()["message"]

    # a node down: the answer names it, the other node's lines still come
    b.kill9()
    response = httpx.get(f"{server.url}/v1/logs", params={"app": "/test/spread-logs"},
                         headers=server.auth, timeout=30)
    assert response.status_code == 200
    assert response.headers["x-kade-unanswered"] == b.node
    assert [x.split(" ", 1)[1] for x in response.text.splitlines()] == [
        f"hello from {r['task']}" for r in rows if r["node"] == a.node]
