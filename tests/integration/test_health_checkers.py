"""Health checkers against real servers on 127.0.0.1, a real shell, and a real container."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kade.agent.health import HealthMonitor, SystemClock
from kade.agent.health_checkers import (
    CheckOutcome,
    command_check,
    http_check,
    run_check,
    tcp_check,
)
from kade.drivers.base import DriverError, ExecResult
from kade.model import Health, HealthResult
from kade.spec import HealthCheck

pytestmark = pytest.mark.timeout(60)

# What the test server answers, by path. `None` after the answer: keep the connection open.
ANSWERS: dict[str, tuple[bytes, bool]] = {
    "/ok": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    "/moved": (b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n", False),
    "/missing": (b"HTTP/1.0 404 Not Found\r\n\r\n", False),
    "/error": (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", False),
    "/continue": (b"HTTP/1.1 100 Continue\r\n\r\n"
                  b"HTTP/1.1 204 No Content\r\n\r\n", False),
    "/switch": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n", True),
    "/processing": (b"HTTP/1.1 102 Processing\r\n\r\n", True),
    "/slow": (b"", True),
    "/garbage": (b"SSH-2.0-OpenSSH_9.2\r\n", False),
}


class PathServer:
    """A tiny HTTP/1.1 server whose answers are chosen by path; `/health` is switchable."""

    def __init__(self) -> None:
        self.health = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await reader.readexactly(4) != b"GET ":  # like real servers: no waiting
                writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return
            head = b"GET " + await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            path = head.split(b" ", 2)[1].decode()
            answer, hold = (self.health, False) if path == "/health" else ANSWERS[path]
            writer.write(answer)
            await writer.drain()
            if hold:
                await reader.read()  # until the checker hangs up
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[
        tuple[PathServer, int]]:
    app = PathServer()
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield app, port
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate, like most apps' health endpoints have."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=kade-health-test"],
        check=True, capture_output=True,
    )
    return cert, key


def server_tls(files: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*files)
    return ctx


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def http(port: int, path: str, *, tls: bool = False, timeout: float = 5,
               ignore_1xx: bool = False) -> CheckOutcome:
    return await http_check("127.0.0.1", port, path, tls=tls, timeout=timeout,
                            ignore_1xx=ignore_1xx)


# -- HTTP --------------------------------------------------------------------------------------

async def test_http_2xx_and_3xx_pass() -> None:
    async with serving() as (app, port):
        assert await http(port, "/ok") == CheckOutcome("passed")
        assert await http(port, "/moved") == CheckOutcome("passed")  # not followed
    assert app.requests[0].startswith(b"GET /ok HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}".encode() in app.requests[0]


async def test_http_4xx_and_5xx_fail_with_the_status() -> None:
    async with serving() as (_, port):
        assert await http(port, "/error") == CheckOutcome(
            "failed", "HTTP 500 Internal Server Error")
        assert await http(port, "/missing") == CheckOutcome("failed", "HTTP 404 Not Found")


async def test_http_interim_100_is_skipped_for_the_final_answer() -> None:
    async with serving() as (_, port):
        assert await http(port, "/continue") == CheckOutcome("passed")


async def test_http_1xx_fails_unless_ignored() -> None:
    async with serving() as (_, port):
        assert await http(port, "/switch") == CheckOutcome(
            "failed", "HTTP 101 Switching Protocols")
        assert (await http(port, "/switch", ignore_1xx=True)).outcome == "ignored"
        # A 102 and then nothing: the 102 is the app's answer when the deadline comes.
        assert await http(port, "/processing", timeout=0.3) == CheckOutcome(
            "failed", "HTTP 102 Processing")
        assert (await http(port, "/processing", timeout=0.3, ignore_1xx=True)).outcome == (
            "ignored")


async def test_http_slow_answer_fails_at_the_timeout() -> None:
    async with serving() as (_, port):
        assert await http(port, "/slow", timeout=0.3) == CheckOutcome(
            "failed", "timed out after 0.3s")


async def test_http_closed_port_and_garbage() -> None:
    assert await http(closed_port(), "/ok") == CheckOutcome("failed", "connection refused")
    async with serving() as (_, port):
        outcome = await http(port, "/garbage")
    assert outcome.outcome == "failed" and outcome.cause.startswith("not an HTTP response")


async def test_https_accepts_a_self_signed_certificate(tls_files: tuple[Path, Path]) -> None:
    async with serving(server_tls(tls_files)) as (_, port):
        assert await http(port, "/ok", tls=True) == CheckOutcome("passed")
        assert await http(port, "/error", tls=True) == CheckOutcome(
            "failed", "HTTP 500 Internal Server Error")
        # Plain HTTP to a TLS port gets no HTTP answer.
        assert (await http(port, "/ok", timeout=2)).outcome == "failed"


async def test_https_to_a_plain_http_port_fails_with_a_tls_error() -> None:
    async with serving() as (_, port):
        outcome = await http(port, "/ok", tls=True)
    assert outcome.outcome == "failed" and outcome.cause.startswith("TLS error")


# -- TCP ---------------------------------------------------------------------------------------

async def test_tcp_passes_when_a_connection_is_accepted() -> None:
    async with serving() as (_, port):
        assert await tcp_check("127.0.0.1", port, timeout=2) == CheckOutcome("passed")


async def test_tcp_closed_port_fails() -> None:
    assert await tcp_check("127.0.0.1", closed_port(), timeout=2) == CheckOutcome(
        "failed", "connection refused")


async def test_tcp_times_out_when_the_listener_does_not_accept() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # one pending connection fills the queue; the next one hangs
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            outcome = await tcp_check("127.0.0.1", port, timeout=0.3)
    assert outcome == CheckOutcome("failed", "timed out after 0.3s")


# -- COMMAND -----------------------------------------------------------------------------------

async def shell(command: str, timeout: float) -> ExecResult:
    """Runs a command like a driver runs it in a container: /bin/sh -c, killed when abandoned."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    assert proc.returncode is not None
    return ExecResult(proc.returncode, out.decode())


