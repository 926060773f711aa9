"""Deployments end to end: a rollout that does not turn healthy fails and rolls back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import httpx

from tests.integration.harness import Kade, wait_for


def web(image: str, health_path: str = "/health", deadline: float = 300) -> dict[str, Any]:
    return {
        "id": "/dep/web", "instances": 3, "cpus": 0.01, "mem": 16,
        "container": {"docker": {"image": image}},
        "healthChecks": [{"protocol": "HTTP", "path": health_path, "intervalSeconds": 1,
                          "timeoutSeconds": 2, "gracePeriodSeconds": 60}],
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0,
                            "progressDeadlineSeconds": deadline},
    }


def test_a_deployment_that_never_turns_healthy_rolls_back(kade: Kade) -> None:
    kade.deploy(web("kade/site:1"))
    good = kade.wait_healthy("/dep/web", 3)
    good_version = kade.app("/dep/web")["version"]

    lowest = [3]
    stop = threading.Event()

    def watch_capacity() -> None:
        while not stop.wait(0.1):
            try:
                healthy = kade.app("/dep/web")["tasksHealthy"]
            except Exception:  # noqa: BLE001 - keep watching
                continue
            lowest[0] = min(lowest[0], healthy)

    watcher = threading.Thread(target=watch_capacity, daemon=True)
    watcher.start()
    try:
        # Version 2 answers 404 on its health path: it never turns healthy.
        broken = kade.deploy(web("kade/site:2", health_path="/missing", deadline=8))
        failed = wait_for(
            lambda: next((d for d in kade.get("/v1/deployments", app="/dep/web")["deployments"]
                          if d["version"] == broken["version"] and d["status"] == "failed"),
                         None), 60, "the deployment to fail")
        assert "progress deadline" in failed["message"]
        rollback = wait_for(
            lambda: next((d for d in kade.get("/v1/deployments", app="/dep/web")["deployments"]
                          if d["kind"] == "rollback" and d["status"] == "succeeded"), None),
            60, "the rollback to succeed")
        tasks = kade.wait_healthy("/dep/web", 3)
    finally:
        stop.set()
        watcher.join(5)
    app = kade.app("/dep/web")
    assert app["container"]["docker"]["image"] == "kade/site:1"
    assert app["version"] == rollback["version"] != good_version
    assert all("version 1" in httpx.get(f"http://127.0.0.1:{t['ports'][0]}/").text
               for t in tasks)
    # minimumHealthCapacity 0.5 of 3: never fewer than 2 healthy tasks on the way.
    assert lowest[0] >= 2, lowest[0]
    assert len(kade.containers()) == 3
    assert {t["id"] for t in good} & {t["id"] for t in tasks}  # survivors were kept


def test_cli_deploy_exits_non_zero_when_the_deployment_fails(kade: Kade, tmp_path: Any) -> None:
    kade.deploy(web("kade/site:1"))
    kade.wait_healthy("/dep/web", 3)
    spec = tmp_path / "broken.json"
    spec.write_text(json.dumps(web("kade/site:2", health_path="/missing", deadline=6)))
    result = subprocess.run(
        [sys.executable, "-m", "kade", "deploy", "-f", str(spec), "--timeout", "120"],
        env=kade.cli_env,
        capture_output=True, text=True, timeout=180)
    assert result.returncode != 0
    assert "deployment failed" in result.stderr and "progress deadline" in result.stderr
    kade.wait_healthy("/dep/web", 3)
