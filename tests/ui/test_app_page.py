"""The app page in a real browser, against a real `kade up` (command apps, the exec driver):
scaled with − and + while the counts change on screen; a task that fails, its stderr read
from the page; two versions diffed and the first rolled back to from the versions view."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.integration.harness import Kade, wait_for

SLEEPER = {"id": "/uiapp/sleeper", "cpus": 0.01, "mem": 16, "instances": 1, "cmd": "sleep 1000"}
FAILING = {"id": "/uiapp/failing", "cpus": 0.01, "mem": 16, "instances": 1,
           "cmd": "echo 'config: port missing' >&2; exit 3"}
VERSIONED = {"id": "/uiapp/versioned", "cpus": 0.01, "mem": 16, "instances": 1,
             "cmd": "sleep 1000", "env": {"RELEASE": "one"}}


@pytest.fixture(scope="module")
def kade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kade]:
    """Command apps (the exec driver): they need no image."""
    k = Kade(tmp_path_factory.mktemp("ui-app") / "kade", driver="exec")
    try:
        yield k.start()
    finally:
        k.cleanup()


def counts(page: Page) -> str:
    """`healthy / running / wanted` as the page's header shows it, spaces squeezed."""
    return " ".join(page.locator("section[data-live=live_header] .counts").inner_text().split())


def test_scale_with_plus_and_minus_changes_the_counts_live(signed_in: Page, kade: Kade) -> None:
    kade.deploy(SLEEPER)
    wait_for(lambda: kade.running_tasks(SLEEPER["id"]), 60, "the sleeper running")
    page = signed_in
    page.goto("/ui/apps/uiapp/sleeper")
    expect(page.locator("#live-state")).to_contain_text("live")
    expect(page.locator("#wanted")).to_have_text("1")
    wait_for(lambda: counts(page) == "1 / 1 / 1", 30, "one task shown running")

    page.get_by_role("button", name="Scale up to 2").click()
    expect(page.locator("#wanted")).to_have_text("2")
    wait_for(lambda: counts(page) == "2 / 2 / 2", 60, "two tasks shown running")
    expect(page.locator("#tasks-table tbody tr.active")).to_have_count(2)

    page.get_by_role("button", name="Scale down to 1").click()
    expect(page.locator("#wanted")).to_have_text("1")
    wait_for(lambda: counts(page) == "1 / 1 / 1", 60, "one task shown running again")
    assert kade.app(SLEEPER["id"])["instances"] == 1

    # the number field scales too, and a refusal is shown with the API's own message
    page.get_by_label("Instances", exact=True).fill("3")
    page.get_by_role("button", name="Scale", exact=True).click()
    expect(page.locator("#wanted")).to_have_text("3")
    page.get_by_label("Instances", exact=True).fill("-1")
    page.get_by_label("Instances", exact=True).evaluate("el => el.removeAttribute('min')")
    page.get_by_role("button", name="Scale", exact=True).click()
    expect(page.locator(".toast.error")).to_contain_text("instances")
    assert kade.app(SLEEPER["id"])["instances"] == 3


def test_a_failed_tasks_stderr_is_one_click_away(signed_in: Page, kade: Kade) -> None:
    kade.deploy(FAILING)
    page = signed_in
    page.goto("/ui/apps/uiapp/failing")
    # the failure comes after the page is open: shown without a reload
    expect(page.locator("#last-failure")).to_contain_text("exited with code 3", timeout=60_000)
    panel = page.locator("#failed-task")
    expect(panel).to_contain_text("exited with code 3", timeout=30_000)
    panel.get_by_role("button", name="Show its stderr").click()
    expect(page.locator("#stderr-lines")).to_contain_text("config: port missing")
    task = panel.locator(".task-id").inner_text()
    expect(page.locator("#stderr-logs")).to_have_attribute("href", f"/ui/logs?task={task}")

    # the ended tasks, on demand
    ended = page.locator("#ended-table")
    expect(ended).to_be_hidden()
    page.get_by_label("Show ended tasks").check()
    expect(ended.locator(f'tr[data-task="{task}"]')).to_contain_text("3")


