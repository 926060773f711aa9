"""The deploy / edit page in Chromium: an app written in the editor with an error shown at its
field first, fixed, planned (nothing written); deployed, the app's page reached and the app
healthy there without a reload. An app edited: the plan names the changed field and the
replaced task, and a change made elsewhere meanwhile is said at once."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from kade.client import ClientError
from tests.integration.harness import Kade

BROKEN = """id: /ed/web
instances: 1
cpus: 0.01
mem: 16
container:
  docker:
    image: kade/site:1
portDefinitions:
  - port: 0
healthChecks:
  - protocol: HTTP
    portIndex: 0
    path: 5
    intervalSeconds: 1
    gracePeriodSeconds: 10
"""
BAD_LINE = 13  # `    path: 5`


def test_an_error_is_shown_at_its_line_then_fixed_and_planned(signed_in: Page, kade: Kade) -> None:
    page = signed_in
    page.get_by_role("link", name="Deploy", exact=True).click()
    page.wait_for_url("**/ui/deploy")
    editor = page.get_by_label("App definition")
    editor.fill(BROKEN)
    page.get_by_role("button", name="Plan").click()

    # the admission's message, at its field and line
    problems = page.locator("#problem-list li")
    expect(problems).to_have_count(1)
    expect(problems.first).to_contain_text("healthChecks[0].path")
    expect(problems.first).to_contain_text("must be a string")
    expect(page.locator("#gutter .bad")).to_have_text(str(BAD_LINE))
    expect(page.locator("#plan")).to_be_hidden()
    page.get_by_role("button", name=re.compile(f"Go to line {BAD_LINE}")).click()
    selected = page.evaluate("""() => { const a = document.activeElement;
        return [a.id, a.value.slice(a.selectionStart, a.selectionEnd)]; }""")
    assert selected == ["definition", "    path: 5"]

    # fixed where the click left the cursor; planned: nothing is written yet
    page.keyboard.type("    path: /health")
    expect(page.locator("#problems")).to_have_class(re.compile(r"\bstale\b"))  # said before
    page.get_by_role("button", name="Plan").click()
    expect(page.locator("#problems")).to_be_hidden()
    expect(page.locator("#gutter .bad")).to_have_count(0)
    expect(page.locator("#plan-summary")).to_have_text("/ed/web is a new app.")
    expect(page.locator('#plan-instances td[data-count="start"]')).to_have_text("1")
    expect(page.locator("#plan-steps li").first).to_contain_text("start 1 task(s)")
    try:
        kade.get("/v1/apps/ed/web")
        raise AssertionError("a plan created the app")
    except ClientError as e:
        assert e.status == 404



def test_deploy_goes_to_the_apps_page_where_it_turns_healthy(signed_in: Page, kade: Kade
                                                              ) -> None:
    page = signed_in
    page.goto("/ui/deploy")
    page.get_by_label("App definition").fill(BROKEN.replace("id: /ed/web", "id: /ed/site")
                                             .replace("path: 5", "path: /health"))
    page.get_by_role("button", name="Deploy").click()
    page.wait_for_url("**/ui/apps/ed/site")
    page.evaluate("() => { window.sameDocument = true; }")
    # its task's health, as the app's page shows it (a badge that reads "healthy")
    healthy = page.locator("main .badge").filter(has_text=re.compile(r"^\s*healthy\s*$"))
    expect(healthy.first).to_be_visible(timeout=60_000)
    assert page.evaluate("() => window.sameDocument === true"), "the page was reloaded"
    assert kade.wait_healthy("/ed/site", 1)


def test_a_problem_far_down_a_long_definition_is_scrolled_to(signed_in: Page) -> None:
    labels = "".join(f"  label{i}: {'x' * (300 if i == 3 else 5)}\n" for i in range(150))
    text = "id: /ed/long\ncmd: serve\nlabels:\n" + labels + "instances: -1\n"
    page = signed_in
    page.goto("/ui/deploy")
    page.get_by_label("App definition").fill(text)
    page.get_by_role("button", name="Plan").click()
    page.get_by_role("button", name="Go to line 154: instances: must be >= 0").click()
    seen = page.evaluate("""() => {
        const area = document.getElementById("definition");
        const gutter = document.getElementById("gutter");
        const box = area.getBoundingClientRect(), row = gutter.querySelector(".bad");
        const top = row.getBoundingClientRect().top;
        return {same: area.scrollTop === gutter.scrollTop && area.scrollTop > 0,
                visible: top >= box.top && top < box.bottom, number: row.textContent,
                selected: area.value.slice(area.selectionStart, area.selectionEnd)};
    }""")
    assert seen == {"same": True, "visible": True, "number": "154",
                    "selected": "instances: -1"}


def test_edit_an_app_and_plan_the_change(signed_in: Page, kade: Kade) -> None:
    kade.deploy({"id": "/ed/api", "instances": 1, "cpus": 0.01, "mem": 16,
                 "container": {"docker": {"image": "kade/site:1"}}})
    kade.wait_healthy("/ed/api", 1)
    page = signed_in
    page.goto("/ui/apps")
    page.get_by_role("link", name="Edit /ed/api").click()
    page.wait_for_url("**/ui/deploy/ed/api")
    page.get_by_role("link", name="JSON").click()
    page.wait_for_url("**/ui/deploy/ed/api?format=json")
    editor = page.get_by_label("App definition")
    expect(editor).to_have_value(re.compile(r'^\{\n  "id": "/ed/api"'))
    editor.fill(editor.input_value().replace("kade/site:1", "kade/site:2"))
    editor.press("Control+Enter")

    expect(page.locator("#plan-summary")).to_have_text(
        "/ed/api: a new version; its tasks are replaced.")
    row = page.locator("#plan-fields tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("container.docker.image")
    expect(row.locator("td.from")).to_have_text('"kade/site:1"')
    expect(row.locator("td.to")).to_have_text('"kade/site:2"')
    expect(page.locator('#plan-instances td[data-count="replace"]')).to_have_text("1")
    expect(page.locator('#plan-instances td[data-count="start"]')).to_have_text("0")
    app = kade.app("/ed/api")
    assert app["container"]["docker"]["image"] == "kade/site:1"  # planned, not changed

    # changed elsewhere while being edited: the page says so by itself
    changed = page.locator("#changed-meanwhile")
    expect(changed).to_be_hidden()
    kade.client.post("/v1/apps/ed/api/scale", {"instances": 2})
    expect(changed).to_be_visible()
    expect(page.locator("#current-version code")).to_have_text(kade.app("/ed/api")["version"])
