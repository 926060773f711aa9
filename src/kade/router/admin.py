"""The admin listener, apart from the data path: /ping, /metrics (Prometheus), /table."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from kade.router.proxy import Proxy

MAX_REQUEST_HEAD = 16 * 1024


def table_view(proxy: Proxy, extra: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    table = proxy.table
    view: dict[str, Any] = {
        "revision": table.revision,
        "table": table.data,
        "errors": table.errors,
        "draining": proxy.draining(),
    }
    if extra is not None:
        view.update(extra())
    return view


async def _answer(writer: asyncio.StreamWriter, status: str, ctype: str, body: bytes) -> None:
    writer.write(
        f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n".encode() + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def serve_admin(
    proxy: Proxy, host: str, port: int, extra: Callable[[], dict[str, Any]] | None = None,
    metrics: Callable[[], str] | None = None,
) -> asyncio.Server:
    """Start the admin listener; `extra` adds fields to /table (e.g. the follower's state),
    `metrics` replaces the proxy's own metrics text (e.g. to add other workers' figures)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, target = (line[0], line[1]) if len(line) >= 2 else ("", "")
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await _answer(writer, "405 Method Not Allowed", "text/plain", b"GET only\n")
            elif path == "/ping":
                await _answer(writer, "200 OK", "text/plain", b"OK")
            elif path == "/metrics":
                text = metrics() if metrics is not None else proxy.metrics_text()
                await _answer(writer, "200 OK", "text/plain; version=0.0.4", text.encode())
            elif path == "/table":
                body = json.dumps(table_view(proxy, extra), indent=2).encode() + b"\n"
                await _answer(writer, "200 OK", "application/json", body)
            else:
                await _answer(writer, "404 Not Found", "text/plain", b"404 page not found\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_HEAD,
                                      reuse_address=True)
