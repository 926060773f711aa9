"""Figures of the web interface: first paint of each page, and how long a change takes to
show on an open page.

Usage: python bench/ui.py [--apps 40] [--runs 7] [--rounds 10]

A real `kade up` (exec driver) with `--apps` apps of 1–3 sleeping tasks each, read by
Debian's Chromium driven by Playwright. First paint: each page loaded `--runs` times in a
fresh tab; the browser's own `first-contentful-paint` (ms from the start of the navigation),
and the server's share (request start to response end). Live update: the apps page open; an
app is scaled through the API; the time from just before the API call to the moment the
page's DOM shows the new count (a MutationObserver in the page stamps it with the same
wall clock).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import httpx
from _kade import Kade, running_kade, wait_for
from playwright.sync_api import Page, sync_playwright
from tests.ui.browser import VIEWPORT, launch

PAGES = ["/ui/", "/ui/apps", "/ui/apps/bench/app-00", "/ui/deploy", "/ui/logs",
         "/ui/domain-events", "/ui/events", "/ui/kv", "/ui/services", "/ui/nodes",
         "/ui/alerts", "/ui/search?q=app-1"]
WATCH = """label => {
  window.benchSeen = null;
  const seen = () => document.querySelector(`[aria-label="${label}"]`);
  const observer = new MutationObserver(() => {
    if (seen()) { observer.disconnect(); window.benchSeen = Date.now(); }
  });
  observer.observe(document.body, {subtree: true, childList: true, attributes: true});
}"""
PAINT = """() => new Promise(resolve => {
  const nav = performance.getEntriesByType('navigation')[0];
  const server = nav.responseEnd - nav.requestStart;
  new PerformanceObserver(list => {
    const fcp = list.getEntriesByName('first-contentful-paint')[0];
    if (fcp) resolve([fcp.startTime, server]);
  }).observe({type: 'paint', buffered: true});
  setTimeout(() => resolve([-1, server]), 5000);
})"""


def fill(kade: Kade, apps: int) -> None:
    rng = random.Random(7)
    for i in range(apps):
        kade.deploy({"id": f"/bench/app-{i:02d}", "cmd": "sleep 3600",
                     "instances": rng.randint(1, 3), "cpus": 0.01, "mem": 8, "portDefinitions": [],
                     "labels": {"team": rng.choice(["shop", "search", "pay"])}})
    wait_for(lambda: all(a["tasksRunning"] == a["instances"]
                         for a in kade.get("/v1/apps")["apps"]), 120, "every task running")


def first_paint(page: Page, url: str) -> tuple[float, float] | None:
    response = page.goto(url)
    if response is None or response.status != 200:
        return None
    page.wait_for_load_state("load")
    timing = page.evaluate(PAINT)
    return float(timing[0]), float(timing[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=40)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with running_kade("ui", driver="exec") as kade:
        run(kade, args)


def run(kade: Kade, args: argparse.Namespace) -> None:
    with sync_playwright() as pw:
        fill(kade, args.apps)
        browser = launch(pw)
        context = browser.new_context(viewport=VIEWPORT,
                                      extra_http_headers=kade.auth)
        base = f"http://{kade.addr}"
        print(f"{args.apps} apps, {len(kade.get('/v1/tasks')['tasks'])} tasks; "
              f"load {Path('/proc/loadavg').read_text().split()[0]}")
        print(f"{'page':28} {'first paint p50':>16} {'max':>7} {'server p50':>11}")
        for path in PAGES:
            paints, servers = [], []
            for _ in range(args.runs):
                page = context.new_page()
                got = first_paint(page, base + path)
                page.close()
                if got is None:
                    break
                paints.append(got[0])
                servers.append(got[1])
            if not paints:
                print(f"{path:28} {'(not there)':>16}")
                continue
            print(f"{path:28} {statistics.median(paints):13.0f} ms {max(paints):5.0f} ms "
                  f"{statistics.median(servers):8.0f} ms")
        page = context.new_page()
        page.goto(base + "/ui/apps")
        page.locator("#live-state.on").wait_for()
        lags = []
        with httpx.Client(base_url=base, headers=kade.auth, timeout=10) as client:
            for i in range(args.rounds):
                app_id = f"/bench/app-{i % args.apps:02d}"
                wanted = client.get(f"/v1/apps{app_id}").json()["app"]["instances"] + 1
                label = f"Scale {app_id} up to {wanted + 1}"
                page.evaluate(WATCH, label)
                started = time.time() * 1000
                client.post(f"/v1/apps{app_id}/scale", json={"instances": wanted}
                            ).raise_for_status()
                page.locator(f'[aria-label="{label}"]').wait_for(timeout=10_000)
                lags.append(float(page.evaluate("() => window.benchSeen")) - started)
                time.sleep(0.3)
        print(f"live update (scale → row shows it), {args.rounds} rounds: p50 "
              f"{statistics.median(lags):.0f} ms, max {max(lags):.0f} ms "
              f"(runs {' '.join(f'{v:.0f}' for v in lags)})")
        browser.close()


if __name__ == "__main__":
    main()
