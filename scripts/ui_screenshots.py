"""Screenshots of the web interface's main pages for docs/ui.md.

A real `kade up` with the example apps and configuration (as `make up` starts them, without
the broker's event feed), read by Debian's Chromium through Playwright, signed in with the
management token; each page saved as `docs/ui/<name>.png` at 1280×800, and the overview on a
phone's viewport.

    .venv/bin/python scripts/ui_screenshots.py [--out docs/ui]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import ViewportSize, sync_playwright  # noqa: E402
from tests.integration.harness import Kade, wait_for  # noqa: E402
from tests.ui.browser import VIEWPORT, launch  # noqa: E402

# the pages whose pictures are not made by their own tests' set-ups (app, edit, logs, events
# and domain events are: docs/ui.md)
PAGES = [("overview", "/ui/"), ("apps", "/ui/apps"), ("kv", "/ui/kv/"),
         ("services", "/ui/services"), ("nodes", "/ui/nodes"), ("alerts", "/ui/alerts"),
         ("search", "/ui/search?q=shop")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ui")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kade-shots-") as tmp:
        kade = Kade(Path(tmp) / "kade", extra=[
            "--seed-kv", str(ROOT / "examples" / "config.yaml"),
            "--deploy", str(ROOT / "examples" / "apps")])
        try:
            kade.start()
            wait_for(lambda: all(a["tasksHealthy"] >= a["instances"]
                                 for a in kade.get("/v1/apps")["apps"]), 180,
                     "the example apps healthy")
            time.sleep(25)  # a few metric samples for the charts
            shoot(kade, args.out)
        finally:
            kade.cleanup()


def shoot(kade: Kade, out: Path) -> None:
    base = f"http://{kade.addr}"
    with sync_playwright() as pw:
        browser = launch(pw)
        phone: ViewportSize = {"width": 390, "height": 844}
        for name, viewport, pages in (("", VIEWPORT, PAGES), ("-phone", phone, PAGES[:1])):
            context = browser.new_context(viewport=viewport, extra_http_headers=kade.auth,
                                          device_scale_factor=1)
            page = context.new_page()
            for shot, path in pages:
                response = page.goto(base + path)
                if response is None or response.status != 200:
                    print(f"{path}: {response.status if response else 'no answer'}; skipped")
                    continue
                page.wait_for_load_state("load")
                page.wait_for_timeout(1500)  # live regions and charts filled
                page.screenshot(path=str(out / f"{shot}{name}.png"))
                print(f"{out / f'{shot}{name}.png'}")
            context.close()
        browser.close()


if __name__ == "__main__":
    main()
