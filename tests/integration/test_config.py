"""Configuration at run time: KV keys rendered through templates into real containers."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kade.client import ClientError
from tests.integration.harness import Kade, wait_for

TALK_TEMPLATE = '---\n{{ tree "config/mijndomein" | explode | toYAML }}\n'


def put(kade: Kade, key: str, value: str) -> None:
    assert kade.client.request("PUT", f"/v1/kv/{key}", content=value.encode()) is True


def site(app_id: str, templates: list[dict[str, Any]], instances: int = 1) -> dict[str, Any]:
    """busybox httpd serving /www, where the templates are rendered."""
    return {
        "id": app_id, "instances": instances, "cpus": 0.01, "mem": 16,
        "container": {"docker": {"image": "kade/site:1"}},
        "cmd": "exec httpd -f -p $PORT0 -h /www",
        "healthChecks": [{"protocol": "TCP", "intervalSeconds": 1}],
        "templates": templates,
    }


def fetch(task: dict[str, Any], path: str) -> str:
    return httpx.get(f"http://127.0.0.1:{task['ports'][0]}{path}", timeout=5).text


def test_the_talks_template_renders_into_the_container_and_follows_the_key(kade: Kade) -> None:
    put(kade, "config/mijndomein/example", "data")
    kade.deploy(site("/cfg/talk", [{"destination": "/www/parameters.yml",
                                    "source": TALK_TEMPLATE, "changeMode": "noop"}]))
    [task] = kade.wait_healthy("/cfg/talk", 1)
    assert fetch(task, "/parameters.yml") == "---\nexample: data\n"

    put(kade, "config/mijndomein/example", "changed")
    put(kade, "config/mijndomein/other", "more")
    wait_for(lambda: fetch(task, "/parameters.yml") == "---\nexample: changed\nother: more\n",
             30, "the file to follow the keys")
    [same] = kade.wait_healthy("/cfg/talk", 1)
    assert same["containerId"] == task["containerId"]  # noop: rewritten, not restarted


def test_restart_mode_rolls_the_app_and_only_the_app_that_read_the_key(kade: Kade) -> None:
    put(kade, "config/a/colour", "red")
    put(kade, "config/b/colour", "blue")
    for name in ("a", "b"):
        kade.deploy(site(f"/cfg/{name}", [{
            "destination": "/www/colour.txt",
            "source": f'{{{{ key "config/{name}/colour" }}}}', "changeMode": "restart"}],
            instances=2))
    a_before = {t["containerId"] for t in kade.wait_healthy("/cfg/a", 2)}
    b_before = {t["containerId"] for t in kade.wait_healthy("/cfg/b", 2)}

    put(kade, "config/a/colour", "green")
    a_after = wait_for(lambda: (ts := kade.wait_healthy("/cfg/a", 2)) and
                       not a_before & {t["containerId"] for t in ts} and ts, 60,
                       "app a restarted with the new colour")
    assert all(fetch(t, "/colour.txt") == "green" for t in a_after)
    wait_for(lambda: any(d["kind"] == "restart" and d["status"] == "succeeded"
                         for d in kade.get("/v1/deployments", app="/cfg/a")["deployments"]),
             30, "the restart deployment to succeed")
    assert {t["containerId"] for t in kade.wait_healthy("/cfg/b", 2)} == b_before


def test_a_missing_key_holds_the_task_until_it_exists(kade: Kade) -> None:
    kade.deploy(site("/cfg/wait", [{"destination": "/www/db.txt",
                                    "source": '{{ key "config/db/url" }}'}]))
    task = wait_for(lambda: (ts := kade.app("/cfg/wait")["tasks"]) and
                    "config/db/url" in (ts[0]["message"] or "") and ts[0], 30,
                    "the task to say which key it waits for")
    assert task["state"] == "TASK_STAGING"
    assert not kade.containers()
    put(kade, "config/db/url", "postgres://db")
    [ready] = kade.wait_healthy("/cfg/wait", 1)
    assert fetch(ready, "/db.txt") == "postgres://db"


def test_a_template_that_does_not_parse_rejects_the_deploy(kade: Kade) -> None:
    with pytest.raises(ClientError) as info:
        kade.deploy(site("/cfg/bad", [{"destination": "/www/x", "source": "ok\n{{ key "}]))
    assert info.value.status == 422
    assert "/www/x" in str(info.value) and "line 2" in str(info.value)
    with pytest.raises(ClientError):
        kade.get("/v1/apps/cfg/bad")


def test_a_later_breaking_change_keeps_the_last_good_file(kade: Kade) -> None:
    put(kade, "config/json/settings", '{"size": 3}')
    kade.deploy(site("/cfg/json", [{
        "destination": "/www/size.txt", "changeMode": "noop",
        "source": '{{ with key "config/json/settings" | parseJSON }}{{ .size }}{{ end }}'}]))
    [task] = kade.wait_healthy("/cfg/json", 1)
    assert fetch(task, "/size.txt") == "3"
    put(kade, "config/json/settings", "{not json")
    app = wait_for(lambda: (a := kade.app("/cfg/json")).get("configErrors") and a, 30,
                   "the error shown on the app")
    assert "size.txt" in app["configErrors"][0]
    assert fetch(task, "/size.txt") == "3"
    put(kade, "config/json/settings", '{"size": 4}')
    wait_for(lambda: fetch(task, "/size.txt") == "4", 30, "the fixed value")
    wait_for(lambda: "configErrors" not in kade.app("/cfg/json"), 30, "the error cleared")


def test_signal_mode_signals_the_container(kade: Kade) -> None:
    put(kade, "config/sig/level", "info")
    kade.deploy({
        "id": "/cfg/sig", "instances": 1, "cpus": 0.01, "mem": 16,
        "container": {"docker": {"image": "kade/busybox:latest"}},
        "cmd": "trap 'cat /etc/level >> /tmp/reloads' HUP; while true; do sleep 0.2; done",
        "templates": [{"destination": "/etc/level", "source": '{{ key "config/sig/level" }}',
                       "changeMode": "signal", "changeSignal": "SIGHUP"}],
    })
    [task] = wait_for(lambda: kade.running_tasks("/cfg/sig"), 30, "a running task")
    put(kade, "config/sig/level", "debug")

    def reloads() -> str:
        return subprocess.run(["docker", "exec", task["containerId"], "cat", "/tmp/reloads"],
                              capture_output=True, text=True).stdout

    wait_for(lambda: reloads() == "debug", 30, "the app to reload on SIGHUP")
    assert kade.running_tasks("/cfg/sig")[0]["containerId"] == task["containerId"]


def test_rendered_files_are_private_to_the_containers_user(kade: Kade) -> None:
    put(kade, "config/modes/password", "s3cret")
    app = site("/cfg/modes", [
        {"destination": "/www/password.txt", "source": '{{ key "config/modes/password" }}'},
        {"destination": "/www/motd.txt", "source": "hello", "mode": "0644"}])
    app["container"]["docker"]["parameters"] = [{"key": "user", "value": "1000:1000"}]
    kade.deploy(app)
    [task] = kade.wait_healthy("/cfg/modes", 1)
    assert fetch(task, "/password.txt") == "s3cret"  # httpd runs as 1000: the file is its
    out = subprocess.run(["docker", "exec", task["containerId"], "stat", "-L", "-c",
                          "%a %u:%g %n", "/www/password.txt", "/www/motd.txt"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["600 1000:1000 /www/password.txt",
                                "644 1000:1000 /www/motd.txt"]


def test_a_mode_that_opens_a_file_to_every_user_rejects_the_deploy(kade: Kade) -> None:
    for mode, why in (("0666", "lets every user write the file"), ("4755", "setuid")):
        with pytest.raises(ClientError) as info:
            kade.deploy(site("/cfg/open", [{"destination": "/www/x", "source": "x",
                                            "mode": mode}]))
        assert info.value.status == 422
        assert "templates.0.mode" in str(info.value) and why in str(info.value)
    with pytest.raises(ClientError):
        kade.get("/v1/apps/cfg/open")


def in_container(task: dict[str, Any], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", task["containerId"], *command],
                          capture_output=True, text=True)


def test_a_changed_file_is_replaced_whole_and_the_images_files_stay(kade: Kade) -> None:
    """The destination is a link into the task's read-only directory of rendered files:
    the rest of /etc is the image's, and a change swaps the file by rename."""
    put(kade, "config/swap/level", "info")
    kade.deploy({
        "id": "/cfg/swap", "instances": 1, "cpus": 0.01, "mem": 16,
        "container": {"docker": {"image": "kade/busybox:latest"}},
        "cmd": "while true; do sleep 0.2; done",
        "templates": [{"destination": "/etc/app/level.conf", "changeMode": "noop",
                       "source": 'level={{ key "config/swap/level" }}'}],
    })
    [task] = wait_for(lambda: kade.running_tasks("/cfg/swap"), 30, "a running task")
    assert in_container(task, "cat", "/etc/app/level.conf").stdout == "level=info"
    assert in_container(task, "readlink", "/etc/app/level.conf").stdout.strip() == \
        "/run/kade/templates/0-level.conf"
    assert "root:" in in_container(task, "cat", "/etc/passwd").stdout  # not hidden
    before = in_container(task, "stat", "-L", "-c", "%i", "/etc/app/level.conf").stdout
    put(kade, "config/swap/level", "debug")
    wait_for(lambda: in_container(task, "cat", "/etc/app/level.conf").stdout == "level=debug",
             30, "the new file")
    assert in_container(task, "stat", "-L", "-c", "%i", "/etc/app/level.conf").stdout != before
    refused = in_container(task, "sh", "-c", "echo x > /run/kade/templates/0-level.conf")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert kade.running_tasks("/cfg/swap")[0]["containerId"] == task["containerId"]


