"""The router's HTTPS entrypoint with real TLS clients: certificates from files and from the
control plane chosen by SNI, forwarded headers, redirects of routes that ask for HTTPS."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_router_support import (
    ControlPlane,
    Env,
    RouterProcess,
    Upstream,
    free_port,
    raw_request,
    wait_until,
)
from tests.unit.test_router_tls import self_signed, write_pair

pytestmark = pytest.mark.timeout(120)


class Tls:
    """A router with an HTTPS entrypoint serving two certificates from files."""

    def __init__(self, env: Env, https_port: int, pems: dict[str, str]) -> None:
        self.env = env
        self.https_port = https_port
        self.pems = pems  # certificate PEMs by file name, to trust them

    async def get(self, server_name: str, path: str = "/", host: str | None = None,
                  trust: str | None = None) -> tuple[bytes, dict[str, Any] | None]:
        """One request over TLS with `server_name` as SNI: (response, the peer certificate)."""
        ctx = ssl.create_default_context(cadata=trust or "".join(self.pems.values()))
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.https_port, ssl=ctx, server_hostname=server_name)
        try:
            peer = writer.get_extra_info("peercert")
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host or server_name}\r\n"
                         f"Connection: close\r\n\r\n".encode())
            async with asyncio.timeout(10):
                return await reader.read(), peer
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = await Upstream("app").start()
    yield up
    await up.stop()


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[Tls]:
    certs = tmp_path / "certs"
    certs.mkdir()
    www_crt, www_key = write_pair(certs, "www", "www.localhost")
    write_pair(certs, "apps", "*.apps.localhost")
    https_port = free_port()
    cp = await ControlPlane().start()
    router = RouterProcess(tmp_path / "state", cp.url, "--https-addr",
                           f"127.0.0.1:{https_port}", "--tls-cert", str(www_crt),
                           "--tls-key", str(www_key), "--tls-dir", str(certs))
    try:
        await router.start()
        yield Tls(Env(cp, router), https_port, {p.name: p.read_text()
                                                for p in sorted(certs.glob("*.crt"))})
        assert await router.stop() == 0
        assert "Traceback" not in router.logs(), router.logs()
        assert "PRIVATE KEY" not in router.logs()
    finally:
        await router.stop()
        await cp.stop()


def alt_names(peer: dict[str, Any] | None) -> list[str]:
    assert peer is not None
    return [v for k, v in peer.get("subjectAltName", ()) if k == "DNS"]


async def test_https_serves_the_certificate_sni_asks_for(tls: Tls, upstream: Upstream) -> None:
    await tls.env.route_one("PathPrefix(`/`)", upstream)
    answer, peer = await tls.get("www.localhost", "/x?y=1")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert alt_names(peer) == ["www.localhost"]  # verified against it by the client
    answer, peer = await tls.get("shop.apps.localhost")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert alt_names(peer) == ["*.apps.localhost"]
    seen = {k.lower(): v for k, v in upstream.seen[0]["headers"]}
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-port"] == "443"
    assert seen["host"] == "www.localhost"
    # a name no certificate has: the default one (the first file's); a verifying client refuses
    with pytest.raises(ssl.SSLCertVerificationError):
        await tls.get("nothing.localhost")


async def test_a_tls_route_redirects_plain_http(tls: Tls, upstream: Upstream) -> None:
    await tls.env.route(
        [{"name": "secure", "rule": "Host(`www.localhost`)", "service": "web", "tls": True},
         {"name": "plain", "rule": "Host(`plain.localhost`)", "service": "web"}],
        {"web": {"servers": [{"url": upstream.url}]}})
    answer = await raw_request(tls.env.router.port, b"POST /pay?x=1 HTTP/1.1\r\n"
                               b"Host: www.localhost:8080\r\nContent-Length: 0\r\n"
                               b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 308 Permanent Redirect\r\n")
    assert (b"\r\nlocation: https://www.localhost:%d/pay?x=1\r\n" % tls.https_port) in answer
    assert upstream.requests == 0
    answer, _ = await tls.get("www.localhost", "/pay?x=1")
    assert answer.startswith(b"HTTP/1.1 200 ")
    answer = await raw_request(tls.env.router.port, b"GET / HTTP/1.1\r\n"
                               b"Host: plain.localhost\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")  # a route without tls serves plain HTTP


async def test_certificates_from_the_control_plane(tls: Tls, upstream: Upstream,
                                                   tmp_path: Path) -> None:
    cert, key = self_signed("api.localhost")
    tls.env.cp.tls = {"index": 7, "certificates": [
        {"name": "api", "cert": cert, "key": key}]}
    await tls.env.route_one("PathPrefix(`/`)", upstream)
    state = tls.env.router.state_dir
    await wait_until(lambda: (state / "tls.json").exists(), 10, "the certificates saved")
    answer, peer = await tls.get("api.localhost", trust=cert)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert alt_names(peer) == ["api.localhost"]
    assert (state / "tls.json").stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in (state / "table.json").read_text()
    async with httpx.AsyncClient() as c:
        view = (await c.get(f"{tls.env.router.admin}/table")).text
    assert "PRIVATE KEY" not in view and "api.localhost" not in view


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:`port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            found.add(fields[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


async def test_every_worker_serves_https(tmp_path: Path, upstream: Upstream) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    write_pair(certs, "www", "www.localhost")
    api_cert, api_key = self_signed("api.localhost")
    https_port = free_port()
    cp = await ControlPlane().start()
    cp.tls = {"index": 3, "certificates": [{"name": "api", "cert": api_cert, "key": api_key}]}
    router = RouterProcess(tmp_path / "state", cp.url, "--workers", "2", "--https-addr",
                           f"127.0.0.1:{https_port}", "--tls-dir", str(certs))
    try:
        await router.start()
        env = Env(cp, router)
        await env.route_one("PathPrefix(`/`)", upstream)
        tls = Tls(env, https_port, {"www.crt": (certs / "www.crt").read_text()})
        assert router.proc is not None
        parent = router.proc.pid

        def both_listen() -> bool:
            pids = [parent, *worker_children(parent)]
            inodes = listening_inodes(https_port)
            return len(pids) == 2 and all(socket_inodes(pid) & inodes for pid in pids)

        await wait_until(both_listen, 20, "both processes listening for HTTPS")
        # the kernel spreads the connections: each process knows both certificates
        for _ in range(12):
            answer, _ = await tls.get("api.localhost", trust=api_cert)
            assert answer.startswith(b"HTTP/1.1 200 ")
            answer, _ = await tls.get("www.localhost")
            assert answer.startswith(b"HTTP/1.1 200 ")
        assert await router.stop() == 0
        assert "Traceback" not in router.logs(), router.logs()
    finally:
        await router.stop()
        await cp.stop()


def worker_children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []
