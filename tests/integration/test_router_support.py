"""What the router's integration tests share (this module holds no tests itself).

- `Upstream`: a real HTTP/1.1 server on 127.0.0.1 whose behaviour is chosen by the path
  (echo, chunked, big bodies, slow answers, dropped keep-alive connections...).
- `ControlPlane`: the two endpoints the router follows (`/v1/router/table` as a blocking
  query, `/v1/router/ack`), served by the test.
- `RouterProcess`: `python -m kade.router` in a subprocess, stopped (and waited for) at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(predicate: Callable[[], Any], timeout: float = 20.0,
                     what: str = "condition") -> Any:
    """Poll `predicate` (sync or async) until truthy; fail past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep trying until the deadline
            last = e
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last!r}" if last else ""))


# -- a tiny HTTP/1.1 reading kit for the test servers ------------------------------------------


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, list[tuple[str, str]]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
    return method, target, headers


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def body_pieces(reader: asyncio.StreamReader, headers: list[tuple[str, str]]
                      ) -> Any:
    """The request body, piece by piece, as it arrives (sized or chunked)."""
    te = header(headers, "transfer-encoding")
    if te and "chunked" in te.lower():
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                return
            left = size
            while left:
                piece = await reader.read(min(left, 65536))
                if not piece:
                    raise ConnectionError("body cut short")
                left -= len(piece)
                yield piece
            await reader.readexactly(2)
    length = int(header(headers, "content-length") or 0)
    while length:
        piece = await reader.read(min(length, 65536))
        if not piece:
            raise ConnectionError("body cut short")
        length -= len(piece)
        yield piece


