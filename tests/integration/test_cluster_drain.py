"""Drains, system apps and constraints on a real cluster: a `kade server` and three
`kade agent`s in zones 1a, 1b and 1c, running `kade/site` containers on Docker.

Visitors must not notice a drain: a client sends requests without pause through the router of
a node that stays while one node, then a whole zone, is drained; every request must succeed,
and the app must keep `minimumHealthCapacity` × instances healthy tasks all along (the API is
sampled while the drain runs). One cluster serves the whole module; each test leaves it as it
found it (apps removed, nodes eligible again).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.cluster import KadeAgent, KadeServer
from tests.integration.harness import wait_for
from tests.integration.traffic import Load, Lowest

pytestmark = pytest.mark.timeout(300)

APP = "/drain/web"
HOST = "drain.localhost"
ZONES = ("1a", "1b", "1c")
HEALTH = {"protocol": "HTTP", "path": "/health", "intervalSeconds": 1, "timeoutSeconds": 2,
          "gracePeriodSeconds": 10, "maxConsecutiveFailures": 3}


def web(instances: int = 3, **extra: Any) -> dict[str, Any]:
    return {"id": APP, "instances": instances, "cpus": 0.01, "mem": 16,
            "container": {"docker": {"image": "kade/site:1"}}, "healthChecks": [HEALTH],
            "routes": [{"rule": f"Host(`{HOST}`)"}],
            "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0.5},
            "taskKillGracePeriodSeconds": 5, **extra}


class Cluster:
    def __init__(self, server: KadeServer, agents: list[KadeAgent]) -> None:
        self.server = server
        self.agents = agents

    def zone(self, agent: KadeAgent) -> str:
        return ZONES[self.agents.index(agent) % len(ZONES)]

    def node(self, name: str) -> dict[str, Any]:
        return dict(self.server.get(f"/v1/nodes/{name}")["node"])

    def placed(self, app_id: str) -> list[dict[str, Any]]:
        """The app's healthy running tasks that should run."""
        return [t for t in self.server.app(app_id)["tasks"]
                if t["desired"] == "run" and t["state"] == "TASK_RUNNING" and t["healthy"]]

    def remove_all(self) -> None:
        for app_id in [a["id"] for a in self.server.get("/v1/apps")["apps"]]:
            self.server.client.delete("/v1/apps/" + app_id.strip("/"))
        wait_for(lambda: not any(a.containers() for a in self.agents), 90,
                 "every app's containers gone")

    def enable_all(self) -> None:
        for agent in self.agents:
            self.server.client.request("DELETE", f"/v1/nodes/{agent.node}/drain",
                                       params={"eligible": "true"})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("drain")
    server = KadeServer(tmp / "server")
    agents: list[KadeAgent] = []
    try:
        server.start()
        for zone in ZONES:
            agents.append(KadeAgent(tmp / zone, [server], extra=["--attr", f"az={zone}"])
                          .start())
        yield Cluster(server, agents)
    finally:
        for agent in agents:
            agent.cleanup()
        server.cleanup()


@pytest.fixture
def clean(cluster: Cluster) -> Iterator[Cluster]:
    try:
        yield cluster
    finally:
        cluster.remove_all()
        cluster.enable_all()


def serving(cluster: Cluster, via: KadeAgent) -> str:
    """The URL of `via`'s router, once it serves the app."""
    url = f"http://127.0.0.1:{via.http_port}/"
    wait_for(lambda: httpx.get(url, headers={"Host": HOST}, timeout=2).status_code == 200,
             60, f"the route through {via.node}'s router")
    return url


