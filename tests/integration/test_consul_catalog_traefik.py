"""Traefik's consulCatalog provider reads kade's Consul API and routes to a real upstream.

This is the talk's set-up (Traefik in front, Consul's catalog behind it) with kade standing in
for Consul: tasks that turn healthy get traffic, tasks that stop being healthy lose it.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_consul_catalog_api import Discovery, serve_discovery

pytestmark = pytest.mark.timeout(180)

TRAEFIK = Path(sys.executable).with_name("traefik")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Upstream:
    """A plain HTTP server process on 127.0.0.1 serving one page."""

    def __init__(self, root: Path, text: str) -> None:
        root.mkdir(parents=True)
        (root / "index.html").write_text(text)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port),
             "--directory", str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
async def discovery(tmp_path: Path) -> AsyncIterator[Discovery]:
    async with serve_discovery(tmp_path / "data") as d:
        yield d


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    u = Upstream(tmp_path / "www", "hello from the upstream\n")
    try:
        yield u
    finally:
        u.stop()


class Traefik:
    def __init__(self, consul_port: int, token: str, log: Path) -> None:
        self.web = free_port()
        self.api = free_port()
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(TRAEFIK),
                 f"--providers.consulcatalog.endpoint.address=127.0.0.1:{consul_port}",
                 f"--providers.consulcatalog.endpoint.token={token}",
                 "--providers.consulcatalog.exposedByDefault=true",
                 "--providers.consulcatalog.watch=true",  # blocking queries, not polling
                 f"--entrypoints.web.address=127.0.0.1:{self.web}",
                 f"--entrypoints.traefik.address=127.0.0.1:{self.api}",
                 "--api.insecure=true", "--ping=true", "--log.level=INFO"],
                stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


async def through(traefik: Traefik, host: str) -> tuple[int, str]:
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.get(f"http://127.0.0.1:{traefik.web}/", headers={"Host": host})
        return r.status_code, r.text


async def until_through(traefik: Traefik, host: str, status: int, timeout: float = 60) -> str:
    """Ask through Traefik until it answers `status` (its configuration follows the catalog)."""
    last: tuple[int, str] | None = None
    for _ in range(int(timeout / 0.1)):
        if traefik.proc.poll() is not None:
            raise AssertionError(f"traefik exited:\n{traefik.log.read_text()[-3000:]}")
        try:
            last = await through(traefik, host)
        except httpx.TransportError:
            last = None
        if last is not None and last[0] == status:
            return last[1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"Traefik never answered {status} for {host} (last: {last})\n"
                         f"{traefik.log.read_text()[-3000:]}")


async def test_traefik_routes_to_healthy_tasks_found_through_kade(
    discovery: Discovery, upstream: Upstream, tmp_path: Path,
) -> None:
    d = discovery
    await d.put_node("n1", "127.0.0.1")
    await d.put_app("/shop/web", healthChecks=[{"path": "/"}])
    await d.put_app("/shop/www", labels={
        "traefik.http.routers.www.rule": "Host(`www.example.test`)"})
    await d.put_task("web.1", "/shop/web", [upstream.port])
    await d.put_status("web.1", "/shop/web", "running", "unknown")  # not yet healthy
    await d.put_task("www.1", "/shop/www", [upstream.port])
    await d.put_status("www.1", "/shop/www", "running")
    traefik = Traefik(d.port, d.token, tmp_path / "traefik.log")
    try:
        # The default rule is Host(`<service name>`); a traefik.* label is passed as a tag.
        body = await until_through(traefik, "www.example.test", 200)
        assert body == "hello from the upstream\n"
        status, _ = await through(traefik, "web-shop")
        assert status == 404  # web-shop has no passing task: Traefik has no route for it

        await d.put_status("web.1", "/shop/web", "running", "healthy")
        assert await until_through(traefik, "web-shop", 200) == "hello from the upstream\n"

        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{traefik.api}/api/http/services")
            urls = {s["name"]: [srv["url"] for srv in s["loadBalancer"]["servers"]]
                    for s in r.json() if "loadBalancer" in s}
        assert urls["web-shop@consulcatalog"] == [f"http://127.0.0.1:{upstream.port}"]

        await d.put_task("web.1", "/shop/web", [upstream.port], desired="stop")
        await until_through(traefik, "web-shop", 404)  # it left discovery, so routing
    finally:
        traefik.stop()
