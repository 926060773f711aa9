"""The logs page of a `kade server`: the lines of every node merged, and a node that does not
answer named on the page while the others' lines are shown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.integration.cluster import KadeAgent, KadeServer, server_and_agents
from tests.integration.harness import free_port, wait_for

APP = "/uicluster/spread"
SPREAD = {"id": APP, "instances": 2, "cpus": 0.01, "mem": 16, "portDefinitions": [],
          "constraints": [["hostname", "UNIQUE"]],
          "cmd": "i=0; while true; do i=$((i+1)); echo \"hello $i from $KADE_TASK_ID\"; "
                 "sleep 0.3; done"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[KadeServer, list[KadeAgent]]]:
    """A `kade server` (SQLite) with two agents running command apps, each with a node
    listener the server asks for their lines."""
    with server_and_agents(tmp_path_factory.mktemp("ui-cluster"), agent_extra=lambda name: [
            "--listen", f"127.0.0.1:{free_port()}"]) as cluster:
        cluster[0].deploy(SPREAD)
        yield cluster


@pytest.fixture(scope="module")
def kade(cluster: tuple[KadeServer, list[KadeAgent]]) -> KadeServer:
    """The pages are the server's."""
    return cluster[0]


def nodes_shown(page: Page) -> set[str]:
    titles = page.locator("#log-lines tr td:nth-child(2) a").evaluate_all(
        "links => links.map(a => a.title)")
    return {str(t).split(" on ", 1)[1].split(",")[0] for t in titles}


def test_every_node_merged_then_one_missing_is_named(
        signed_in: Page, cluster: tuple[KadeServer, list[KadeAgent]]) -> None:
    page = signed_in
    _, (a, b) = cluster
    page.goto(f"/ui/logs?app={APP}")
    expect(page.locator("#log-state")).to_have_text("live")
    wait_for(lambda: nodes_shown(page) == {a.node, b.node}, 90, "lines of both nodes")
    expect(page.locator("#log-unanswered")).to_be_hidden()

    b.kill9()
    page.goto(f"/ui/logs?app={APP}")
    expect(page.locator("#log-unanswered")).to_contain_text(
        f"Node {b.node} did not answer", timeout=30_000)
    wait_for(lambda: a.node in nodes_shown(page), 30, "the other node's lines")


def test_domain_events_are_said_to_be_kept_elsewhere(signed_in: Page) -> None:
    page = signed_in
    page.goto("/ui/domain-events")
    expect(page.get_by_role("alert")).to_have_text(
        "This kade does not keep domain events (they are kept by `kade up`).")