async def test_command_exit_zero_passes() -> None:
    assert await command_check("echo PONG", exec=shell, timeout=5) == CheckOutcome("passed")


async def test_command_failure_cause_is_the_last_line_of_output() -> None:
    outcome = await command_check("echo connecting; echo 'Connection refused' >&2; exit 1",
                                  exec=shell, timeout=5)
    assert outcome == CheckOutcome("failed", "Connection refused")
    assert await command_check("exit 3", exec=shell, timeout=5) == CheckOutcome(
        "failed", "exited with code 3")


async def test_command_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "still-running"
    outcome = await command_check(f"sleep 1; touch {marker}", exec=shell, timeout=0.3)
    assert outcome == CheckOutcome("failed", "timed out after 0.3s")
    await asyncio.sleep(1.5)
    assert not marker.exists()  # the abandoned command was killed, not left running


async def test_command_exec_error_is_a_failure() -> None:
    async def gone(command: str, timeout: float) -> ExecResult:
        raise DriverError("container abc123 is not running")

    assert await command_check("true", exec=gone, timeout=5) == CheckOutcome(
        "failed", "container abc123 is not running")


async def test_run_check_picks_the_port_by_index() -> None:
    check = HealthCheck.model_validate({"protocol": "MESOS_HTTP", "path": "/ok",
                                        "portIndex": 1})
    async with serving() as (_, port):
        assert await run_check(check, host="127.0.0.1", ports=[closed_port(), port],
                               exec=shell) == CheckOutcome("passed")
        outcome = await run_check(check, host="127.0.0.1", ports=[port], exec=shell)
    assert outcome == CheckOutcome("failed", "the task has no host port at index 1")


# -- the monitor with the real clock -----------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.changes: list[Health] = []
        self.kills: list[str] = []
        self.event = asyncio.Event()

    async def on_change(self, health: Health, results: list[HealthResult]) -> None:
        self.changes.append(health)
        self.event.set()

    async def on_kill(self, reason: str) -> None:
        self.kills.append(reason)
        self.event.set()

    async def until(self, condition: Any, deadline: float = 20) -> None:
        async with asyncio.timeout(deadline):
            while not condition():
                self.event.clear()
                await self.event.wait()


@contextlib.asynccontextmanager
async def monitor(check: dict[str, Any], port: int, rec: Recorder) -> AsyncIterator[None]:
    clock = SystemClock()
    mon = HealthMonitor([HealthCheck.model_validate(check)], host="127.0.0.1", ports=[port],
                        exec=shell, started_at=clock.now(), clock=clock,
                        on_change=rec.on_change, on_kill=rec.on_kill)
    task = asyncio.create_task(mon.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_monitor_turns_healthy_once_the_app_answers() -> None:
    rec = Recorder()
    async with serving() as (app, port), monitor(
            {"path": "/health", "intervalSeconds": 60, "gracePeriodSeconds": 300}, port, rec):
        await asyncio.sleep(0.3)
        assert rec.changes == []  # 503s during the grace period: unknown, not unhealthy
        app.health = ANSWERS["/ok"][0]
        await rec.until(lambda: rec.changes == ["healthy"])  # fast probes, not in 60 s


async def test_monitor_asks_to_kill_a_task_whose_port_is_closed() -> None:
    rec = Recorder()
    check = {"protocol": "TCP", "gracePeriodSeconds": 0, "intervalSeconds": 0.1,
             "maxConsecutiveFailures": 2}
    async with monitor(check, closed_port(), rec):
        await rec.until(lambda: bool(rec.kills))
    assert rec.changes == ["unhealthy"]
    assert rec.kills == [
        "health check 0 (TCP portIndex 0) failed 2 times: connection refused"]


# -- a real container --------------------------------------------------------------------------

@pytest.fixture
def site_container() -> Iterator[tuple[str, int]]:
    """kade/site:1 (busybox httpd) on the host network at a free port."""
    name = f"kade-test-health-{uuid.uuid4().hex[:10]}"
    port = closed_port()
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--network", "host",
         "--label", "kade.test=health", "-e", f"PORT0={port}", "kade/site:1"],
        check=True, capture_output=True,
    )
    try:
        yield name, port
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.mark.docker
async def test_checks_against_a_container(site_container: tuple[str, int]) -> None:
    name, port = site_container

    async def docker_exec(command: str, timeout: float) -> ExecResult:
        return await shell(f"docker exec {name} /bin/sh -c '{command}'", timeout)

    rec = Recorder()
    async with monitor({"path": "/health", "intervalSeconds": 30}, port, rec):
        await rec.until(lambda: rec.changes == ["healthy"])
    assert await http(port, "/nope", timeout=2) == CheckOutcome("failed", "HTTP 404 Not Found")
    assert await tcp_check("127.0.0.1", port, timeout=2) == CheckOutcome("passed")
    assert await command_check("wget -q -O - http://127.0.0.1:$PORT0/health",
                               exec=docker_exec, timeout=10) == CheckOutcome("passed")
    outcome = await command_check("echo checking; echo no redis here; exit 1",
                                  exec=docker_exec, timeout=10)
    assert outcome == CheckOutcome("failed", "no redis here")
