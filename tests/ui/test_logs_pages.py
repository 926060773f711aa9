"""The logs, domain events and events pages in a real browser, against a real `kade up`:
an app printing numbered lines to stdout and stderr, read live, filtered, paused and
downloaded; a domain event posted and opened; an app change on the events page."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.integration.harness import Kade, wait_for

APP = "/uilogs/numbers"
PRINTER = {"id": APP, "cpus": 0.01, "mem": 16,
           "cmd": "i=0; while true; do i=$((i+1)); echo \"out $i\"; echo \"err $i\" >&2; "
                  "sleep 0.2; done"}


@pytest.fixture(scope="module")
def kade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kade]:
    """Command apps (the exec driver): the printer needs no image."""
    k = Kade(tmp_path_factory.mktemp("ui-logs") / "kade", driver="exec")
    try:
        k.start()
        k.deploy(PRINTER)
        wait_for(lambda: k.running_tasks(APP), 60, "the printer running")
        yield k
    finally:
        k.cleanup()


def numbers(page: Page, prefix: str) -> list[int]:
    """The numbers of the lines `<prefix> N` on screen, top to bottom."""
    texts = page.locator("#log-lines td.line").all_inner_texts()
    return [int(t.split()[1]) for t in texts if t.startswith(prefix + " ")]


def test_lines_appear_live_and_filters_narrow_them(signed_in: Page) -> None:
    page = signed_in
    page.goto(f"/ui/logs?app={APP}")
    expect(page.locator("#log-state")).to_have_text("live")
    expect(page.locator("#log-lines tr.stdout td.line").first).to_contain_text("out ")
    expect(page.locator("#log-lines tr.stderr td.line").first).to_contain_text("err ")
    first = max(numbers(page, "out"))
    # new lines come without a reload
    wait_for(lambda: max(numbers(page, "out")) > first + 3, 30, "new lines on the page")
    # a replaced-task-aware task list: the printer's task, running
    expect(page.locator("#log-tasks tbody tr").first).to_contain_text("running")

    # stderr only, and a regex: lines ending in 5, the match highlighted
    page.get_by_label("Stream").select_option("stderr")
    page.get_by_label("Regex").fill(r"err \d*5$")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#log-lines tr").first).to_be_visible()
    shown = page.locator("#log-lines td.line").all_inner_texts()
    assert shown and all(re.fullmatch(r"err \d*5", t) for t in shown), shown
    assert page.locator("#log-lines tr.stdout").count() == 0
    expect(page.locator("#log-lines td.line mark").first).to_have_text(re.compile(r"err \d*5"))


def test_pause_holds_lines_back_and_resume_shows_them(signed_in: Page) -> None:
    page = signed_in
    page.goto(f"/ui/logs?app={APP}&stream=stdout&tail=5")
    expect(page.locator("#log-state")).to_have_text("live")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#log-count")).to_contain_text("new held back")
    before = numbers(page, "out")
    # lines keep coming while paused: counted, not shown
    expect(page.locator("#log-count")).to_contain_text(re.compile(r"[1-9]\d* new held back"))
    assert numbers(page, "out") == before
    page.get_by_role("button", name="Resume").click()
    wait_for(lambda: max(numbers(page, "out")) > max(before), 10, "the held lines shown")
    after = numbers(page, "out")
    assert after == list(range(after[0], after[-1] + 1)), "no line lost across the pause"


def test_the_download_is_the_selection(signed_in: Page, tmp_path: Path) -> None:
    page = signed_in
    page.goto(f"/ui/logs?app={APP}&stream=stderr&grep=err")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download").click()
    download = info.value
    assert download.suggested_filename.startswith("logs-uilogs-numbers-")
    assert download.suggested_filename.endswith(".txt")
    saved = tmp_path / "logs.txt"
    download.save_as(saved)
    lines = saved.read_text().splitlines()
    assert len(lines) > 5
    assert all(re.fullmatch(r"uilogs_numbers\.\S+ err \d+", line) for line in lines), lines[:3]


def test_a_refused_filter_is_named(signed_in: Page) -> None:
    page = signed_in
    page.goto(f"/ui/logs?app={APP}&where=level")
    expect(page.get_by_role("alert")).to_contain_text("where: 'level' needs =, != or ~")
    expect(page.locator("#log-view")).to_have_count(0)


def test_nodes_that_did_not_answer_are_named(signed_in: Page) -> None:
    """A server's fan-out names a node that did not answer in the stream (`event:
    unanswered`); the page says whose lines are missing (the stream is played here, one
    kade has no other node)."""
    page = signed_in
    line = json.dumps({"time": 1764522000.5, "app": APP, "task": "uilogs_numbers.aa11",
                       "version": "v1", "node": "n1", "stream": "stdout", "line": "out 1"})
    stream = (f"event: line\ndata: {line}\n\n"
              'event: unanswered\ndata: {"node": "n2", "reason": "timed out"}\n\n')
    page.route(re.compile(r".*/v1/logs\?.*follow=1.*"), lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"}, body=stream))
    page.goto(f"/ui/logs?app={APP}")
    expect(page.locator("#log-unanswered")).to_have_text(
        "Node n2 did not answer: timed out (its lines are missing)")
    expect(page.locator("#log-lines td.line")).to_have_text(["out 1"])  # once, reconnected or not


def test_a_posted_domain_event_shows_live_and_opens(signed_in: Page, kade: Kade) -> None:
    page = signed_in
    page.goto("/ui/domain-events")
    expect(page.locator("#de-state")).to_have_text("live")
    kade.client.post("/v1/domain-events", [
        {"type": "order.created", "source": "/uilogs/shop", "messageId": "ui-order-7-created",
         "correlationId": "ui-order-7", "body": {"order": 7, "customer": 4711}},
        {"type": "order.paid", "source": "/uilogs/shop", "messageId": "ui-order-7-paid",
         "correlationId": "ui-order-7", "body": {"order": 7, "customer": 4711, "total": 12.5}}])
    paid = page.locator("#de-rows tr", has_text="order.paid")
    expect(paid).to_have_count(1)
    expect(page.locator("#de-histogram rect").first).to_be_visible()
    paid.get_by_role("button").click()
    details = page.locator("#de-detail-body")
    expect(details.locator("h3").first).to_contain_text("order.paid")
    expect(details).to_contain_text('"total": 12.5')
    # the events around it: the same correlation id, and its neighbours in time
    expect(details.locator("#de-correlated tr")).to_have_count(2)
    expect(details.locator("#de-around tr", has_text="order.created")).to_have_count(1)

    # a bar of the histogram (by keyboard) narrows the search to its interval
    page.locator("#de-histogram rect").last.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#de-rows tr")).to_have_count(2)
    expect(page.get_by_label("Until")).not_to_have_value("")
    expect(page.locator("#de-state")).to_have_text("until a time given: not live")

    # a field filter narrows the search
    page.get_by_label("Search", exact=True).fill("order.created customer:4711")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#de-rows tr")).to_have_count(1)
    expect(page.locator("#de-rows tr")).to_contain_text("order.created")


def test_the_events_page_shows_an_app_change_live(signed_in: Page, kade: Kade) -> None:
    page = signed_in
    page.goto("/ui/events")
    expect(page.locator("#live-state")).to_have_class(re.compile(r"\bon\b"))
    page.get_by_label("Key", exact=True).fill("uilogs/other")
    kade.deploy({"id": "/uilogs/other", "cmd": "sleep 600", "cpus": 0.01, "mem": 8})
    row = page.locator("#events-rows tr:visible", has_text="uilogs/other").first
    expect(row).to_contain_text("app")
    # paused: nothing new is shown until resumed
    page.get_by_role("button", name="Pause").click()
    kade.client.delete("/v1/apps/uilogs/other")
    expect(page.locator("#events-state")).to_contain_text(re.compile(r"[1-9]\d* new held back"))
    assert page.locator("#events-rows tr:visible", has_text="deleted").count() == 0
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#events-rows tr:visible", has_text="deleted").first).to_be_visible()


def test_a_replaced_task_keeps_its_lines_and_says_how_it_ended(signed_in: Page,
                                                               kade: Kade) -> None:
    page = signed_in
    [old] = kade.running_tasks(APP)
    page.goto(f"/ui/logs?app={APP}&stream=stdout&tail=10000")
    tasks = page.locator("#log-tasks tbody tr")
    expect(tasks).to_have_count(1)
    kade.client.post(f"/v1/apps{APP}/restart")
    # the list follows without a reload: the new task comes, the old one says how it ended
    expect(tasks).to_have_count(2, timeout=30_000)
    replaced = tasks.filter(has_text=old["id"])
    expect(replaced).to_contain_text("replaced by version", timeout=30_000)
    # the merged tail has both tasks' lines; the old one's stay reachable in one click
    wait_for(lambda: len(set(page.locator("#log-lines tr").evaluate_all(
        "rows => rows.map(r => r.dataset.task)"))) == 2, 30, "lines of both tasks")
    replaced.get_by_role("link", name="stderr").click()
    expect(page.locator("#log-lines tr.stderr").first).to_be_visible()
    tasks_shown = set(page.locator("#log-lines tr").evaluate_all(
        "rows => rows.map(r => r.dataset.task)"))
    assert tasks_shown == {old["id"]}
