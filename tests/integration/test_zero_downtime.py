"""Visitors do not notice: requests through the router never fail while tasks are replaced.

A client sends requests without pause through kade's router while an app of 4 instances is
rolled to a new version, scaled down and restarted. Every response must be a 200, and the
responses must switch to the new version.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx

from tests.integration.harness import Kade, wait_for

APP = "/zd/web"
HOST = "zd.localhost"


def web(image: str, instances: int = 4) -> dict[str, Any]:
    return {
        "id": APP, "instances": instances, "cpus": 0.01, "mem": 16,
        "container": {"docker": {"image": image}},
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1,
                          "timeoutSeconds": 2, "gracePeriodSeconds": 10,
                          "maxConsecutiveFailures": 3}],
        "routes": [{"rule": f"Host(`{HOST}`)"}],
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0.5},
        "taskKillGracePeriodSeconds": 5,
    }


class Load:
    """Requests without pause through the router, on keep-alive connections, counted."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.results: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self) -> None:
        deadline = time.monotonic() + 300  # bounded, whatever happens
        with httpx.Client(headers={"Host": HOST}, timeout=10) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    r = client.get(self.url)
                    outcome = ("v2" if "version 2" in r.text else "v1") if (
                        r.status_code == 200) else f"HTTP {r.status_code}: {r.text[:80]}"
                except httpx.HTTPError as e:
                    outcome = f"{type(e).__name__}: {e}"
                with self.lock:
                    self.results[outcome] += 1
                    if not outcome.startswith("v"):
                        self.failures.append(outcome)

    def count(self, outcome: str) -> int:
        with self.lock:
            return self.results[outcome]

    def total(self) -> int:
        with self.lock:
            return sum(self.results.values())


def test_rolling_update_scale_down_and_restart_fail_no_request(kade: Kade) -> None:
    url = f"http://127.0.0.1:{kade.http_port}/"
    kade.deploy(web("kade/site:1"))
    kade.wait_healthy(APP, 4)
    wait_for(lambda: httpx.get(url, headers={"Host": HOST}, timeout=2).status_code == 200,
             30, "the route to serve")

    with Load(url) as load:
        wait_for(lambda: load.count("v1") > 50, 30, "traffic to flow")

        kade.deploy(web("kade/site:2"))  # rolling update to version 2
        kade.wait_healthy(APP, 4)
        before = load.count("v2")
        wait_for(lambda: load.count("v2") > before + 50, 30, "responses from version 2")
        wait_for(lambda: not kade.containers_of_old_version(APP), 60, "old tasks gone")
        v1_after_update = load.count("v1")

        kade.client.post("/v1/apps/zd/web/scale", {"instances": 2})  # scale down
        kade.wait_healthy(APP, 2)
        wait_for(lambda: len(kade.containers()) == 2, 60, "scaled-down containers stopped")

        restart_before = {t["id"] for t in kade.wait_healthy(APP, 2)}
        kade.client.post("/v1/apps/zd/web/restart")
        wait_for(lambda: not restart_before & {t["id"] for t in kade.wait_healthy(APP, 2)},
                 60, "every task restarted")
        wait_for(lambda: len(kade.containers()) == 2, 60, "restarted tasks' old containers gone")
        served = load.total()
        wait_for(lambda: load.total() > served + 50, 30, "traffic after the restart")

    assert load.failures == [], Counter(load.failures).most_common(5)
    assert load.count("v1") == v1_after_update  # no version 1 answer once it was gone
    assert load.count("v2") > 100