def cli(cluster: Cluster, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**cluster.server.cli_env, "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "kade", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def assert_drained(cluster: Cluster, agent: KadeAgent) -> None:
    shown = wait_for(lambda: (n := cluster.node(agent.node))["status"] == "drained" and n,
                     30, f"{agent.node} drained")
    assert (shown["tasks"], shown["eligible"]) == (0, False)
    assert shown["drain"]["complete"] and shown["drain"]["tasks"]["left"] == 0
    wait_for(lambda: not agent.containers(), 60, f"no container left on {agent.node}")


def test_a_node_drains_under_load_without_a_failed_request(clean: Cluster) -> None:
    c = clean
    stays = c.agents[2]
    c.server.deploy(web())
    tasks = wait_for(lambda: len(p := c.placed(APP)) == 3 and p, 120, "3 healthy tasks")
    on = {t["node"] for t in tasks}
    first = next(a for a in c.agents if a is not stays and a.node in on)
    url = serving(c, stays)

    with Load(url, HOST) as load, Lowest(lambda: len(c.placed(APP)), every=0.05) as capacity:
        wait_for(lambda: load.served() > 30, 30, "traffic to flow")
        c.server.client.post(f"/v1/nodes/{first.node}/drain", {"deadline": "5m"})
        wait_for(lambda: c.node(first.node)["status"] == "drained", 180,
                 f"{first.node} drained")
        wait_for(lambda: len(c.placed(APP)) == 3, 60, "3 healthy tasks again")
        served = load.served()
        wait_for(lambda: load.served() > served + 30, 30, "traffic after the drain")

    assert load.failures == [], Counter(load.failures).most_common(5)
    assert capacity.samples and capacity.lowest >= 3, capacity.samples
    assert_drained(c, first)
    assert all(t["node"] != first.node for t in c.placed(APP))
    shown = c.node(first.node)["drain"]["tasks"]
    assert shown["done"] == shown["total"] >= 1


def test_a_zone_drains_from_the_cli_under_load_without_a_failed_request(
        clean: Cluster) -> None:
    c = clean
    _, second, stays = c.agents
    c.server.deploy(web(instances=4))
    wait_for(lambda: len(c.placed(APP)) == 4, 120, "4 healthy tasks")
    url = serving(c, stays)

    with Load(url, HOST) as load, Lowest(lambda: len(c.placed(APP)), every=0.05) as capacity:
        wait_for(lambda: load.served() > 30, 30, "traffic to flow")
        # the command follows the progress until the zone is drained
        done = cli(c, "node", "drain", "--attr", "az=1b", "--deadline", "5m")
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: len(c.placed(APP)) == 4, 60, "4 healthy tasks again")
        served = load.served()
        wait_for(lambda: load.served() > served + 30, 30, "traffic after the drain")

    assert f"{second.node}: drained" in done.stdout, done.stdout
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert capacity.samples and capacity.lowest >= 4, capacity.samples
    assert_drained(c, second)
    progress = c.server.get("/v1/nodes/drain", attr="az=1b")
    assert progress["complete"] and [d["node"] for d in progress["drains"]] == [second.node]
    # nothing moved within the zone, and the other zones took its tasks
    assert {t["node"] for t in c.placed(APP)} <= {c.agents[0].node, stays.node}


EXPORTER = {"id": "/drain/exporter", "type": "system", "cpus": 0.01, "mem": 16,
            "container": {"docker": {"image": "kade/site:1"}}, "healthChecks": [HEALTH]}


def test_a_system_app_runs_on_every_agent_follows_a_joining_one_and_stays_when_kept(
        clean: Cluster, tmp_path: Path) -> None:
    c = clean
    c.server.deploy(EXPORTER)
    tasks = wait_for(lambda: len(p := c.placed("/drain/exporter")) == 3 and p, 120,
                     "an exporter on each agent")
    assert sorted(t["node"] for t in tasks) == sorted(a.node for a in c.agents)

    joining = KadeAgent(tmp_path / "joining", [c.server], extra=["--attr", "az=1a"])
    try:
        joining.start()
        tasks = wait_for(lambda: len(p := c.placed("/drain/exporter")) == 4 and p, 120,
                         "an exporter on the agent that joined")
        assert sorted(t["node"] for t in tasks) == sorted(
            [joining.node, *(a.node for a in c.agents)])
        [kept] = [t for t in tasks if t["node"] == joining.node]

        # drained, keeping system tasks: the node is drained and its exporter runs on
        c.server.client.post(f"/v1/nodes/{joining.node}/drain", {"keepSystem": True})
        shown = wait_for(lambda: (n := c.node(joining.node))["status"] == "drained" and n,
                         60, f"{joining.node} drained")
        assert shown["drain"]["tasks"]["kept"] == 1 and shown["drain"]["complete"]
        assert [t["id"] for t in c.placed("/drain/exporter")
                if t["node"] == joining.node] == [kept["id"]]
        assert len(joining.containers()) == 1

        # drained again without keeping them: the exporter, the last task there, stops
        c.server.client.post(f"/v1/nodes/{joining.node}/drain", {"keepSystem": False})
        assert_drained(c, joining)
        assert len(c.placed("/drain/exporter")) == 3
    finally:
        c.server.client.delete("/v1/apps/drain/exporter")
        wait_for(lambda: not joining.containers(), 60, "the joining agent's exporter gone")
        joining.cleanup()
        c.server.client.request("DELETE", f"/v1/nodes/{joining.node}/drain")


def test_constraints_hold_across_agents(clean: Cluster) -> None:
    c = clean
    zone_of = {a.node: c.zone(a) for a in c.agents}
    c.server.deploy(web(constraints=[["az", "GROUP_BY"]]))
    tasks = wait_for(lambda: len(p := c.placed(APP)) == 3 and p, 120, "3 healthy tasks")
    assert sorted(zone_of[t["node"]] for t in tasks) == list(ZONES)  # one per zone

    unique = {**web(instances=4), "id": "/drain/unique",
              "constraints": [["hostname", "UNIQUE"]], "routes": []}
    c.server.deploy(unique)
    tasks = wait_for(lambda: len(p := c.placed("/drain/unique")) == 3 and p, 120,
                     "3 healthy tasks of /drain/unique")
    assert sorted(t["node"] for t in tasks) == sorted(zone_of)  # one per agent
    # the fourth finds no node: it waits, and says why
    waiting = wait_for(lambda: (c.server.app("/drain/unique").get("queue") or {}).get(
        "waiting"), 30, "the fourth waiting")
    assert "no node fits" in waiting and "UNIQUE" in waiting, waiting
