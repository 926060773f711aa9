"""Servers on a real 3-member etcd: every server answers, one leads and schedules; when it
dies another leads; without etcd's quorum reads still answer and writes are refused clearly,
and tasks keep running."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.etcd import EtcdCluster
from tests.integration.cluster import KadeAgent, KadeServer
from tests.integration.harness import wait_for

pytestmark = pytest.mark.timeout(300)

APP = {"id": "/test/sleepers", "instances": 2, "cpus": 0.01, "mem": 16, "portDefinitions": [],
       "cmd": "exec sleep 3600",
       "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                         "intervalSeconds": 1, "gracePeriodSeconds": 5}]}


@pytest.fixture
def cluster(tmp_path: Path, etcd_cluster: EtcdCluster
            ) -> Iterator[tuple[list[KadeServer], KadeAgent]]:
    prefix = f"kade-{uuid.uuid4().hex[:8]}/"
    servers = [KadeServer(tmp_path / f"s{i}", etcd=etcd_cluster.endpoints, prefix=prefix)
               for i in range(2)]
    agent: KadeAgent | None = None
    try:
        for server in servers:
            server.start()
        agent = KadeAgent(tmp_path / "agent", servers, driver="exec").start()
        yield servers, agent
    finally:
        etcd_cluster.heal()
        if agent is not None:
            agent.cleanup()
        for server in servers:
            server.cleanup()


def healthy(server: KadeServer, app_id: str) -> int:
    app = server.app(app_id)
    return len([t for t in app["tasks"] if t["desired"] == "run" and t["healthy"]
                and t["state"] == "TASK_RUNNING"])


def test_every_server_answers_and_another_leads_when_the_leader_dies(
        cluster: tuple[list[KadeServer], KadeAgent]) -> None:
    (first, second), agent = cluster
    assert first.leader() == second.leader() == first.name  # the first to stand leads
    assert [s["name"] for s in second.get("/v1/servers")["servers"]] == [first.name, second.name]

    second.deploy(APP)  # a server that does not lead takes writes too
    wait_for(lambda: healthy(first, APP["id"]) == 2, 90, "two healthy tasks")

    first.kill9()  # the leader dies: the second leads and schedules
    wait_for(lambda: second.leader() == second.name, 30, "the second server leading")
    second.client.post("/v1/apps/test/sleepers/scale", {"instances": 3})
    wait_for(lambda: healthy(second, APP["id"]) == 3, 90, "a third task, placed by the new leader")
    assert len(agent.task_pids()) == 3  # the agent went on with the second server

    def router_follows() -> dict[str, object]:
        table = httpx.get(f"http://127.0.0.1:{agent.router_admin_port}/table", timeout=5).json()
        return dict(table["control_plane"])
    # and so did its router
    wait_for(lambda: router_follows()["url"] == second.url and router_follows()["connected"],
             60, "the router following the second server")


def test_without_quorum_reads_answer_writes_are_refused_and_tasks_run(
        cluster: tuple[list[KadeServer], KadeAgent], etcd_cluster: EtcdCluster) -> None:
    (first, _), agent = cluster
    first.deploy(APP)
    wait_for(lambda: healthy(first, APP["id"]) == 2, 90, "two healthy tasks")
    pids = sorted(agent.task_pids())

    etcd_cluster.kill(1, 2)  # one member of three left: no quorum
    assert first.app(APP["id"])["instances"] == 2  # reads answer from what a member holds
    refused = httpx.post(f"http://{first.addr}/v1/apps/test/sleepers/scale",
                        json={"instances": 3}, headers=first.auth, timeout=30)
    assert refused.status_code == 503
    assert "quorum" in refused.json()["message"]
    assert sorted(agent.task_pids()) == pids  # nothing stopped, nothing started

    etcd_cluster.heal()  # quorum back: writes go through again
    wait_for(lambda: httpx.post(f"http://{first.addr}/v1/apps/test/sleepers/scale",
                               json={"instances": 3}, headers=first.auth,
                               timeout=30).status_code == 200, 60, "a write accepted")
    wait_for(lambda: healthy(first, APP["id"]) == 3, 90, "the third task")
    assert set(pids) <= set(agent.task_pids())
