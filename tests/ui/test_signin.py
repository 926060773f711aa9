"""Signing in to the web interface in a real browser: the sign-in form, the session it
starts, signing out, a page asked without a session, and the one-time link of `kade ui`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.integration.harness import Kade
from tests.ui.conftest import sign_in

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


def test_a_wrong_token_is_shown_on_the_page(page: Page) -> None:
    page.goto("/ui/login")
    sign_in(page, "kade.abc123." + "x" * 43)
    expect(page.get_by_role("alert")).to_contain_text(
        "token: not valid (unknown, revoked or expired)")
    expect(page.get_by_label("API token")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(page.url.split("/ui/")[0] + "/ui/login")


def test_sign_in_shows_the_overview_and_sign_out_ends_it(signed_in: Page) -> None:
    page = signed_in
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.locator("#live-state")).to_have_class("live-state on")  # /v1/events by cookie
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login")
    expect(page.get_by_role("heading", name="Sign in to kade")).to_be_visible()
    page.goto("/ui/apps")  # the session is over: the page asks to sign in again
    page.wait_for_url("**/ui/login?next=%2Fui%2Fapps")


def test_a_page_without_a_session_comes_back_after_signing_in(page: Page, kade: Kade) -> None:
    page.goto("/ui/apps?q=shop")
    page.wait_for_url("**/ui/login?next=%2Fui%2Fapps%3Fq%3Dshop")
    sign_in(page, kade.token)
    page.wait_for_url("**/ui/apps?q=shop")
    expect(page.get_by_role("heading", name="Apps", level=1)).to_be_visible()


def test_the_one_time_link_signs_in_once(page: Page, new_page: Callable[[], Page],
                                          kade: Kade) -> None:
    made = subprocess.run([sys.executable, "-m", "kade", "ui"], capture_output=True, text=True,
                          timeout=60,
                          env={**kade.cli_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert made.returncode == 0, made.stderr
    assert "signs in once" in made.stderr
    link = made.stdout.strip()
    assert link.startswith(f"http://{kade.addr}/ui/login?code=")
    page.goto(link)
    page.wait_for_url("**/ui/")
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    # the same link in another browser: refused with a page that says why
    again = new_page()
    again.goto(link)
    expect(again.get_by_role("alert")).to_contain_text("used already")
    expect(again.get_by_label("API token")).to_be_visible()


PUT_KEY = """key => kade.api("PUT", "/v1/kv/" + key, "yes", {"Content-Type": "text/plain"})
    .then(() => "stored", error => error.message)"""


def test_a_session_changes_what_its_token_may(signed_in: Page, new_page: Callable[[], Page],
                                              kade: Kade) -> None:
    """The page's own calls of the API carry the cookie and this server's Origin."""
    assert signed_in.evaluate(PUT_KEY, "ui-signin/admin") == "stored"
    assert kade.get("/v1/kv/ui-signin/admin")[0]["Key"] == "ui-signin/admin"
    read = kade.client.post("/v1/tokens", {"role": "read", "description": "ui test"})["token"]
    reader = new_page()
    reader.goto("/ui/login")
    sign_in(reader, read)
    reader.wait_for_url("**/ui/")
    refused = reader.evaluate(PUT_KEY, "ui-signin/read")
    assert "needs a deploy token" in refused, refused
