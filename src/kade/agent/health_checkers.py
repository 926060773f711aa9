"""The checks themselves: one HTTP(S) request, one TCP connect or one command, with a deadline.

A checker never raises and never outlives its timeout: every problem becomes a failed
`CheckOutcome` whose cause is shown to the user ("connection refused", "HTTP 500 Internal
Server Error", "timed out after 5s"). HTTP is spoken over raw asyncio streams: a check needs
only the status line, and a client library's per-request set-up (TLS contexts, pools) would
cost more than the check itself.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from kade.drivers.base import ExecResult
from kade.spec import HealthCheck

Outcome = Literal["passed", "failed", "ignored"]
ExecFn = Callable[[str, float], Awaitable[ExecResult]]

_MAX_CAUSE = 300  # a cause is shown in the UI and the store: keep it a line, not a page
_CLOSE_GRACE = 0.5  # how long closing a connection may take once the answer is in


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one run of a check. `ignored` leaves the check's state as it was."""

    outcome: Outcome
    cause: str = ""


PASSED = CheckOutcome("passed")


def failed(cause: str) -> CheckOutcome:
    cause = " ".join(cause.split())
    if len(cause) > _MAX_CAUSE:
        cause = cause[: _MAX_CAUSE - 3] + "..."
    return CheckOutcome("failed", cause or "failed")


def timed_out(timeout: float) -> CheckOutcome:
    return failed(f"timed out after {timeout:g}s")


def classify_status(code: int, reason: str = "", *, ignore_1xx: bool = False) -> CheckOutcome:
    """Marathon's rule: 2xx and 3xx pass; 1xx is discarded with ignoreHttp1xx, else it fails."""
    if 200 <= code < 400:
        return PASSED
    text = f"HTTP {code} {reason}".strip()
    if 100 <= code < 200 and ignore_1xx:
        return CheckOutcome("ignored", text)
    return failed(text)


def check_port(check: HealthCheck, ports: Sequence[int]) -> int | None:
    """The port a check talks to: its own `port`, else the task's host port at `portIndex`."""
    if check.port is not None:
        return check.port
    index = check.port_index or 0
    return ports[index] if index < len(ports) else None


async def run_check(
    check: HealthCheck, *, host: str, ports: Sequence[int], exec: ExecFn
) -> CheckOutcome:
    """Run `check` once against a task reachable at `host` with the given host ports."""
    timeout = check.timeout_seconds
    kind = check.kind
    if kind == "COMMAND":
        if check.command is None:
            return failed("no command to run")
        return await command_check(check.command.value, exec=exec, timeout=timeout)
    port = check_port(check, ports)
    if port is None:
        return failed(f"the task has no host port at index {check.port_index or 0}")
    if kind == "TCP":
        return await tcp_check(host, port, timeout=timeout)
    return await http_check(
        host, port, check.path, tls=kind == "HTTPS", timeout=timeout,
        ignore_1xx=check.ignore_http1xx,
    )


async def command_check(command: str, *, exec: ExecFn, timeout: float) -> CheckOutcome:
    """Exit code 0 passes; otherwise the output's last line says why."""
    try:
        async with asyncio.timeout(timeout):
            result = await exec(command, timeout)
    except TimeoutError:
        return timed_out(timeout)
    except Exception as e:  # a broken exec is a failed check, not a crashed monitor
        return failed(str(e) or type(e).__name__)
    if result.exit_code == 0:
        return PASSED
    lines = [line for line in result.output.splitlines() if line.strip()]
    return failed(lines[-1] if lines else f"exited with code {result.exit_code}")


async def tcp_check(host: str, port: int, *, timeout: float) -> CheckOutcome:
    """Passes when a TCP connection to host:port is accepted within the timeout."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return timed_out(timeout)
    except Exception as e:
        return failed(_describe_error(e))
    await _close(writer)
    return PASSED


async def http_check(
    host: str, port: int, path: str, *, tls: bool, timeout: float, ignore_1xx: bool = False
) -> CheckOutcome:
    """GET http(s)://host:port/path; the final status decides. Certificates are not verified.

    Interim 1xx answers are skipped while a final answer follows; a 1xx that is all the app
    says before the deadline (or a 101, after which HTTP is over) is the answer.
    """
    answer = _Answer()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port,
                ssl=_tls_context() if tls else None,
                server_hostname=host if tls else None,
                ssl_shutdown_timeout=_CLOSE_GRACE if tls else None,
            )
            writer.write(_request(host, port, path))
            await writer.drain()
            await _read_status(reader, answer)
    except TimeoutError:
        await _close(writer, abort=True)
        if answer.code is None:
            return timed_out(timeout)
        return classify_status(answer.code, answer.reason, ignore_1xx=ignore_1xx)
    except Exception as e:
        await _close(writer, abort=True)
        if answer.code is not None:
            return classify_status(answer.code, answer.reason, ignore_1xx=ignore_1xx)
        return failed(_describe_error(e))
    await _close(writer)
    assert answer.code is not None
    return classify_status(answer.code, answer.reason, ignore_1xx=ignore_1xx)


@dataclass
class _Answer:
    code: int | None = None
    reason: str = ""


def _request(host: str, port: int, path: str) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: kade-health-check\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


async def _read_status(reader: asyncio.StreamReader, answer: _Answer) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise _ProtocolError("connection closed without an HTTP response")
        parts = line.decode("latin-1").strip().split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not _is_code(parts[1]):
            raise _ProtocolError(f"not an HTTP response: {line[:60]!r}")
        answer.code = int(parts[1])
        answer.reason = parts[2] if len(parts) > 2 else ""
        if not 100 <= answer.code < 200 or answer.code == 101:
            return
        while (await reader.readline()).strip():  # the interim answer's headers
            pass


def _is_code(text: str) -> bool:
    return len(text) == 3 and text.isdigit()


class _ProtocolError(Exception):
    pass


async def _close(writer: asyncio.StreamWriter | None, *, abort: bool = False) -> None:
    """Close without letting a slow peer (a TLS shutdown, say) stretch the check."""
    if writer is None:
        return
    if abort:
        writer.transport.abort()
        return
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_GRACE):
            await writer.wait_closed()
    except (TimeoutError, OSError, ssl.SSLError):
        writer.transport.abort()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Like Marathon: HTTPS checks do not verify certificates (self-signed ones are the norm).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _describe_error(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(e, ssl.SSLError):
        return f"TLS error: {e.reason or e}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[0].lower() + e.strerror[1:]
    return str(e) or type(e).__name__
