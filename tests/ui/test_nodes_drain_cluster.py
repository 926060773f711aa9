"""The nodes page of a `kade server` with two agents: a node drained through the page's
dialog, its tasks seen moving to the other node and the drain completing, without a reload;
then the other node's zone drained, and the tasks seen moving back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.integration.cluster import KadeAgent, KadeServer, server_and_agents
from tests.integration.harness import wait_for

APP = "/uidrain/sleepers"
SLEEPERS = {"id": APP, "instances": 2, "cpus": 0.01, "mem": 16, "portDefinitions": [],
            "cmd": "while true; do sleep 1; done"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[KadeServer, list[KadeAgent]]]:
    """A `kade server` with two agents running command apps; the app's two tasks are placed
    on the first (the second is ineligible while they are)."""
    with server_and_agents(tmp_path_factory.mktemp("ui-drain"),
                           agent_extra=lambda name: ["--attr", f"az=1{name}"]) as (server, agents):
        a, b = agents
        server.client.request("PUT", f"/v1/nodes/{b.node}/eligibility", json={"eligible": False})
        server.deploy(SLEEPERS)
        wait_for(lambda: len(server.running_tasks(APP)) == 2, 60, "both tasks running")
        assert {t["node"] for t in server.running_tasks(APP)} == {a.node}
        server.client.request("PUT", f"/v1/nodes/{b.node}/eligibility", json={"eligible": True})
        yield server, agents


@pytest.fixture(scope="module")
def kade(cluster: tuple[KadeServer, list[KadeAgent]]) -> KadeServer:
    """The pages are the server's."""
    return cluster[0]


def test_a_node_drained_from_the_page_sees_its_tasks_move(
        signed_in: Page, cluster: tuple[KadeServer, list[KadeAgent]]) -> None:
    page = signed_in
    server, (a, b) = cluster
    page.goto("/ui/nodes")
    row_a, row_b = page.locator(f"#node-{a.node}"), page.locator(f"#node-{b.node}")
    expect(row_a).to_contain_text("2 tasks")
    expect(row_b).to_contain_text("none")

    row_a.get_by_role("button", name="Drain…").click()
    dialog = page.get_by_role("dialog", name=f"Drain {a.node}")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Nodes with the attribute")).to_be_hidden()  # one node
    dialog.get_by_label("Deadline").fill("2m")
    dialog.get_by_label("Tasks moved at once").fill("2")
    dialog.get_by_role("button", name="Drain").click()
    expect(dialog).to_be_hidden()

    # the page follows the drain as it goes: no reload
    expect(row_a.locator(".badge", has_text="ineligible")).to_be_visible()
    expect(row_a.locator(".drain-state")).to_have_text("complete", timeout=90_000)
    expect(row_a).to_contain_text("2 moved")
    expect(row_b).to_contain_text("2 tasks")
    row_b.get_by_text("2 tasks").click()
    expect(row_b.get_by_role("link", name=APP)).to_have_count(2)
    assert {t["node"] for t in server.running_tasks(APP)} == {b.node}

    # the drain is cancelled from the page; the node stays ineligible
    row_a.get_by_role("button", name="Cancel drain").click()
    page.locator("#confirm-ok").click()
    expect(row_a.get_by_role("button", name="Drain…")).to_be_visible()
    expect(row_a.locator(".badge", has_text="ineligible")).to_be_visible()

    # back to eligible; the other node's zone drained: the tasks come back
    row_a.get_by_role("button", name="Make eligible").click()
    expect(row_a.locator(".badge", has_text="ineligible")).to_be_hidden()
    expect(row_b).to_contain_text("az 1b")  # its zone
    page.get_by_role("button", name="Drain a zone…").click()
    zone = page.get_by_role("dialog", name="Drain every node of a zone")
    zone.get_by_label("Nodes with the attribute").fill("az=1b")
    zone.get_by_label("Tasks moved at once").fill("2")
    zone.get_by_role("button", name="Drain").click()
    expect(zone).to_be_hidden()
    expect(row_b.locator(".drain-state")).to_have_text("complete", timeout=90_000)
    expect(row_a).to_contain_text("2 tasks", timeout=60_000)
    assert {t["node"] for t in server.running_tasks(APP)} == {a.node}
