"""One node, every driver it has: Docker containers and command apps side by side."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kade.client import ClientError
from tests.integration.harness import Kade, wait_for

HEALTH = {"protocol": "HTTP", "path": "/", "intervalSeconds": 1, "timeoutSeconds": 2}
CMD_APP = {"id": "/mix/cmd", "cpus": 0.01, "mem": 16, "healthChecks": [HEALTH],
           "cmd": "mkdir -p www && echo plain > www/index.html && "
                  "exec busybox httpd -f -p 127.0.0.1:$PORT0 -h www"}
IMAGE_APP = {"id": "/mix/img", "cpus": 0.01, "mem": 16, "healthChecks": [HEALTH],
             "container": {"docker": {"image": "kade/site:1"}}}



@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade", driver="docker,exec")
    try:
        yield k.start()
    finally:
        k.cleanup()


def page(task: dict[str, object]) -> str:
    ports = task["ports"]
    assert isinstance(ports, list)
    return httpx.get(f"http://127.0.0.1:{ports[0]}/", timeout=5).text


def test_docker_and_command_apps_run_side_by_side_and_are_adopted(mixed: Kade) -> None:
    k = mixed
    [node] = k.get("/v1/nodes")["nodes"]
    assert node["drivers"] == ["docker", "exec"]
    k.deploy(CMD_APP)
    k.deploy(IMAGE_APP)
    [cmd] = k.wait_healthy("/mix/cmd", 1)
    [img] = k.wait_healthy("/mix/img", 1)
    assert page(cmd).strip() == "plain"
    assert "kade example site" in page(img)
    assert cmd["containerId"].startswith("pid:")  # a plain process
    assert k.containers() == [img["containerId"]]  # the one container

    # Both kinds outlive the control plane and are adopted, not restarted.
    k.kill9()
    k.start()
    assert k.wait_healthy("/mix/cmd", 1)[0]["containerId"] == cmd["containerId"]
    assert k.wait_healthy("/mix/img", 1)[0]["containerId"] == img["containerId"]

    k.client.delete("/v1/apps/mix/cmd")
    k.client.delete("/v1/apps/mix/img")
    wait_for(lambda: not k.task_pids() and not k.containers(), 60, "every task stopped")


def test_a_failed_task_is_logged_with_its_reason(mixed: Kade) -> None:
    k = mixed
    k.deploy({"id": "/mix/fails", "cpus": 0.01, "mem": 8, "backoffSeconds": 60,
              "cmd": "echo failing; exit 3"})
    line = re.compile(r"task (mix_fails\.[0-9a-f]+) of /mix/fails failed: (.*)$")

    def logged() -> re.Match[str] | None:
        for text in k.log.read_text(errors="replace").splitlines():  # one line, whole
            if found := line.search(text):
                return found
        return None

    found = wait_for(logged, 60, "the failure in kade up's log")
    [task] = [t for t in k.app("/mix/fails")["tasks"] if t["id"] == found.group(1)] or [None]
    failure = k.app("/mix/fails")["lastTaskFailure"]["message"]
    assert found.group(2) == failure == "exited with code 3"  # the API and the log agree
    assert task is None or task["state"] == "TASK_FAILED"


def test_a_command_app_is_refused_where_no_node_runs_one(kade: Kade) -> None:
    [node] = kade.get("/v1/nodes")["nodes"]
    assert node["drivers"] == ["docker"]
    with pytest.raises(ClientError) as refused:
        kade.deploy(CMD_APP)
    assert refused.value.status == 422
    assert f"cmd: no node runs command apps ({kade.node} runs docker)" in str(refused.value)
    with pytest.raises(ClientError) as missing:
        kade.app("/mix/cmd")
    assert missing.value.status == 404  # nothing was written
