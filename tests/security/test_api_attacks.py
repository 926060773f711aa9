"""The attacks on the API, replayed against a real `kade up`: each is refused (or harmless)
and changes nothing. A web page in the operator's browser, a local user without the token,
a client that holds streams open, a port someone else holds."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from kade.client import ClientError
from tests.integration.harness import Kade, free_port, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

KADE = [sys.executable, "-m", "kade"]


def run_cli(kade: Kade, *args: str, token: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**kade.cli_env, **(env or {})}
    if token is not None:
        environ["KADE_TOKEN"] = token
    return subprocess.run([*KADE, *args], capture_output=True, text=True, timeout=60,
                          env=environ)


def apps(kade: Kade) -> list[str]:
    return [a["id"] for a in kade.get("/v1/apps")["apps"]]


def test_a_web_page_cannot_drive_the_api(kade: Kade, tmp_path: Path) -> None:
    """What a page elsewhere can send without a CORS preflight, with and without the
    operator's token (which it cannot read, but assume the worst), is refused."""
    marker = tmp_path / "pwned"
    evil = json.dumps({"id": "/evil", "cmd": f"id > {marker}"}).encode()
    url = f"http://{kade.addr}"
    attempts: list[tuple[str, dict[str, str]]] = [
        ("no token, text/plain", {"Content-Type": "text/plain"}),
        ("no token, foreign origin", {"Content-Type": "text/plain",
                                      "Origin": "https://evil.example"}),
        ("token, text/plain", {**kade.auth, "Content-Type": "text/plain"}),
        ("token, foreign origin", {**kade.auth, "Content-Type": "application/json",
                                   "Origin": "https://evil.example"}),
        ("token, rebound host", {**kade.auth, "Content-Type": "application/json",
                                 "Host": f"evil.example:{kade.port}"}),
    ]
    for what, headers in attempts:
        r = httpx.post(f"{url}/v1/apps", content=evil, headers=headers)
        assert r.status_code in (401, 403, 415), (what, r.status_code, r.text)
        assert "message" in r.json()
    txn = json.dumps([{"KV": {"Verb": "set", "Key": "pwned", "Value": "eA=="}}])
    r = httpx.put(f"{url}/v1/txn", content=txn, headers={"Content-Type": "text/plain"})
    assert r.status_code == 401
    r = httpx.post(f"{url}/v1/admin/shutdown?stopTasks=true",
                   headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = httpx.post(f"{url}/v1/admin/shutdown?stopTasks=true")
    assert r.status_code == 401
    # nothing changed, kade still runs
    assert "/evil" not in apps(kade)
    with pytest.raises(ClientError) as info:
        kade.client.get("/v1/kv/pwned")
    assert info.value.status == 404
    assert not marker.exists()
    assert kade.proc is not None and kade.proc.poll() is None


def test_the_token_file_and_the_local_cli(kade: Kade) -> None:
    token_file = kade.data_dir / "management.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(kade.data_dir.stat().st_mode) & 0o077 == 0
    # the CLI next to kade finds the token in the data dir by itself
    env = {"KADE_ADDR": kade.addr, "KADE_DATA_DIR": str(kade.data_dir), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([*KADE, "apps"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    # without it: a clear refusal
    out = subprocess.run([*KADE, "apps"], capture_output=True, text=True, timeout=60,
                         env={**env, "KADE_DATA_DIR": "/nonexistent"})
    assert out.returncode == 1 and "authentication required" in out.stderr
    assert "KADE_TOKEN" in out.stderr


def test_token_roles_from_the_cli(kade: Kade) -> None:
    made = run_cli(kade, "token", "create", "--role", "read", "--description", "dashboards")
    assert made.returncode == 0, made.stderr
    read = made.stdout.strip()
    assert read.startswith("kade.") and "not shown again" in made.stderr
    assert run_cli(kade, "apps", token=read).returncode == 0
    denied = run_cli(kade, "scale", "/nope", "1", token=read)
    assert denied.returncode == 1 and "needs a deploy token" in denied.stderr
    scoped = run_cli(kade, "token", "create", "--role", "deploy", "--apps", "/shop/*")
    shop = scoped.stdout.strip()
    spec = kade.data_dir.parent / "billing.json"
    spec.write_text(json.dumps({"id": "/billing/api", "instances": 0,
                                "container": {"docker": {"image": "kade/site:1"}}}))
    out = run_cli(kade, "deploy", "-f", str(spec), "--no-wait", token=shop)
    assert out.returncode == 1 and "may not change app /billing/api" in out.stderr
    listed = run_cli(kade, "token", "list", "--json")
    tokens = json.loads(listed.stdout)
    assert {t["role"] for t in tokens} >= {"admin", "node", "read", "deploy"}
    assert read.split(".")[2] not in listed.stdout
    read_id = read.split(".")[1]
    assert run_cli(kade, "token", "revoke", read_id).returncode == 0
    gone = run_cli(kade, "apps", token=read)
    assert gone.returncode == 1 and "not valid" in gone.stderr
    assert run_cli(kade, "token", "list", token=shop).returncode == 1
    # tokens never reach a log
    logs = kade.log.read_text() + (kade.data_dir / "router" / "router.log").read_text()
    for token in (read, shop, kade.token):
        assert token.split(".")[2] not in logs


def test_env_values_need_a_deploy_token(kade: Kade) -> None:
    read = run_cli(kade, "token", "create", "--role", "read").stdout.strip()
    seen: list[str] = []
    since = str(kade.get("/v1/info")["revision"])

    def follow() -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.stream(
                "GET", f"http://{kade.addr}/v1/events", timeout=30, params={"since": since},
                headers={"Authorization": f"Bearer {read}"}) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and "app" in line:
                    seen.append(line)
                    if "/secretive" in line:
                        return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    app = {"id": "/secretive", "instances": 0, "container": {"docker": {"image": "kade/site:1"}},
           "env": {"DB_PASSWORD": "hunter2-secret"}}
    kade.deploy(app)
    reader.join(30)
    assert any("/secretive" in line for line in seen)
    assert not any("hunter2-secret" in line for line in seen)
    shown = httpx.get(f"http://{kade.addr}/v1/apps/secretive",
                      headers={"Authorization": f"Bearer {read}"}).json()["app"]
    assert shown["env"]["DB_PASSWORD"] != "hunter2-secret"
    assert kade.app("/secretive")["env"]["DB_PASSWORD"] == "hunter2-secret"


def test_shutdown_does_not_wait_for_open_streams(tmp_path: Path) -> None:
    k = Kade(tmp_path / "kade")
    try:
        k.start()
        index = httpx.get(f"http://{k.addr}/v1/kv/", params={"recurse": ""}, headers=k.auth)
        held: dict[str, Any] = {}

        def hold(name: str, path: str, **params: str) -> None:
            try:
                with httpx.stream("GET", f"http://{k.addr}{path}", params=params,
                                  headers=k.auth, timeout=700) as response:
                    for _ in response.iter_bytes():
                        pass
                held[name] = "ended"
            except httpx.HTTPError as e:
                held[name] = f"ended: {type(e).__name__}"

        threads = [
            threading.Thread(target=hold, args=("events", "/v1/events"), daemon=True),
            threading.Thread(target=hold, args=("blocking", "/v1/kv/"), kwargs={
                "recurse": "", "index": index.headers.get("x-consul-index", "1"),
                "wait": "10m"}, daemon=True),
        ]
        for t in threads:
            t.start()
        wait_for(lambda: "events" not in held, 2, "the streams to open")
        assert k.proc is not None
        out = subprocess.run([*KADE, "down"], capture_output=True, text=True, timeout=60,
                             env=k.cli_env)
        assert out.returncode == 0, out.stderr
        # both are ended by kade, not by their ten-minute waits; this bound is a hang guard
        assert k.proc.wait(30) == 0
        k.proc = None
        for t in threads:
            t.join(30)
        assert set(held) == {"events", "blocking"}
    finally:
        k.cleanup()


def test_a_port_in_use_fails_kade_up_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flag, what in (("--api-addr", "for the API"), ("--http-addr", "the router exited"),
                           ("--dns-addr", "for DNS")):
            k = Kade(tmp_path / f"kade-{flag.strip('-')}")
            k.extra = [flag, f"127.0.0.1:{port}"]  # the later flag wins
            try:
                out = subprocess.run(k.command(), capture_output=True, text=True, timeout=120)
                assert out.returncode == 1, (flag, out.stderr)
                assert what in out.stderr and str(port) in out.stderr
                assert "in use" in out.stderr
            finally:
                k.cleanup()


def test_a_router_that_dies_is_started_again(kade: Kade) -> None:
    first = wait_for(lambda: (p := kade.get("/v1/processes")["router"])["state"] == "running"
                     and p, 30, "the router")
    assert first["restarts"] == 0
    os.kill(first["pid"], 9)
    again = wait_for(lambda: (p := kade.get("/v1/processes")["router"])["restarts"] == 1
                     and p["state"] == "running" and p, 60, "the router to be restarted")
    assert again["pid"] != first["pid"] and "signal 9" in again["lastExit"] or (
        "exited" in again["lastExit"])
    assert "router" in kade.log.read_text() and "starting it again" in kade.log.read_text()
    r = httpx.get(f"http://127.0.0.1:{kade.router_admin_port}/ping", timeout=5)
    assert r.status_code == 200


def test_a_public_api_address_needs_tls(tmp_path: Path) -> None:
    out = subprocess.run([*KADE, "up", "--data-dir", str(tmp_path / "d"), "--api-addr",
                          f"0.0.0.0:{free_port()}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--tls-cert" in out.stderr and "--insecure-i-know" in out.stderr
