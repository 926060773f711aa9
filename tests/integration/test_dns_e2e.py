"""End to end: `kade up` runs containers, and DNS and the Consul API find exactly those."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import consul  # type: ignore[import-untyped]
import dns.resolver
import httpx
import pytest

from tests.integration.harness import Kade, free_port, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]

HEALTH = {"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 1,
          "timeoutSeconds": 2, "gracePeriodSeconds": 10, "maxConsecutiveFailures": 3}


def site(instances: int) -> dict[str, Any]:
    return {"id": "/e2e/site", "instances": instances, "cpus": 0.01, "mem": 16,
            "container": {"docker": {"image": "kade/site:1"}}, "healthChecks": [HEALTH],
            "labels": {"kade.service.tags": "blue"}}


@pytest.fixture
def kade_dns(tmp_path: Path) -> Iterator[tuple[Kade, int]]:
    dns_port = free_port()
    k = Kade(tmp_path / "kade", extra=["--dns-addr", f"127.0.0.1:{dns_port}"])
    try:
        yield k.start(), dns_port
    finally:
        k.cleanup()


def resolver(port: int) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = port
    r.lifetime = 5
    r.cache = None
    return r


def srv_ports(port: int, name: str) -> list[int]:
    try:
        return sorted(x.port for x in resolver(port).resolve(name, "SRV"))
    except dns.resolver.NXDOMAIN:
        return []


def test_dns_and_consul_api_follow_the_running_containers(kade_dns: tuple[Kade, int]) -> None:
    kade, dns_port = kade_dns
    kade.deploy(site(instances=2))
    tasks = kade.wait_healthy("/e2e/site", 2)
    ports = sorted(t["ports"][0] for t in tasks)
    name = "site-e2e.service.consul"

    # DNS: SRV ports are the tasks' host ports, and each one serves the site.
    assert wait_for(lambda: srv_ports(dns_port, name) == ports, 30, "SRV of both tasks")
    assert srv_ports(dns_port, "_site-e2e._blue.service.consul") == ports
    for port in srv_ports(dns_port, name):
        assert "version 1" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    a = resolver(dns_port).resolve(name, "A")
    assert [x.address for x in a] == ["127.0.0.1"]

    # Consul API: the same two, passing; a blocking query wakes when the app scales down.
    c = consul.Consul(host="127.0.0.1", port=kade.port, token=kade.token)
    index, entries = c.health.service("site-e2e", passing=True)
    assert sorted(e["Service"]["Port"] for e in entries) == ports
    result: dict[str, Any] = {}

    def block() -> None:
        current = index
        for _ in range(20):  # bounded: each round returns at a change or after 30 s
            current, got = c.health.service("site-e2e", passing=True, index=current, wait="30s")
            if len(got) == 1:
                result["entries"] = got
                return

    watcher = threading.Thread(target=block)
    watcher.start()
    kade.deploy(site(instances=1))
    watcher.join(120)
    assert not watcher.is_alive()
    [left] = result["entries"]
    assert left["Service"]["Port"] in ports
    assert wait_for(lambda: srv_ports(dns_port, name) == [left["Service"]["Port"]], 30,
                    "SRV of the remaining task")
