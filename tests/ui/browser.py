"""Debian's Chromium as the browser tests, benchmarks and screenshot script launch it."""

from __future__ import annotations

from playwright.sync_api import Browser, Playwright, ViewportSize

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


def launch(pw: Playwright) -> Browser:
    """Headless Chromium from Debian's package (`playwright install` is not used)."""
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