def test_diff_two_versions_and_roll_back_to_the_first(signed_in: Page, kade: Kade) -> None:
    app_id = VERSIONED["id"]
    kade.deploy(VERSIONED)
    wait_for(lambda: kade.running_tasks(app_id), 60, "version one running")
    first = kade.app(app_id)["version"]
    page = signed_in
    page.goto("/ui/apps/uiapp/versioned")
    expect(page.locator("#live-state")).to_contain_text("live")

    kade.deploy({**VERSIONED, "env": {"RELEASE": "two"}})  # deployed while the page is open
    rows = page.locator("#versions-table tbody tr")
    expect(rows).to_have_count(2)
    second = kade.app(app_id)["version"]
    expect(page.locator(f'#versions-table tr[data-version="{second}"]')).to_contain_text("current")

    page.get_by_label("From", exact=True).select_option(first)
    page.get_by_label("To", exact=True).select_option(second)
    page.get_by_role("button", name="Diff").click()
    expect(page.locator("#diff .del")).to_contain_text('"RELEASE": "one"')
    expect(page.locator("#diff .add")).to_contain_text('"RELEASE": "two"')

    page.locator(f'#versions-table tr[data-version="{first}"]').get_by_role(
        "button", name="Roll back").click()
    expect(page.locator("#confirm")).to_contain_text(f"Roll {app_id} back to version {first}?")
    page.locator("#confirm-ok").click()
    expect(rows).to_have_count(3)
    wait_for(lambda: kade.app(app_id)["env"] == {"RELEASE": "one"}, 30, "the app at version one")
    # its tasks are replaced by tasks of the spec of version one, and the page says so
    deployment = page.locator("#deployments-list li").first
    expect(deployment).to_contain_text("rollback")
    expect(deployment).to_contain_text("succeeded", timeout=60_000)
    current = kade.app(app_id)["version"]
    expect(page.locator(f'#versions-table tr[data-version="{current}"]')).to_contain_text(
        "current")
    page.get_by_label("From", exact=True).select_option(first)
    page.get_by_label("To", exact=True).select_option(current)
    page.get_by_role("button", name="Diff").click()
    expect(page.locator("#diff")).to_have_text(re.compile(r"\(no difference\)"))


def test_a_missing_app_is_named(signed_in: Page) -> None:
    response = signed_in.request.get("/ui/apps/uiapp/nothing-here")
    assert response.status == 404
    assert "app /uiapp/nothing-here does not exist" in response.text()


def test_kill_a_task_and_see_it_replaced(signed_in: Page, kade: Kade) -> None:
    app_id = "/uiapp/killed"
    kade.deploy({**SLEEPER, "id": app_id})
    [task] = wait_for(lambda: kade.running_tasks(app_id), 60, "the task running")
    page = signed_in
    page.goto("/ui/apps/uiapp/killed")
    expect(page.locator("#live-state")).to_contain_text("live")
    row = page.locator(f'#tasks-table tr.active[data-task="{task["id"]}"]')
    row.get_by_role("button", name=f"Kill {task['id']}").click()
    expect(page.locator("#confirm")).to_contain_text(f"Kill task {task['id']}?")
    page.locator("#confirm-ok").click()
    # another task takes its place, on screen without a reload
    expect(row).to_have_count(0, timeout=60_000)
    expect(page.locator("#tasks-table tr.active")).to_have_count(1, timeout=60_000)
    expect(page.locator("#tasks-table tr.active")).to_contain_text("running", timeout=60_000)
    assert kade.app(app_id)["instances"] == 1