class Upstream:
    """An upstream app. Paths: / (echo as JSON), /chunked, /big, /echo-body, /sink, /slow,
    /drop-second, /cut, /status, /until-close, /close, /fixed. Every answer says which upstream and
    connection served it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connections = 0
        self.requests = 0
        self.seen: list[dict[str, Any]] = []
        self.port = 0
        self.dying = False  # when set, every request is read and the connection dropped
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        self._writers.add(writer)
        served = 0
        try:
            while True:
                try:
                    method, target, headers = await read_head(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                served += 1
                self.requests += 1
                keep = await self._answer(reader, writer, method, target, headers, conn, served)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      method: str, target: str, headers: list[tuple[str, str]], conn: int,
                      served: int) -> bool:
        url = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        info = {"server": self.name, "conn": conn, "method": method, "target": target,
                "headers": headers}
        self.seen.append(info)
        ident = [("X-Upstream", self.name), ("X-Conn", str(conn))]

        async def send(status: str, hdrs: list[tuple[str, str]], body: bytes = b"") -> None:
            head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs + ident)
            writer.write(head.encode() + b"\r\n" + (b"" if method == "HEAD" else body))
            await writer.drain()

        if self.dying:
            writer.transport.abort()  # the server died with the request: no answer at all
            return False
        if path == "/drop-second" and served > 1:
            writer.transport.abort()  # the server gave up on this keep-alive connection
            return False
        if path == "/echo-body":
            await send("200 OK", [("Transfer-Encoding", "chunked")])
            async for piece in body_pieces(reader, headers):
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if (header(headers, "expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        digest = hashlib.sha256()
        size = 0
        async for piece in body_pieces(reader, headers):
            digest.update(piece)
            size += len(piece)
        info["body_size"] = size
        info["body_sha256"] = digest.hexdigest()
        if path == "/slow":
            await asyncio.sleep(float(q.get("s", "1")))
        if path == "/chunked":
            await send("200 OK", [("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")])
            for i in range(int(q.get("n", "5"))):
                piece = f"chunk {i}\n".encode()
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if path == "/big":
            total = int(q["size"])
            await send("200 OK", [("Content-Length", str(total))])
            block = bytes(range(256)) * 256  # 64 KiB
            left = total
            while left:
                piece = block[: min(left, len(block))]
                writer.write(piece)
                left -= len(piece)
                await writer.drain()
            return True
        if path == "/cut":
            await send("200 OK", [("Content-Length", "1000")], b"only ten b")
            writer.transport.abort()
            return False
        if path == "/status":
            code = int(q.get("code", "200"))
            reason = {204: "No Content", 304: "Not Modified"}.get(code, "Whatever")
            await send(f"{code} {reason}", [("X-Status", str(code))])
            return True
        if path == "/fixed":  # the same answer every time
            await send("200 OK", [("Content-Length", "6"), ("Connection", "keep-alive")],
                       b"fixed\n")
            return True
        if path == "/until-close":  # no length, no chunks: the body ends when the connection does
            await send("200 OK", [("Content-Type", "text/plain")], b"all of it, then EOF")
            return False
        if path == "/close":
            await send("200 OK", [("Connection", "close"), ("Content-Length", "2")], b"ok")
            return False
        body = json.dumps(info).encode()
        await send("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))), ("Connection", "keep-alive"),
                              ("Keep-Alive", "timeout=60")], body)
        return True


class ControlPlane:
    """`GET /v1/router/table?index=&wait=` (blocking) and `PUT /v1/router/ack`, in-process."""

    def __init__(self) -> None:
        self.table: dict[str, Any] = {"revision": 0, "routers": [], "services": {}}
        self.acks: list[dict[str, Any]] = []
        self.authorization: list[str | None] = []  # the Authorization header of each request
        self.tls: dict[str, Any] | None = None  # certificates, sent to routers that ask
        self.port = 0
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ControlPlane:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    def set_table(self, routers: list[dict[str, Any]], services: dict[str, Any]) -> int:
        revision = int(self.table["revision"]) + 1
        self.table = {"revision": revision, "routers": routers, "services": services}
        self._changed.set()
        self._changed = asyncio.Event()
        return revision

    def acked(self, revision: int) -> dict[str, Any] | None:
        found: dict[str, Any] | None = None
        for ack in self.acks:
            if ack["revision"] == revision:
                found = ack
        return found

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                method, target, headers = await read_head(reader)
                body = b"".join([p async for p in body_pieces(reader, headers)])
                self.authorization.append(header(headers, "authorization"))
                url = urlsplit(target)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if method == "GET" and url.path == "/v1/router/table":
                    index = int(q.get("index", "0"))
                    wait = float(q.get("wait", "60s").rstrip("s"))
                    if self.table["revision"] <= index:
                        changed = self._changed
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(changed.wait(), wait)
                    table = self.table
                    if self.tls is not None and "tlsIndex" in q:
                        table = {**table, "tls": self.tls}
                    answer = json.dumps(table).encode()
                elif method == "PUT" and url.path == "/v1/router/ack":
                    self.acks.append(json.loads(body))
                    answer = b"{}"
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%b" % (len(answer), answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class RouterProcess:
    """`python -m kade.router`, started with its own ports and state dir."""

    def __init__(self, state_dir: Path, api_url: str, *extra: str, name: str = "test-router"
                 ) -> None:
        self.state_dir = state_dir
        self.api_url = api_url
        self.extra = list(extra)
        self.name = name
        self.port = free_port()
        self.admin_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.log_path = state_dir.parent / f"{name}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _spawn(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kade.router", "--http-addr", f"127.0.0.1:{self.port}",
             "--admin-addr", f"127.0.0.1:{self.admin_port}", "--api", self.api_url,
             "--state-dir", str(self.state_dir), "--name", self.name, *self.extra],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    async def start(self) -> RouterProcess:
        self._spawn()

        async def pings() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.logs()[-4000:]
            async with httpx.AsyncClient() as c:
                return (await c.get(f"{self.admin}/ping", timeout=1)).text == "OK"

        await wait_until(pings, 20, "the router to answer /ping")
        return self

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM and wait for the exit (SIGKILL past `timeout`); the exit code."""
        proc = self.proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5)
        self.proc = None
        self.returncode = proc.returncode
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def memory_peak_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


class Env:
    """A control plane and a router following it; `route()` publishes a table and waits
    until the router has acknowledged it."""

    def __init__(self, cp: ControlPlane, router: RouterProcess) -> None:
        self.cp = cp
        self.router = router

    async def route(self, routers: list[dict[str, Any]], services: dict[str, Any]) -> int:
        revision = self.cp.set_table(routers, services)
        await wait_until(lambda: self.cp.acked(revision), 20, f"ack of revision {revision}")
        return revision

    async def route_one(self, rule: str, *servers: Upstream | str,
                        strategy: str = "round-robin") -> int:
        urls = [s if isinstance(s, str) else s.url for s in servers]
        return await self.route(
            [{"name": "web", "rule": rule, "service": "web", "app": "/web"}],
            {"web": {"strategy": strategy,
                     "servers": [{"url": u, "task": f"web.{i}"} for i, u in enumerate(urls)]}},
        )


async def raw_request(port: int, data: bytes, *, read_timeout: float = 10) -> bytes:
    """Send raw bytes, read until the router closes the connection (or `read_timeout`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(read_timeout):
                while True:
                    piece = await reader.read(65536)
                    if not piece:
                        break
                    chunks.append(piece)
        return b"".join(chunks)
    finally:
        writer.close()
