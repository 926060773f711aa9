"""Runs a real `kade up` in a subprocess for end-to-end tests, and cleans up after it.

Each instance gets its own data dir, API port, node name and host-port range, so tests (and
anyone else using the same Docker Engine) do not step on each other. Every container it
started carries its node name as a label: teardown removes exactly those.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from kade.cli.router_proc import stop_router
from kade.client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Poll until `predicate` returns something truthy; the test fails past `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep trying until the deadline
            last_error = e
        time.sleep(0.2)
    detail = f": {last_error}" if last_error else ""
    raise AssertionError(f"timed out waiting for {what}{detail}")


# Task ports below Linux's ephemeral range (32768-60999), where free_port() and every client
# socket on the machine take theirs: a task given a port something else holds crash-loops.
_next_range = [20000 + (os.getpid() % 20) * 600]


class Kade:
    def __init__(self, data_dir: Path, *, driver: str = "docker", extra: list[str] | None = None
                 ) -> None:
        self.data_dir = data_dir
        self.node = f"test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.http_port = free_port()
        self.dns_port = free_port()
        self.router_admin_port = free_port()
        low = _next_range[0]
        _next_range[0] = low + 50 if low + 100 < 32000 else 20000
        self.port_range = f"{low}-{low + 49}"
        self.driver = driver
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "kade.log"
        self.token = ""  # the management token, read once kade has written it
        self.client = Client(self.addr, timeout=10, token="none")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kade", "up", "--data-dir", str(self.data_dir),
                "--api-addr", self.addr, "--node", self.node, "--driver", self.driver,
                "--ports", self.port_range, "--publish-ip", "127.0.0.1",
                "--http-addr", f"127.0.0.1:{self.http_port}",
                "--router-admin-addr", f"127.0.0.1:{self.router_admin_port}",
                "--dns-addr", f"127.0.0.1:{self.dns_port}", *self.extra]

    def start(self) -> Kade:
        cmd = self.command()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._answers, 30, f"kade API on {self.addr} (log: {self.log})")
        self.token = (self.data_dir / "management.token").read_text().strip()
        self.client.close()
        self.client = Client(self.addr, timeout=10, token=self.token)
        wait_for(lambda: self.get("/v1/nodes")["nodes"], 30, "the agent's node")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"kade up exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return httpx.get(f"http://{self.addr}/ping", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    @property
    def auth(self) -> dict[str, str]:
        """Headers a test's own HTTP client sends to the API."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def cli_env(self) -> dict[str, str]:
        """What a `kade` command run by a test needs to reach this kade."""
        return {"KADE_ADDR": self.addr, "KADE_TOKEN": self.token, "PATH": "/usr/bin:/bin"}

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.proc = None
        return code

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, **params)

    def app(self, app_id: str) -> dict[str, Any]:
        return dict(self.get("/v1/apps/" + app_id.strip("/"))["app"])

    def deploy(self, app: dict[str, Any]) -> dict[str, Any]:
        return dict(self.client.request("PUT", "/v1/apps/" + app["id"].strip("/"), json=app))

    def running_tasks(self, app_id: str) -> list[dict[str, Any]]:
        return [t for t in self.app(app_id)["tasks"]
                if t["state"] == "TASK_RUNNING" and t["desired"] == "run"]

    def wait_healthy(self, app_id: str, count: int, timeout: float = 90) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            app = self.app(app_id)
            tasks = [t for t in app["tasks"] if t["desired"] == "run"
                     and t["state"] == "TASK_RUNNING" and t["healthy"]
                     and t["version"] == app["version"]]
            if len(tasks) == count and len(
                    [t for t in app["tasks"] if t["desired"] == "run"]) == count:
                return tasks
            return None
        return list(wait_for(ready, timeout, f"{count} healthy tasks of {app_id}"))

    def containers(self, *, all_: bool = False) -> list[str]:
        cmd = ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=kade.node={self.node}"]
        if all_:
            cmd.insert(2, "-a")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return out.split()

    def containers_of_old_version(self, app_id: str) -> list[str]:
        """Running containers of `app_id` whose app version is not the current one."""
        version = self.app(app_id)["version"]
        out = subprocess.run(
            ["docker", "ps", "--filter", f"label=kade.node={self.node}", "--filter",
             f"label=kade.app-id={app_id}", "--format", '{{.ID}} {{.Label "kade.app-version"}}'],
            capture_output=True, text=True, check=True).stdout
        return [line.split()[0] for line in out.splitlines() if line.split()[1:] != [version]]

    def task_pids(self) -> list[int]:
        """Processes of command apps this kade started (they carry its node in their env)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    environ = (proc / "environ").read_bytes()
                except OSError:
                    continue
                if f"KADE_NODE={self.node}".encode() in environ.split(b"\0"):
                    pids.append(int(proc.name))
        return pids

    def cleanup(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        stop_router(self.data_dir / "router")
        # Twice: a create kade sent just before it was killed may still be finishing.
        for pause in (0.0, 1.0):
            time.sleep(pause)
            ids = self.containers(all_=True)
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        for pid in self.task_pids():  # command apps: each leads its own process group
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        self.client.close()
