"""The browser bench of the web interface: Debian's Chromium driven by Playwright, against a
real `kade up` (tests/integration/harness.py).

- `browser`: one headless Chromium for every test of tests/ui. Package-scoped rather than
  session-scoped: Playwright's sync API leaves its event loop marked as running between
  calls, and pytest-asyncio cannot run the async tests that come after tests/ui while it
  lives, so it is closed once the last browser test has run. Tests here are plain functions
  (no `async def`) for the same reason.
- `kade`: a real `kade up` per test module (the Docker driver, as the integration tests';
  each module gets its own data dir and ports); tests use app ids of their own.
- `page`: a page in a fresh browser context (its own cookies) at 1280×800; the test fails when
  the page logged a console error or threw. `new_page()` makes more such pages, each as if
  in another browser.
- `signed_in`: such a page, signed in through the sign-in form with the management token.

Chromium is heavy on a small machine: run the browser tests one module at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    sync_playwright,
)

from tests.integration.harness import Kade
from tests.ui.browser import CHROMIUM, VIEWPORT, launch

TIMEOUT_MS = 15_000  # what a locator or navigation may wait for before the test fails

@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    with sync_playwright() as pw:
        launched = launch(pw)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def kade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kade]:
    k = Kade(tmp_path_factory.mktemp("ui") / "kade")
    try:
        yield k.start()
    finally:
        k.cleanup()


# Chromium logs every 4xx/5xx answer as a console error. A 4xx of the JSON API is a refusal
# (admission, authorization) that the page shows its user, which tests assert; not a problem
# of the page. A 5xx, or a failed page, script or style sheet, is one.
_API_REFUSAL = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d\b")
_API_PATHS = ("/v1/", "/v2/")


class PageProblems:
    """What went wrong in a page while a test drove it: console errors (but the API's 4xx
    refusals), uncaught errors."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._error)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            if _API_REFUSAL.match(message.text) and urlsplit(where).path.startswith(_API_PATHS):
                return
            self.seen.append(f"console error: {message.text} ({where})")

    def _error(self, error: Error) -> None:
        self.seen.append(f"page error: {error.message}")


_WATCHED = pytest.StashKey[list[PageProblems]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test whose pages logged a console error or threw fails, as if it asserted so."""
    result = yield
    seen = [line for watched in item.stash.get(_WATCHED, []) for line in watched.seen]
    if seen:
        raise AssertionError("the page reported problems:\n" + "\n".join(seen))
    return result


@pytest.fixture
def new_page(browser: Browser, kade: Kade, request: pytest.FixtureRequest
             ) -> Iterator[Callable[[], Page]]:
    """Makes pages, each in a browser context of its own (its own cookies: another browser),
    watched for console errors and uncaught errors; closed after the test."""
    contexts: list[BrowserContext] = []
    watched = request.node.stash.setdefault(_WATCHED, [])

    def make() -> Page:
        context = browser.new_context(base_url=f"http://{kade.addr}", viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        opened = context.new_page()
        watched.append(PageProblems(opened))
        return opened

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    """A page in a fresh browser context (not signed in)."""
    return new_page()


def sign_in(page: Page, token: str) -> None:
    """Fill in and send the sign-in form of the page shown (`/ui/login`)."""
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in(page: Page, kade: Kade) -> Page:
    """A page signed in with the management token, showing the Overview."""
    page.goto("/ui/login")
    sign_in(page, kade.token)
    page.wait_for_url("**/ui/")
    return page
