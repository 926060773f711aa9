"""Metrics in a cluster (two servers on etcd, two agents with listeners): a query on a server
reads every node's series; a node answers only what a server signed; a node killed is named
in the answer's warnings, and the leader's built-in KadeNodeDown fires, on every server's
/v1/alerts and to a webhook."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.etcd import EtcdCluster
from tests.integration.cluster import KadeAgent, KadeServer
from tests.integration.harness import free_port, wait_for
from tests.integration.webhooks import Hook

pytestmark = pytest.mark.timeout(300)

FAST = ["--metrics-interval", "1s"]
APP = "/test/spread-metrics"
SPREAD = {"id": APP, "instances": 2, "cpus": 0.01, "mem": 16, "portDefinitions": [],
          "constraints": [["hostname", "UNIQUE"]], "cmd": "exec sleep 3600"}
CPU_BY_NODE = f'sum by (node) (kade_task_cpu_seconds_total{{app="{APP}"}})'


class Cluster:
    def __init__(self, servers: list[KadeServer], agents: list[KadeAgent], hook: Hook) -> None:
        self.servers = servers
        self.agents = agents
        self.hook = hook


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, etcd_cluster: EtcdCluster
            ) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("metrics-cluster")
    hook = Hook()
    prefix = f"kade-{uuid.uuid4().hex[:8]}/"
    servers = [KadeServer(root / f"server{i}", etcd=etcd_cluster.endpoints, prefix=prefix,
                          extra=[*FAST, "--alert-interval", "1s", "--alert-webhook", hook.url])
               for i in (1, 2)]
    agents: list[KadeAgent] = []
    try:
        for server in servers:
            server.start()
        for name in ("a", "b"):
            agents.append(KadeAgent(root / name, servers, driver="exec", extra=[
                *FAST, "--node-ttl", "2", "--listen", f"127.0.0.1:{free_port()}"]).start())
        yield Cluster(servers, agents, hook)
    finally:
        for agent in agents:
            agent.cleanup()
        for server in servers:
            server.cleanup()
        hook.close()


def prometheus(server: KadeServer, path: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{server.url}{path}", params=params, headers=server.auth, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def by_node(server: KadeServer) -> dict[str, float]:
    got = prometheus(server, "/api/v1/query", query=CPU_BY_NODE)["data"]["result"]
    return {r["metric"]["node"]: float(r["value"][1]) for r in got}


def test_a_query_on_any_server_reads_every_node(cluster: Cluster) -> None:
    one, two = cluster.servers
    a, b = cluster.agents
    one.deploy(SPREAD)
    wait_for(lambda: sorted(by_node(one)) == sorted([a.node, b.node]), 90,
             "both nodes' tasks in one query")
    answer = prometheus(two, "/api/v1/query", query=CPU_BY_NODE)
    assert sorted(r["metric"]["node"] for r in answer["data"]["result"]) == sorted(
        [a.node, b.node])
    assert "warnings" not in answer

    def ranged() -> list[dict[str, Any]]:
        now = time.time()
        return list(prometheus(one, "/api/v1/query_range", query=CPU_BY_NODE,
                               start=str(now - 30), end=str(now), step="1")["data"]["result"])

    got = wait_for(lambda: (r := ranged()) and all(len(x["values"]) >= 3 for x in r) and r,
                   30, "a few points of each node")
    assert sorted(r["metric"]["node"] for r in got) == sorted([a.node, b.node])

    # the server's own series (what the control plane knows) beside the nodes'
    up = prometheus(one, "/api/v1/query", query="kade_node_up")["data"]["result"]
    assert {r["metric"]["node"]: r["value"][1] for r in up} == {a.node: "1", b.node: "1"}
    disks = prometheus(one, "/api/v1/series", **{"match[]": "kade_disk_free_bytes"})["data"]
    assert sorted(d.get("node") or d["server"] for d in disks) == sorted(
        [a.node, b.node, one.name])

    text = httpx.get(f"{two.url}/metrics", headers=two.auth, timeout=30).text
    for node in (a.node, b.node):
        assert f'node="{node}"' in text and "kade_task_cpu_seconds_total{" in text
    assert "kade_app_instances{" in text


def test_a_node_answers_only_signed_requests(cluster: Cluster) -> None:
    one = cluster.servers[0]
    nodes = {n["name"]: n for n in one.get("/v1/nodes")["nodes"]}
    listener = nodes[cluster.agents[0].node]["apiUrl"]
    refused = httpx.get(f"{listener}/node/v1/metrics/select",
                        params={"match[]": "kade_task_cpu_seconds_total", "start": "0",
                                "end": str(int(time.time() * 1000))})
    assert refused.status_code == 401
    assert refused.json()["message"].startswith("a node answers only servers")


def test_a_node_killed_is_named_and_the_leader_alerts(cluster: Cluster) -> None:
    one, two = cluster.servers
    a, b = cluster.agents
    wait_for(lambda: sorted(by_node(one)) == sorted([a.node, b.node]), 60, "both nodes")
    b.kill9()
    answer = prometheus(two, "/api/v1/query", query=CPU_BY_NODE)
    assert [r["metric"]["node"] for r in answer["data"]["result"]] == [a.node]
    [warning] = answer["warnings"]
    assert warning.startswith(f"node {b.node} did not answer (")

    # down once its lease ends, then firing after the rule's minute: on every server
    def firing() -> list[dict[str, Any]]:
        return [x for x in two.get("/v1/alerts", state="firing")["alerts"]
                if x["labels"]["alertname"] == "KadeNodeDown"]

    [alert] = wait_for(firing, 150, "KadeNodeDown firing")
    assert alert["labels"]["node"] == b.node
    assert [x["labels"]["node"] for x in one.get("/v1/alerts", state="firing")["alerts"]
            if x["labels"]["alertname"] == "KadeNodeDown"] == [b.node]
    wait_for(lambda: "firing" in cluster.hook.statuses("KadeNodeDown"), 30,
             "the webhook told")
    body = next(x for x in cluster.hook.bodies if x["groupLabels"].get("alertname")
                == "KadeNodeDown")
    assert body["alerts"][0]["labels"]["node"] == b.node
    # down, b is no longer waited for: its absence is named, the alert stands
    later = prometheus(one, "/api/v1/query", query=CPU_BY_NODE)
    assert later["warnings"][0].startswith(f"node {b.node} did not answer (down")
