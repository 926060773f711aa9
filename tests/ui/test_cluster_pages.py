"""The pages of a `kade server` with two agents in two zones, in a real browser: the
overview shows the nodes by zone, the app page the tasks on both nodes with their metrics
drawn from both nodes' stores, scaling down from the page is followed live, a failed task's
stderr is read from the node that ran it, and every other page answers without an error."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.integration.cluster import KadeAgent, KadeServer, server_and_agents
from tests.integration.harness import free_port, wait_for

FAST = ["--metrics-interval", "1s"]
APP = "/uicl/spread"
SPREAD = {"id": APP, "instances": 2, "cpus": 0.01, "mem": 16, "portDefinitions": [],
          "constraints": [["hostname", "UNIQUE"]],
          "cmd": "while true; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1; done"}
FAILING = {"id": "/uicl/failing", "instances": 1, "cpus": 0.01, "mem": 16,
           "portDefinitions": [], "cmd": "echo 'cluster: no database' >&2; exit 4"}
CPU = f'sum by (task) (kade_task_cpu_seconds_total{{app="{APP}"}})'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[KadeServer, list[KadeAgent]]]:
    """A `kade server` (SQLite) with agents in zones 1a and 1b, each with the node listener
    the server asks for logs and metrics, collecting every second."""
    with server_and_agents(tmp_path_factory.mktemp("ui-cluster-pages"), server_extra=FAST,
                           agent_extra=lambda name: [*FAST, "--attr", f"az=1{name}", "--listen",
                                                     f"127.0.0.1:{free_port()}"]) as cluster:
        server, _ = cluster
        server.deploy(SPREAD)
        wait_for(lambda: len(server.running_tasks(APP)) == 2, 60, "a task on each node")
        yield cluster


@pytest.fixture(scope="module")
def kade(cluster: tuple[KadeServer, list[KadeAgent]]) -> KadeServer:
    """The pages are the server's."""
    return cluster[0]


def query(server: KadeServer, promql: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.url}/api/v1/query", params={"query": promql},
                  headers=server.auth, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["result"])


def query_range(server: KadeServer, promql: str, seconds: int) -> list[dict[str, Any]]:
    end = time.time()
    r = httpx.get(f"{server.url}/api/v1/query_range", params={
        "query": promql, "start": end - seconds, "end": end, "step": 15},
        headers=server.auth, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["result"])


def test_the_overview_shows_each_zone_with_its_node(
        signed_in: Page, cluster: tuple[KadeServer, list[KadeAgent]]) -> None:
    page = signed_in
    _, (a, b) = cluster
    page.goto("/ui/")
    nodes = page.locator("section[data-live=live_nodes]")
    for agent, zone in ((a, "az 1a"), (b, "az 1b")):
        expect(nodes.get_by_role("heading", name=zone)).to_be_visible()
        expect(nodes.get_by_role("link", name=re.compile(agent.node))).to_contain_text("1 task")
    expect(page.locator("section[data-live=live_apps]")).to_contain_text(APP)


def test_the_app_page_shows_both_nodes_tasks_and_their_metrics(
        signed_in: Page, cluster: tuple[KadeServer, list[KadeAgent]]) -> None:
    page = signed_in
    server, (a, b) = cluster
    tasks = {t["id"]: t["node"] for t in server.running_tasks(APP)}
    assert set(tasks.values()) == {a.node, b.node}
    # what the CPU chart draws comes from both nodes' own stores
    wait_for(lambda: {r["metric"]["task"] for r in query(server, CPU)} == set(tasks), 60,
             "both tasks' CPU readable through the server")
    page.goto(f"/ui/apps{APP}")
    expect(page.locator("#live-state")).to_contain_text("live")
    for task, node in tasks.items():
        expect(page.locator(f'#tasks-table tr[data-task="{task}"]')).to_contain_text(node)
    # the chart's own range query, as the page asks it (the last hour), answers both tasks;
    # the range chosen again draws it (a chart also redraws every 30 s by itself)
    chart = page.locator('figure[data-chart="cpu"]')
    promql = str(chart.get_attribute("data-query")).replace("$w", "60s")
    wait_for(lambda: {r["metric"]["task"] for r in query_range(server, promql, 3600)}
             == set(tasks), 60, "both tasks in the chart's range query")
    page.get_by_role("button", name="1h", exact=True).click()
    cpu = chart.locator("polyline")
    expect(cpu).to_have_count(2, timeout=60_000)
    drawn = set(cpu.locator("title").all_text_contents())
    assert drawn == set(tasks), drawn
    expect(page.locator("figure[data-chart] p.bad")).to_have_count(0)

    # scaled down from the page: one node's task stops, the page follows without a reload
    page.get_by_role("button", name="Scale down to 1").click()
    expect(page.locator("#wanted")).to_have_text("1")
    expect(page.locator("#tasks-table tbody tr.active")).to_have_count(1, timeout=60_000)
    wait_for(lambda: len(server.running_tasks(APP)) == 1, 60, "one task left")


def test_a_failed_tasks_stderr_comes_from_the_node_that_ran_it(
        signed_in: Page, cluster: tuple[KadeServer, list[KadeAgent]]) -> None:
    server, _ = cluster
    server.deploy(FAILING)
    page = signed_in
    page.goto(f"/ui/apps{FAILING['id']}")
    panel = page.locator("#failed-task")
    expect(panel).to_contain_text("exited with code 4", timeout=60_000)
    panel.get_by_role("button", name="Show its stderr").click()
    expect(page.locator("#stderr-lines")).to_contain_text("cluster: no database")


@pytest.mark.parametrize("path, shows", [
    ("/ui/apps", APP), ("/ui/services", "Catalog"), ("/ui/nodes", "az=1b"),
    ("/ui/kv/", "KV"), ("/ui/alerts", "Rules"), ("/ui/events", "Events"),
    ("/ui/logs?app=" + APP, "Logs"), ("/ui/domain-events", "Domain events"),
    ("/ui/deploy" + APP, APP), ("/ui/search?q=1b", "1b")])
def test_every_page_of_the_server_answers(signed_in: Page, path: str, shows: str) -> None:
    page = signed_in
    response = page.goto(path)
    assert response is not None and response.status == 200, path
    expect(page.locator("main")).to_contain_text(shows)
