"""The KV, search, alerts and nodes pages in a real browser, against a real `kade up` with
the exec driver: a key edited on the page re-renders a running app's template; an edit made
from a page read before another change is refused and the page shows the value that won;
the search finds an app and a key."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.integration.harness import Kade, wait_for
from tests.ui.conftest import sign_in

APP = "/uiops/colour"
KEY = "uiops/site/colour"
SITE = {"id": APP, "instances": 1, "cpus": 0.01, "mem": 16,
        "cmd": "exec busybox httpd -f -p 127.0.0.1:$PORT0 -h www",
        "templates": [{"destination": "/www/colour.txt", "changeMode": "noop",
                       "source": '{{ key "' + KEY + '" }}'}],
        "routes": [{"rule": "Host(`colour.test`)"}],
        "healthChecks": [{"protocol": "TCP", "intervalSeconds": 1}]}


@pytest.fixture(scope="module")
def kade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kade]:
    """Command apps (the exec driver): the site needs no image."""
    k = Kade(tmp_path_factory.mktemp("ui-ops") / "kade", driver="exec")
    try:
        k.start()
        put(k, KEY, "red")
        k.deploy(SITE)
        k.wait_healthy(APP, 1)
        yield k
    finally:
        k.cleanup()


def put(kade: Kade, key: str, value: str) -> None:
    assert kade.client.request("PUT", f"/v1/kv/{key}", content=value.encode()) is True


def served(task: dict[str, Any]) -> str:
    return httpx.get(f"http://127.0.0.1:{task['ports'][0]}/colour.txt", timeout=5).text


def test_a_key_edited_on_the_page_re_renders_the_apps_file(signed_in: Page, kade: Kade) -> None:
    [task] = kade.wait_healthy(APP, 1)
    assert served(task) == "red"
    page = signed_in
    page.goto("/ui/kv/")
    page.get_by_role("link", name="uiops/").click()
    page.get_by_role("link", name="site/").click()
    page.get_by_role("link", name="colour").click()
    expect(page.get_by_label("Value")).to_have_value("red")
    page.get_by_label("Value").fill("green")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text(f"{KEY} saved")
    wait_for(lambda: served(task) == "green", 30, "the file rendered again")
    # the editor now carries the new index: a second edit is no stale one
    page.get_by_label("Value").fill("blue")
    page.get_by_role("button", name="Save").click()
    wait_for(lambda: served(task) == "blue", 30, "the file rendered again")
    expect(page.locator("#kv-stale")).to_be_hidden()


def test_a_stale_edit_is_refused_and_the_current_value_shown(signed_in: Page,
                                                             kade: Kade) -> None:
    put(kade, "uiops/stale", "one")
    page = signed_in
    page.goto("/ui/kv/uiops/stale")
    expect(page.get_by_label("Value")).to_have_value("one")
    put(kade, "uiops/stale", "two")  # another change, after the page was read
    page.get_by_label("Value").fill("mine")
    page.get_by_role("button", name="Save").click()
    stale = page.locator("#kv-stale")
    expect(stale).to_be_visible()
    expect(stale).to_contain_text("was changed since you opened it")
    expect(page.locator("#kv-current")).to_have_text("two")
    expect(page.get_by_label("Value")).to_have_value("mine")  # the user's text is kept
    assert kade.client.request("GET", "/v1/kv/uiops/stale?raw") == "two"
    # saving again, knowingly, replaces the value that won
    page.get_by_role("button", name="Save").click()
    expect(stale).to_be_hidden()
    wait_for(lambda: kade.client.request("GET", "/v1/kv/uiops/stale?raw") == "mine", 10,
             "the second save")


def test_a_key_is_created_exported_and_deleted(signed_in: Page, kade: Kade) -> None:
    page = signed_in
    page.goto("/ui/kv/uiops/")
    page.get_by_label("New key").fill("uiops/made/two words")
    page.get_by_role("button", name="Create…").click()
    page.get_by_label("Value").fill("fresh")
    page.wait_for_url("**/ui/kv/uiops/made/two%20words")
    expect(page.locator("main")).to_contain_text("saving creates it")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#kv-index")).to_be_visible()  # the key's own page, read again
    expect(page.get_by_label("Value")).to_have_value("fresh")
    page.goto("/ui/kv/uiops/made/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export JSON").click()
    assert download.value.suggested_filename == "uiops-made.json"
    assert json.loads(download.value.path().read_text()) == {"two words": "fresh"}
    page.get_by_role("link", name="two words").click()
    page.get_by_role("button", name="Delete").click()
    page.locator("#confirm-ok").click()
    page.wait_for_url("**/ui/kv/uiops/made/")
    expect(page.locator("main")).to_contain_text("No key under uiops/made/")


def test_search_finds_an_app_and_a_key(signed_in: Page) -> None:
    page = signed_in
    page.keyboard.press("/")
    expect(page.locator("#search-q")).to_be_focused()
    page.keyboard.type("colour")
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/search?q=colour")
    expect(page.get_by_role("link", name=APP)).to_be_visible()
    expect(page.get_by_role("link", name=KEY)).to_be_visible()
    services = page.locator("section", has=page.get_by_role("heading", name="Services"))
    expect(services.locator('a[href^="/ui/services#service-"]')).to_contain_text("colour")
    page.get_by_role("link", name=KEY).click()
    page.wait_for_url(f"**/ui/kv/{KEY}")


def test_the_nodes_page_shows_the_node_its_task_and_its_eligibility(signed_in: Page,
                                                               kade: Kade) -> None:
    page = signed_in
    page.goto(f"/ui/nodes#node-{kade.node}")
    row = page.locator(f"#node-{kade.node}")
    expect(row).to_contain_text("ready")
    row.get_by_text("1 task").click()
    expect(row.get_by_role("link", name=APP)).to_be_visible()
    row.get_by_role("button", name="Make ineligible").click()
    expect(row.locator(".badge", has_text="ineligible")).to_be_visible()  # live: no reload
    row.get_by_role("button", name="Make eligible").click()
    expect(row.get_by_role("button", name="Make ineligible")).to_be_visible()

    # a zone drain names the zone; the API's refusal is shown, the dialog stays open
    page.get_by_role("button", name="Drain a zone…").click()
    dialog = page.get_by_role("dialog", name="Drain every node of a zone")
    dialog.get_by_label("Nodes with the attribute").fill("az=nowhere")
    dialog.get_by_role("button", name="Drain").click()
    expect(page.locator("#toasts")).to_contain_text("no node has the attribute az=nowhere")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(row).not_to_contain_text("draining")


def test_the_alerts_page_shows_a_firing_alert_with_its_labels(signed_in: Page,
                                                              kade: Kade) -> None:
    kade.client.request("PUT", "/v1/alert-rules", json={"rules": [
        {"name": "UiOpsAlways", "expr": "vector(7)", "labels": {"team": "ops"},
         "annotations": {"summary": "always on"}}]})
    page = signed_in
    page.goto("/ui/alerts")
    row = page.locator("#alerts-table tbody tr", has_text="UiOpsAlways")
    wait_for(lambda: row.count() and "firing" in row.inner_text(), 60, "the alert firing")
    expect(row).to_contain_text("team=ops")
    expect(row).to_contain_text("always on")
    expect(row).to_contain_text("7")
    rules = page.locator("#rules-table tbody")
    expect(rules.locator("tr", has_text="UiOpsAlways")).to_contain_text("vector(7)")
    expect(rules.locator("tr", has_text="KadeNodeDown")).to_contain_text("builtin")


def test_the_services_page_shows_the_catalog_and_the_routes(signed_in: Page,
                                                            kade: Kade) -> None:
    [task] = kade.wait_healthy(APP, 1)
    page = signed_in
    page.goto("/ui/services")
    service = page.locator("#services-table tbody tr", has_text=APP)
    expect(service).to_contain_text("passing")
    expect(service).to_contain_text(".service.consul")
    service.get_by_text("1 / 1").click()
    expect(service).to_contain_text(f"127.0.0.1:{task['ports'][0]}")
    route = page.locator("#routes-table tbody tr", has_text="colour.test")
    expect(route).to_contain_text(f"http://127.0.0.1:{task['ports'][0]}")


def test_a_read_token_sees_the_pages_without_their_controls(new_page: Callable[[], Page],
                                                             kade: Kade) -> None:
    read = kade.client.post("/v1/tokens", {"role": "read", "description": "ui ops"})["token"]
    page = new_page()
    page.goto("/ui/login")
    sign_in(page, read)
    page.wait_for_url("**/ui/")
    page.goto("/ui/nodes")
    expect(page.locator(f"#node-{kade.node}")).to_contain_text("ready")
    expect(page.get_by_role("button", name="Drain…")).to_have_count(0)
    expect(page.get_by_role("button", name="Drain a zone…")).to_have_count(0)
    page.goto(f"/ui/kv/{KEY}")
    expect(page.locator("#kv-value")).to_be_visible()
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