def test_cancel_a_stuck_deployment_rolls_back(signed_in: Page, kade: Kade) -> None:
    app_id = "/uiapp/stuck"
    kade.deploy({**VERSIONED, "id": app_id})
    wait_for(lambda: kade.running_tasks(app_id), 60, "version one running")
    page = signed_in
    page.goto("/ui/apps/uiapp/stuck")
    expect(page.locator("#live-state")).to_contain_text("live")
    # version two never turns healthy (its check fails, within a long grace period)
    kade.deploy({**VERSIONED, "id": app_id, "env": {"RELEASE": "two"},
                 "healthChecks": [{"protocol": "COMMAND", "command": {"value": "false"},
                                   "intervalSeconds": 1, "gracePeriodSeconds": 600}]})
    current = page.locator("#deployments-list li").first
    expect(current).to_contain_text("running")
    expect(current).to_contain_text("1/1 updated, 0 healthy", timeout=60_000)
    expect(current.locator("ol.steps li.todo").first).to_contain_text("1 task(s) healthy")
    current.get_by_role("button", name="Cancel deployment").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#deployments-list li").first).to_contain_text("rollback")
    wait_for(lambda: kade.app(app_id)["env"] == {"RELEASE": "one"}, 30, "back at version one")
    expect(page.locator("#deployments-list li").first).to_contain_text("succeeded",
                                                                       timeout=60_000)


def test_metrics_ranges_are_drawn(signed_in: Page, kade: Kade) -> None:
    kade.deploy(SLEEPER)
    page = signed_in
    page.goto("/ui/apps/uiapp/sleeper")
    charts = page.locator("figure[data-chart]")
    expect(charts).to_have_count(5)
    # each chart is drawn or says it has nothing in the range; none shows an error
    for chart in charts.all():
        expect(chart.locator("svg, p.empty")).to_have_count(1)
    page.get_by_role("button", name="7d").click()
    expect(page.get_by_role("button", name="7d")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="1h")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("figure[data-chart] p.bad")).to_have_count(0)
    for chart in charts.all():
        expect(chart.locator("svg, p.empty")).to_have_count(1)


def test_destroy_asks_first_then_goes_to_the_apps_list(signed_in: Page, kade: Kade) -> None:
    app_id = "/uiapp/doomed"
    kade.deploy({**SLEEPER, "id": app_id})
    page = signed_in
    page.goto("/ui/apps/uiapp/doomed")
    page.get_by_role("button", name="Destroy").click()
    expect(page.locator("#confirm")).to_contain_text(f"Destroy {app_id}?")
    page.locator("#confirm").get_by_role("button", name="Cancel").click()
    assert kade.app(app_id)["id"] == app_id  # still there

    # a Confirm given to another question does not answer this one when Escape closes it
    [task] = wait_for(lambda: kade.running_tasks(app_id), 60, "the task running")
    page.get_by_role("button", name=f"Kill {task['id']}").click()
    page.locator("#confirm-ok").click()
    expect(page.locator(".toast")).to_contain_text(f"{task['id']} is being killed")
    page.get_by_role("button", name="Destroy").click()
    expect(page.locator("#confirm")).to_contain_text(f"Destroy {app_id}?")
    page.keyboard.press("Escape")
    expect(page.locator("#confirm")).to_be_hidden()
    page.wait_for_timeout(500)  # what a wrongly sent DELETE would need to land
    assert kade.app(app_id)["id"] == app_id  # still there
    page.get_by_role("button", name="Destroy").click()
    page.locator("#confirm-ok").click()
    page.wait_for_url("**/ui/apps")
    wait_for(lambda: app_id not in [a["id"] for a in kade.get("/v1/apps")["apps"]], 30,
             "the app gone")


def test_an_app_destroyed_elsewhere_is_said_on_its_open_page(signed_in: Page,
                                                             kade: Kade) -> None:
    app_id = "/uiapp/elsewhere"
    kade.deploy({**SLEEPER, "id": app_id})
    page = signed_in
    page.goto("/ui/apps/uiapp/elsewhere")
    expect(page.locator("#live-state")).to_contain_text("live")
    expect(page.locator("#app-gone")).to_be_hidden()
    kade.client.request("DELETE", "/v1/apps/uiapp/elsewhere")
    expect(page.locator("#app-gone")).to_contain_text(f"{app_id} has been destroyed")
