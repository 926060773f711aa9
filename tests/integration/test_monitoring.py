"""Monitoring on a real `kade up`: a task burning CPU in `kade top` and in a range query,
an OOM kill counted, an app's own endpoint scraped, an app's rule firing after `for` and
resolving, reaching a webhook and a real Alertmanager, and the built-in crash-loop alert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kade.testing.alertmanager import AlertmanagerServer
from tests.integration.harness import Kade, wait_for
from tests.integration.webhooks import Hook

pytestmark = pytest.mark.docker
FAST = ["--metrics-interval", "1s", "--alert-interval", "1s"]


@pytest.fixture
def alertmanager(tmp_path: Path, hook: Hook) -> Iterator[AlertmanagerServer]:
    am = AlertmanagerServer(tmp_path / "am", hook.url)
    am.start()
    yield am
    am.stop()


@pytest.fixture
def kade(tmp_path: Path, hook: Hook, alertmanager: AlertmanagerServer) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade", extra=[*FAST, "--alert-webhook", hook.url,
                                       "--alertmanager", alertmanager.url])
    try:
        yield k.start()
    finally:
        k.cleanup()


def cli(kade: Kade, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**kade.cli_env, **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    return subprocess.run([sys.executable, "-m", "kade", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def query(kade: Kade, expr: str) -> list[dict[str, Any]]:
    got = kade.get("/api/v1/query", query=expr)
    return got["data"]["result"]  # type: ignore[no-any-return]


def test_a_busy_task_is_seen_in_top_in_a_range_query_and_its_rule_fires_and_resolves(
        kade: Kade, hook: Hook, alertmanager: AlertmanagerServer) -> None:
    kade.deploy({
        "id": "/burn", "instances": 1, "cpus": 0.5, "mem": 64,
        "container": {"docker": {"image": "kade/busybox:latest"}},
        "cmd": "while true; do :; done",
        "alerts": [{"name": "Burning", "for": "2s",
                    "expr": 'sum by (app) (rate(kade_task_cpu_seconds_total{app="/burn"}[5s])) '
                            "> 0.1",
                    "labels": {"team": "ops"},
                    "annotations": {"summary": "{{ $labels.app }} burns "
                                               "{{ printf \"%.0f\" $value }} CPU"}}]})
    wait_for(lambda: kade.running_tasks("/burn"), 60, "the burning task")

    def top() -> list[dict[str, Any]]:
        run = cli(kade, "top", "--once", "--json", "/burn")
        assert run.returncode == 0, run.stderr
        rows = json.loads(run.stdout)
        return [r for r in rows if r.get("cpu", 0) > 10]
    [row] = wait_for(top, 60, "the task's CPU in kade top")
    assert row["app"] == "/burn" and row["memory"] > 0

    now = time.time()
    ranged = kade.get("/api/v1/query_range", start=f"{now - 30:.3f}", end=f"{now:.3f}",
                      step="2", query='kade_task_cpu_seconds_total{app="/burn"}')
    [series] = ranged["data"]["result"]
    values = [float(v) for _, v in series["values"]]
    assert values == sorted(values) and values[-1] > values[0]

    def firing() -> list[dict[str, Any]]:
        return [a for a in kade.get("/v1/alerts", state="firing")["alerts"]
                if a["labels"]["alertname"] == "Burning"]
    [alert] = wait_for(firing, 60, "the app's alert firing")
    assert alert["labels"] == {"alertname": "Burning", "app": "/burn", "team": "ops"}
    assert alert["annotations"]["summary"].startswith("/burn burns ")
    wait_for(lambda: "firing" in hook.statuses("Burning"), 30, "the webhook's notice")
    wait_for(lambda: any(a["labels"]["alertname"] == "Burning" for a in alertmanager.alerts()),
             30, "the alert in Alertmanager")
    shown = cli(kade, "alerts", "--state", "firing")
    assert "Burning" in shown.stdout and "/burn burns" in shown.stdout

    kade.client.request("PUT", "/v1/apps/burn", json={"id": "/burn", "instances": 0,
                                                      "cpus": 0.5, "mem": 64,
                                                      "container": {"docker": {
                                                          "image": "kade/busybox:latest"}},
                                                      "cmd": "while true; do :; done",
                                                      "alerts": [{"name": "Burning",
                                                                  "expr": "vector(0) > 1"}]})
    wait_for(lambda: "resolved" in hook.statuses("Burning"), 60, "the resolution")


def test_an_oom_kill_and_an_app_s_own_metrics(kade: Kade) -> None:
    kade.deploy({
        "id": "/hungry", "instances": 1, "mem": 32,
        "container": {"docker": {"image": "kade/busybox:latest"}},
        # tail keeps the one endless line and asks to be the one killed: the shell lives on
        "cmd": "head -c 100000000 /dev/zero | "
               "sh -c 'echo 1000 > /proc/self/oom_score_adj; exec tail'; sleep 1000"})
    kade.deploy({
        "id": "/exporter", "instances": 1,
        "container": {"docker": {"image": "kade/busybox:latest"}},
        "portDefinitions": [{"port": 0}],
        "cmd": "mkdir -p /www && printf '# TYPE shop_orders_total counter\\n"
               "shop_orders_total{kind=\"web\"} 42\\n' > /www/metrics && "
               "httpd -f -p $PORT0 -h /www",
        "metrics": {"path": "/metrics"}})
    wait_for(lambda: query(kade, 'kade_task_oom_kills_total{app="/hungry"} > 0'), 90,
             "the OOM kill counted")
    [orders] = wait_for(lambda: query(kade, "shop_orders_total"), 90, "the app's own series")
    assert orders["metric"]["app"] == "/exporter" and orders["metric"]["kind"] == "web"
    assert orders["value"][1] == "42"


def test_the_built_in_crash_loop_alert(kade: Kade, hook: Hook) -> None:
    kade.deploy({"id": "/crashy", "instances": 1, "backoffSeconds": 0.1,
                 "container": {"docker": {"image": "kade/busybox:latest"}},
                 "cmd": "exit 3"})

    def crash_loop() -> list[dict[str, Any]]:
        return [a for a in kade.get("/v1/alerts", state="firing")["alerts"]
                if a["labels"]["alertname"] == "KadeTaskCrashLooping"]
    [alert] = wait_for(crash_loop, 120, "the built-in crash-loop alert")
    assert alert["labels"]["app"] == "/crashy"
    wait_for(lambda: "firing" in hook.statuses("KadeTaskCrashLooping"), 30, "its notice")
    rules = cli(kade, "alert-rules", "list")
    assert "builtin/KadeTaskCrashLooping" in rules.stdout