@pytest.fixture
def exec_kade(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade", driver="exec")
    try:
        yield k.start()
    finally:
        k.cleanup()
        for proc in Path("/proc").iterdir():  # the task processes it left
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"KADE_NODE={k.node}".encode() in environ:
                os.killpg(int(proc.name), signal.SIGKILL)


def test_a_command_app_follows_its_file_through_a_link_in_its_sandbox(
    exec_kade: Kade
) -> None:
    k = exec_kade
    put(k, "config/exec/colour", "red")
    k.deploy({"id": "/cfg/exec", "instances": 1, "cpus": 0.01, "mem": 16,
              "cmd": "exec busybox httpd -f -p 127.0.0.1:$PORT0 -h www",
              "templates": [{"destination": "/www/colour.txt", "changeMode": "noop",
                             "source": '{{ key "config/exec/colour" }}'}],
              "healthChecks": [{"protocol": "TCP", "intervalSeconds": 1}]})
    [task] = k.wait_healthy("/cfg/exec", 1)
    assert fetch(task, "/colour.txt") == "red"  # httpd runs as nobody
    put(k, "config/exec/colour", "green")
    wait_for(lambda: fetch(task, "/colour.txt") == "green", 30, "the new file")
    assert k.wait_healthy("/cfg/exec", 1)[0]["containerId"] == task["containerId"]
