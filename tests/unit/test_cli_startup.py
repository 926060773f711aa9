"""The quick read commands (`kade apps`, `kade tasks`, `kade kv get`): the same output as the
full command line, without importing what made them slow, and everything else left to it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kade.cli.quick import answer

APPS = [{"id": "/shop/web", "tasksRunning": 2, "tasksHealthy": 1, "instances": 2, "cpus": 0.5,
         "mem": 64.0, "version": "2026-11-30T15:00:00Z", "status": "running"},
        {"id": "/shop/broken", "tasksRunning": 0, "tasksHealthy": 0, "status": "quarantined",
         "quarantine": {"reason": "cannot be decoded"}}]
TASKS = [{"id": "shop_web.1", "state": "TASK_RUNNING", "health": "healthy", "host": "127.0.0.1",
          "ports": [31000, 31001], "containerId": "0123456789abcdef", "startedAt": "today",
          "message": None}]
KV = [{"Key": "cfg/greeting", "Flags": 0, "CreateIndex": 3, "ModifyIndex": 4,
       "Value": base64.b64encode("héllo".encode()).decode()}]


class Api(BaseHTTPRequestHandler):
    """Canned answers of the three endpoints; the token must be sent."""

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        if self.headers.get("Authorization") != "Bearer secret":
            return self.send(401, {"message": "no token"})
        path, _, query = self.path.partition("?")
        answers: dict[str, Any] = {
            "/v1/apps": {"apps": APPS},
            "/v1/tasks": {"tasks": TASKS if query == "app=%2Fshop%2Fweb" else []},
            "/v1/kv/cfg/greeting": KV,
        }
        if path not in answers:
            return self.send(404, {"message": "not found"})
        self.send(200, answers[path])

    def send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


HEAVY = ("typer", "pydantic", "rich", "httpx", "click")
RUN = """
import sys
from {module} import {name} as main
sys.argv = ["kade", *sys.argv[1:]]
try:
    main()
finally:
    heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
    sys.stderr.write("imported: " + ",".join(heavy) + "\\n")
"""


def kade(addr: str, *args: str, full: bool = False) -> tuple[int, str, str, list[str]]:
    """A `kade` process: exit code, stdout, stderr, and the heavy packages it imported.
    `full`: through the typer command line (`kade.cli.main.app`), never the quick path."""
    module, name = ("kade.cli.main", "app") if full else ("kade.cli", "main")
    env = {**os.environ, "KADE_ADDR": addr, "KADE_TOKEN": "secret"}
    done = subprocess.run([sys.executable, "-c", RUN.format(module=module, name=name,
                                                            heavy=HEAVY), *args],
                          capture_output=True, text=True, env=env, timeout=60)
    err, _, imported = done.stderr.rpartition("imported: ")
    return done.returncode, done.stdout, err, [m for m in imported.strip().split(",") if m]


@pytest.mark.parametrize("args", [["apps"], ["apps", "--json"], ["tasks", "/shop/web"],
                                  ["tasks", "--json", "/shop/web"], ["kv", "get", "cfg/greeting"],
                                  ["kv", "get", "cfg/greeting", "--json"],
                                  ["kv", "get", "cfg/missing"]])
def test_the_quick_path_prints_what_the_full_command_line_prints(
    api: str, args: list[str]
) -> None:
    quick = kade(api, *args)
    full = kade(api, *args, full=True)
    assert quick[:3] == full[:3]
    assert "typer" in full[3] and "typer" not in quick[3]


def test_a_quick_answer_imports_no_parser_models_or_http_library(api: str) -> None:
    code, out, err, imported = kade(api, "kv", "get", "cfg/greeting")
    assert (code, out, err, imported) == (0, "héllo", "", [])
    code, out, _, imported = kade(api, "tasks", "--api-addr", api, "--json", "/shop/web")
    assert code == 0 and json.loads(out) == TASKS and imported == []
    code, out, _, imported = kade(api, "apps")  # a table: rich, and only rich
    assert code == 0 and "quarantined: cannot be decoded" in out and imported == ["rich"]


def test_an_error_is_the_apis_message_and_exit_code_1(api: str) -> None:
    code, out, err, _ = kade(api, "kv", "get", "cfg/missing")
    assert (code, out, err.strip()) == (1, "", "error: key not found: cfg/missing")
    code, _, err, _ = kade("127.0.0.1:1", "apps")
    assert code == 1 and "cannot reach kade at http://127.0.0.1:1" in err


@pytest.mark.parametrize("argv", [
    [], ["deploy", "-f", "x.json"], ["apps", "--help"], ["apps", "-h"], ["apps", "extra"],
    ["apps", "--api-addr"], ["tasks", "a", "b"], ["tasks", "--all"], ["kv", "get"],
    ["kv", "get", "a", "b"], ["kv", "get", "-r", "prefix"], ["kv", "put", "k", "v"],
])
def test_anything_else_is_left_to_the_full_command_line(argv: list[str]) -> None:
    assert answer(argv) is None


def test_one_client_serves_threads_at_once(api: str) -> None:
    from kade.client import Client

    client = Client(api, token="secret")
    failures: list[str] = []

    def work() -> None:
        for _ in range(50):
            try:
                assert client.get("/v1/tasks", app="/shop/web")["tasks"] == TASKS
            except Exception as e:  # noqa: BLE001 (counted, not raised in a thread)
                failures.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert failures == []
