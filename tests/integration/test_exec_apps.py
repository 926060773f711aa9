"""Command apps without a container, run by the exec driver as plain processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Kade, wait_for


@pytest.fixture
def exec_kade(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade", driver="exec")
    try:
        yield k.start()
    finally:
        k.cleanup()



def test_command_app_is_served_healed_and_adopted(exec_kade: Kade) -> None:
    k = exec_kade
    k.deploy({"id": "/test/plain", "instances": 2, "cpus": 0.01, "mem": 16,
              "cmd": "mkdir -p www && echo plain $KADE_TASK_ID > www/index.html && "
                     "exec busybox httpd -f -p 127.0.0.1:$PORT0 -h www",
              "healthChecks": [{"protocol": "HTTP", "intervalSeconds": 1, "timeoutSeconds": 2}]})
    tasks = k.wait_healthy("/test/plain", 2)
    for task in tasks:
        text = httpx.get(f"http://127.0.0.1:{task['ports'][0]}/", timeout=5).text
        assert text.strip() == f"plain {task['id']}"

    # A process that dies is replaced.
    victim = tasks[0]
    pid = int(victim["containerId"].removeprefix("pid:").split(":")[0])
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: victim["id"] not in {t["id"] for t in k.wait_healthy("/test/plain", 2)},
             60, "a replacement process")

    # The processes outlive the control plane and are adopted, not restarted.
    before = sorted(t["containerId"] for t in k.wait_healthy("/test/plain", 2))
    k.kill9()
    k.start()
    after = sorted(t["containerId"] for t in k.wait_healthy("/test/plain", 2))
    assert after == before

    k.client.delete("/v1/apps/test/plain")
    wait_for(lambda: not k.task_pids(), 30, "every process stopped")


@pytest.mark.skipif(os.geteuid() != 0, reason="the default user applies when kade is root")
def test_command_apps_run_as_nobody_and_root_needs_the_flag(exec_kade: Kade) -> None:
    import pwd

    from kade.client import ClientError

    k = exec_kade
    k.deploy({"id": "/test/who", "cpus": 0.01, "mem": 8,
              "cmd": "id -u > uid && exec sleep 300"})
    [task] = wait_for(lambda: k.running_tasks("/test/who"), 60, "the task running")
    uid = k.data_dir / "sandboxes" / task["id"] / "uid"
    wait_for(uid.exists, 30, "the task's uid")
    assert int(uid.read_text()) == pwd.getpwnam("nobody").pw_uid

    with pytest.raises(ClientError) as info:
        k.deploy({"id": "/test/root", "cmd": "id > /tmp/x", "user": "root"})
    assert info.value.status == 422
    assert "(start kade with --allow-root-commands)" in str(info.value)
    with pytest.raises(ClientError, match="does not exist"):
        k.app("/test/root")


def test_a_command_app_reads_its_template_as_nobody(exec_kade: Kade) -> None:
    """A command app runs as `nobody` and reaches its rendered file through the private data
    dir (0700 for everyone else)."""
    k = exec_kade
    k.client.put("/v1/kv/exec/greeting", None, content=b"hello from KV",
                 headers={"Content-Type": "application/octet-stream"})
    k.deploy({"id": "/test/tpl", "instances": 1, "cpus": 0.01, "mem": 16,
              "cmd": "mkdir -p www && cp etc/greeting.txt www/index.html && id -un >> "
                     "www/index.html && exec busybox httpd -f -p 127.0.0.1:$PORT0 -h www",
              "templates": [{"destination": "/etc/greeting.txt",
                             "source": '{{ key "exec/greeting" }}\n'}],
              "healthChecks": [{"protocol": "HTTP", "intervalSeconds": 1, "timeoutSeconds": 2}]})
    [task] = k.wait_healthy("/test/tpl", 1)
    text = httpx.get(f"http://127.0.0.1:{task['ports'][0]}/", timeout=5).text
    assert text.split() == ["hello", "from", "KV", "nobody"]
    assert oct(k.data_dir.stat().st_mode & 0o777) in ("0o700", "0o711")
