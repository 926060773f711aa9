"""End to end: a real `kade up` driving the real Docker Engine."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from kade.client import ClientError
from tests.integration.harness import Kade, wait_for

HEALTH = {"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 1,
          "timeoutSeconds": 2, "gracePeriodSeconds": 10, "maxConsecutiveFailures": 3}


def site(app_id: str = "/test/web", instances: int = 2, image: str = "kade/site:1",
         **extra: Any) -> dict[str, Any]:
    return {"id": app_id, "instances": instances, "cpus": 0.01, "mem": 16,
            "container": {"docker": {"image": image}}, "healthChecks": [HEALTH], **extra}


def get_page(task: dict[str, Any], path: str = "/") -> str:
    response = httpx.get(f"http://127.0.0.1:{task['ports'][0]}{path}", timeout=5)
    response.raise_for_status()
    return response.text


def test_deploy_serves_on_every_task(kade: Kade) -> None:
    kade.deploy(site(instances=3))
    tasks = kade.wait_healthy("/test/web", 3)
    assert len({t["ports"][0] for t in tasks}) == 3
    for task in tasks:
        assert "version 1" in get_page(task)
    app = kade.app("/test/web")
    assert (app["tasksRunning"], app["tasksHealthy"], app["status"]) == (3, 3, "running")
    assert len(kade.containers()) == 3


def test_killed_container_is_replaced(kade: Kade) -> None:
    kade.deploy(site(instances=2))
    before = kade.wait_healthy("/test/web", 2)
    victim = before[0]["containerId"]
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    after = wait_for(
        lambda: (ts := kade.wait_healthy("/test/web", 2)) and
        victim not in {t["containerId"] for t in ts} and ts, 60, "a replacement")
    assert victim not in {t["containerId"] for t in after}
    assert before[1]["containerId"] in {t["containerId"] for t in after}
    assert len(kade.containers()) == 2


def test_removed_container_is_replaced(kade: Kade) -> None:
    kade.deploy(site(instances=1))
    [task] = kade.wait_healthy("/test/web", 1)
    subprocess.run(["docker", "rm", "-f", task["containerId"]], check=True, capture_output=True)
    wait_for(lambda: (ts := kade.wait_healthy("/test/web", 1)) and
             ts[0]["containerId"] != task["containerId"], 60, "a replacement")


def test_scale_up_down_and_destroy(kade: Kade) -> None:
    kade.deploy(site(instances=1))
    kade.wait_healthy("/test/web", 1)
    kade.client.post("/v1/apps/test/web/scale", {"instances": 4})
    kade.wait_healthy("/test/web", 4)
    kade.client.post("/v1/apps/test/web/scale", {"instances": 2})
    kade.wait_healthy("/test/web", 2)
    wait_for(lambda: len(kade.containers(all_=True)) == 2, 30, "scaled-down containers gone")
    kade.client.delete("/v1/apps/test/web")
    wait_for(lambda: not kade.containers(all_=True), 30, "every container removed")
    wait_for(lambda: not kade.get("/v1/tasks")["tasks"], 30, "no task left")


def test_failing_command_check_replaces_the_task(kade: Kade) -> None:
    # Healthy while /tmp/ok exists; the file is removed after a few seconds.
    app = {
        "id": "/test/flaky", "instances": 1, "cpus": 0.01, "mem": 16,
        "container": {"docker": {"image": "kade/busybox:latest"}},
        "cmd": "touch /tmp/ok; sleep 4; rm /tmp/ok; exec sleep 1000",
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test -f /tmp/ok"},
                          "intervalSeconds": 1, "timeoutSeconds": 2, "gracePeriodSeconds": 5,
                          "maxConsecutiveFailures": 2}],
    }
    kade.deploy(app)
    [first] = kade.wait_healthy("/test/flaky", 1)
    wait_for(lambda: any(t["id"] != first["id"] for t in kade.wait_healthy("/test/flaky", 1)),
             60, "the unhealthy task replaced by a healthy one")
    assert first["containerId"] not in kade.containers(all_=True)
    app_state = kade.app("/test/flaky")
    assert "health check" in (app_state.get("lastTaskFailure") or {}).get("message", "")


def test_control_plane_kill9_adopts_running_containers(kade: Kade) -> None:
    kade.deploy(site(instances=3))
    before = kade.wait_healthy("/test/web", 3)
    containers = sorted(kade.containers())
    kade.kill9()
    for task in before:  # the data plane keeps serving while the control plane is gone
        assert "version 1" in get_page(task)
    kade.start()
    after = kade.wait_healthy("/test/web", 3)
    assert sorted(t["containerId"] for t in after) == containers
    assert sorted(t["id"] for t in after) == sorted(t["id"] for t in before)
    assert sorted(kade.containers()) == containers  # none restarted, no duplicates


def test_changes_while_down_are_reconciled(kade: Kade) -> None:
    kade.deploy(site(instances=2))
    before = kade.wait_healthy("/test/web", 2)
    kade.stop()  # SIGTERM: tasks keep running
    assert len(kade.containers()) == 2
    subprocess.run(["docker", "rm", "-f", before[0]["containerId"]], check=True,
                   capture_output=True)
    # A container with kade's labels that kade's state does not know: an orphan.
    orphan = subprocess.run(
        ["docker", "run", "-d", "--label", "kade.task-id=ghost.123", "--label",
         f"kade.node={kade.node}", "--label", "kade.app-id=/ghost", "--label",
         "kade.spec-hash=x", "kade/busybox:latest", "sleep", "1000"],
        check=True, capture_output=True, text=True).stdout.strip()
    kade.start()
    after = kade.wait_healthy("/test/web", 2)
    assert before[1]["containerId"] in {t["containerId"] for t in after}
    wait_for(lambda: orphan not in kade.containers(all_=True), 30, "the orphan stopped")


def test_restart_replaces_every_task(kade: Kade) -> None:
    kade.deploy(site(instances=2))
    before = {t["id"] for t in kade.wait_healthy("/test/web", 2)}
    kade.client.post("/v1/apps/test/web/restart")
    wait_for(lambda: not before & {t["id"] for t in kade.wait_healthy("/test/web", 2)}, 60,
             "all tasks replaced")


def test_update_rolls_to_the_new_image(kade: Kade) -> None:
    kade.deploy(site(instances=2))
    kade.wait_healthy("/test/web", 2)
    kade.deploy(site(instances=2, image="kade/site:2"))
    tasks = kade.wait_healthy("/test/web", 2)
    assert all("version 2" in get_page(t) for t in tasks)
    versions = kade.get("/v1/apps/test/web/versions")["versions"]
    assert len(versions) == 2
    lines = kade.get("/v1/apps/test/web/diff").splitlines()
    assert any(line.startswith("-") and '"image": "kade/site:1"' in line for line in lines)
    assert any(line.startswith("+") and '"image": "kade/site:2"' in line for line in lines)


def test_bad_input_is_rejected_and_changes_nothing(kade: Kade) -> None:
    kade.deploy(site(instances=1))
    kade.wait_healthy("/test/web", 1)
    before = kade.get("/v1/apps/test/web/versions")["versions"]
    with pytest.raises(ClientError) as info:
        kade.deploy(site(instances=-2))
    assert info.value.status == 422 and "instances: must be >= 0" in str(info.value)
    with pytest.raises(ClientError) as info:
        kade.client.post("/v1/apps/test/web/scale", {"instances": "many"})
    assert info.value.status == 400 and "instances" in str(info.value)
    with pytest.raises(ClientError) as info:
        kade.client.request("POST", "/v1/apps", content=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert info.value.status == 422 and "invalid JSON" in str(info.value)
    with pytest.raises(ClientError) as info:
        kade.client.post("/v1/apps", site(instances=1))
    assert info.value.status == 409
    with pytest.raises(ClientError) as info:
        kade.get("/v1/apps/nope")
    assert info.value.status == 404 and "/nope does not exist" in str(info.value)
    assert kade.get("/v1/apps/test/web/versions")["versions"] == before
    assert kade.app("/test/web")["instances"] == 1


def test_bridge_networking_publishes_the_container_port(kade: Kade) -> None:
    app = {"id": "/test/bridge", "instances": 1, "cpus": 0.01, "mem": 16,
           "networks": [{"mode": "container/bridge"}],
           # $PORT0 is the host port (as in Marathon): inside, the app listens on 8080.
           "cmd": "exec httpd -f -p 8080 -h /var/www",
           "container": {"docker": {"image": "kade/site:1"},
                         "portMappings": [{"containerPort": 8080, "hostPort": 0}]},
           "healthChecks": [HEALTH]}
    kade.deploy(app)
    [task] = kade.wait_healthy("/test/bridge", 1)
    assert "version 1" in get_page(task)


def test_kill_task_with_scale(kade: Kade) -> None:
    kade.deploy(site(instances=2))
    tasks = kade.wait_healthy("/test/web", 2)
    kade.client.delete(f"/v1/tasks/{tasks[0]['id']}", scale="true")
    kade.wait_healthy("/test/web", 1)
    assert kade.app("/test/web")["instances"] == 1


def test_app_that_does_not_fit_waits_and_says_why(kade: Kade) -> None:
    kade.deploy({**site(instances=1), "cpus": 1000})
    status = wait_for(lambda: (s := kade.app("/test/web")["status"]).startswith("waiting") and s,
                      30, "a waiting status")
    assert "cpu" in status


def test_crash_loop_is_delayed(kade: Kade) -> None:
    kade.deploy({"id": "/test/crash", "instances": 1, "cpus": 0.01, "mem": 16,
                 "container": {"docker": {"image": "kade/busybox:latest"}},
                 "cmd": "echo failing; exit 3", "backoffSeconds": 30})
    app = wait_for(lambda: (a := kade.app("/test/crash")).get("lastTaskFailure") and a, 60,
                   "a recorded failure")
    assert "code 3" in app["lastTaskFailure"]["message"]
    wait_for(lambda: kade.app("/test/crash")["status"].startswith("delayed until"), 30,
             "the delayed status")


def test_event_stream_ids_increase(kade: Kade) -> None:
    ids: list[int] = []
    types: set[str] = set()
    with httpx.stream("GET", f"http://{kade.addr}/v1/events", params={"since": 0},
                      headers=kade.auth, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            elif line.startswith("event: "):
                types.add(line[7:])
            if "node_updated" in types and len(ids) >= 1:
                break
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    kade.deploy(site(instances=1))
    seen: set[str] = set()
    with httpx.stream("GET", f"http://{kade.addr}/v1/events",
                      headers={"Last-Event-ID": str(ids[-1]), **kade.auth},
                      timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                seen.add(line[7:])
            if {"app_updated", "task_updated", "task_status_updated"} <= seen:
                break
    assert {"app_updated", "task_updated", "task_status_updated"} <= seen


def test_logs_of_a_task(kade: Kade) -> None:
    kade.deploy({"id": "/test/talker", "instances": 1, "cpus": 0.01, "mem": 16,
                 "container": {"docker": {"image": "kade/busybox:latest"}},
                 "cmd": "echo hello from $KADE_TASK_ID; exec sleep 1000"})
    [task] = wait_for(lambda: kade.running_tasks("/test/talker"), 60, "a running task")
    text = wait_for(lambda: (t := kade.get(f"/v1/tasks/{task['id']}/logs")) and task["id"] in t
                    and t, 30, "the log line")
    assert f"hello from {task['id']}" in text
