"""Figures of the logs page: how long a line takes from the program that printed it to the
screen of an open logs page, and how long the page takes to show a long history.

Usage: python bench/ui_logs.py [--lines 100] [--interval-ms 100] [--history 2000]

A real `kade up` (exec driver) runs a command app that prints its own clock
(`date +%s.%N`) every `--interval-ms`; Debian's Chromium, driven by Playwright, shows
`/ui/logs?app=…`. A MutationObserver in the page stamps each row as it is added (the same
machine's wall clock): the lag is that stamp minus the time the line carries. It includes
the capture's batching (up to 100 ms), the store, the stream and the page's own rendering.
History: the page opened with `tail=--history` once that many lines are kept; the time from
the navigation's start to the last of those rows on screen.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import httpx
from _kade import Kade, running_kade, wait_for
from playwright.sync_api import sync_playwright
from tests.ui.browser import VIEWPORT, launch

APP = "/bench/printer"
WATCH = """() => {
  window.lags = [];
  new MutationObserver((changes) => {
    const now = Date.now() / 1000;
    for (const change of changes) for (const row of change.addedNodes) {
      const text = row.querySelector && row.querySelector("td.line");
      if (text && /^\\d+\\.\\d+$/.test(text.textContent)) {
        window.lags.push(now - Number(text.textContent));
      }
    }
  }).observe(document.getElementById("log-lines"), {childList: true});
}"""
ROWS = """n => new Promise(resolve => {
  const done = () => document.querySelectorAll("#log-lines tr").length >= n;
  if (done()) { resolve(performance.now()); return; }
  new MutationObserver((_, observer) => {
    if (done()) { observer.disconnect(); resolve(performance.now()); }
  }).observe(document.getElementById("log-lines"), {childList: true});
})"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--history", type=int, default=2000)
    args = parser.parse_args()
    with running_kade("ui-logs", driver="exec") as kade:
        run(kade, args)


def run(kade: Kade, args: argparse.Namespace) -> None:
    sleep = args.interval_ms / 1000
    kade.deploy({"id": APP, "cpus": 0.01, "mem": 16,
                 "cmd": f"while true; do date +%s.%N; sleep {sleep}; done"})
    wait_for(lambda: kade.running_tasks(APP), 60, "the printer running")
    with sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context(viewport=VIEWPORT,
                                      extra_http_headers=kade.auth,
                                      base_url=f"http://{kade.addr}")
        page = context.new_page()
        page.goto(f"/ui/logs?app={APP}&tail=0")
        page.locator("#log-state", has_text="live").wait_for()
        page.evaluate(WATCH)
        wait_for(lambda: page.evaluate("window.lags.length") >= args.lines,
                 args.lines * sleep * 4 + 30, f"{args.lines} lines on the page")
        lags = sorted(page.evaluate("window.lags")[:args.lines])
        ms = [lag * 1000 for lag in lags]
        print(f"load {Path('/proc/loadavg').read_text().split()[0]}; a line every "
              f"{args.interval_ms} ms")
        print(f"printed → on screen, {len(ms)} lines: p50 {statistics.median(ms):.0f} ms, "
              f"p95 {ms[int(len(ms) * 0.95) - 1]:.0f} ms, max {ms[-1]:.0f} ms")

        def kept() -> int:
            return len(httpx.get(f"http://{kade.addr}/v1/logs", headers=kade.auth, timeout=10,
                                 params={"app": APP, "tail": str(args.history)}).text.splitlines())

        wait_for(lambda: kept() >= args.history, args.history * sleep * 2 + 60,
                 f"{args.history} lines kept")
        took = []
        for _ in range(3):
            fresh = context.new_page()
            fresh.goto(f"/ui/logs?app={APP}&tail={args.history}")
            took.append(fresh.evaluate(ROWS, args.history))
            fresh.close()
        print(f"{args.history} lines of history on screen after p50 "
              f"{statistics.median(took):.0f} ms (runs {' '.join(f'{t:.0f}' for t in took)})"
              f" from the navigation's start")
        browser.close()


if __name__ == "__main__":
    main()
