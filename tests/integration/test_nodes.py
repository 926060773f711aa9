"""Nodes for operators, end to end: a real `kade up --attr az=1a`, its API and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kade.client import Client, ClientError
from tests.integration.harness import Kade

WEB = {"id": "/nodes/web", "instances": 1, "cpus": 0.01, "mem": 16,
       "container": {"docker": {"image": "kade/site:1"}},
       "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1,
                         "timeoutSeconds": 2, "gracePeriodSeconds": 60}]}


@pytest.fixture
def zoned(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade", extra=["--attr", "az=1a", "--attr", "rack=r1"])
    try:
        yield k.start()
    finally:
        k.cleanup()


def env(kade: Kade) -> dict[str, str]:
    """The CLI's environment: this kade, the code under test, a wide table."""
    return {**kade.cli_env, "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}


def cli(kade: Kade, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kade", *args], capture_output=True,
                          text=True, timeout=60, env=env(kade))


def node(kade: Kade) -> dict[str, Any]:
    return dict(kade.get(f"/v1/nodes/{kade.node}")["node"])


def test_a_node_with_attributes_as_operators_see_it(zoned: Kade) -> None:
    k = zoned
    shown = node(k)
    assert shown["attributes"] == {"az": "1a", "rack": "r1"}
    assert (shown["status"], shown["eligible"], shown["tasks"]) == ("ready", True, 0)
    assert shown["hostname"] and shown["lastSeen"]
    assert shown["cpus"]["total"] > 0 and shown["mem"]["total"] > 0
    # the same attributes are the node's meta in Consul's catalog
    catalog = httpx.get(f"http://{k.addr}/v1/catalog/nodes", params={"node-meta": "az:1a"},
                        headers=k.auth, timeout=10).json()
    assert [(n["Node"], n["Meta"]["az"]) for n in catalog] == [(k.node, "1a")]

    k.deploy(WEB)
    [task] = k.wait_healthy("/nodes/web", 1)
    shown = node(k)
    assert (shown["tasks"], shown["cpus"]["used"], shown["mem"]["used"]) == (1, 0.01, 16)
    assert task["ports"][0] in shown["portsInUse"]

    out = cli(k, "nodes")
    assert out.returncode == 0, out.stderr
    [row] = [line for line in out.stdout.splitlines() if k.node in line]
    assert "az=1a,rack=r1" in row and "ready" in row and "yes" in row
    assert "0.01/" in row and "16/" in row
    out = cli(k, "nodes", "--attr", "az=1b", "--json")
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr


def test_eligibility_drain_and_zone_drain(zoned: Kade, tmp_path: Path) -> None:
    k = zoned
    k.deploy(WEB)
    k.wait_healthy("/nodes/web", 1)

    out = cli(k, "node", "eligibility", k.node, "--disable")
    assert (out.returncode, out.stdout.strip()) == (0, f"{k.node}: ineligible"), out.stderr
    assert node(k)["eligible"] is False
    out = cli(k, "node", "eligibility", k.node, "--enable")
    assert out.stdout.strip() == f"{k.node}: eligible" and node(k)["eligible"] is True

    # A drain is accepted and shown; following it can be stopped, the drain goes on.
    follow = subprocess.Popen(
        [sys.executable, "-m", "kade", "node", "drain", k.node, "--deadline", "5m"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(k))
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline().strip() == f"{k.node}: ineligible, draining " \
                                                   "(deadline 5m)"
        progress = follow.stdout.readline()
        assert progress.startswith(f"{k.node}: draining, 1 left, 0 moving, 0 done"), progress
        follow.send_signal(signal.SIGINT)
        _, stderr = follow.communicate(timeout=20)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(10)
    assert follow.returncode == 130
    assert f"the drain of {k.node} goes on in kade" in stderr
    shown = node(k)
    assert (shown["status"], shown["eligible"]) == ("draining", False)
    assert shown["drain"]["tasks"]["total"] == 1 and shown["drain"]["maxParallel"] == 1
    progress = k.get(f"/v1/nodes/{k.node}/drain")
    assert progress["drain"]["complete"] is False

    out = cli(k, "node", "drain", k.node, "--cancel", "--enable")
    assert out.stdout.strip() == f"{k.node}: not draining, eligible", out.stderr
    shown = node(k)
    assert (shown["status"], shown["eligible"], shown["drain"]) == ("ready", True, None)

    # A zone drain of the one node of az=1a, followed live: when its last task is gone
    # (here its app is destroyed), the progress says so and the command ends.
    follow = subprocess.Popen(
        [sys.executable, "-m", "kade", "node", "drain", "--attr", "az=1a", "--deadline", "2m",
         "--keep-system"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env(k))
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline().strip() == \
            f"az=1a: 1 node(s) ineligible, draining: {k.node}"
        assert follow.stdout.readline().startswith(f"{k.node}: draining, 1 left")
        k.client.delete("/v1/apps/nodes/web")
        rest, stderr = follow.communicate(timeout=60)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(10)
    assert follow.returncode == 0, stderr
    assert rest.splitlines()[-1] == f"{k.node}: drained, 1 moved", rest
    shown = node(k)
    assert (shown["status"], shown["eligible"], shown["tasks"]) == ("drained", False, 0)
    assert shown["drain"]["keepSystem"] is True


def test_errors_name_the_problem(zoned: Kade) -> None:
    k = zoned
    out = cli(k, "node", "drain", "nope", "--no-wait")
    assert out.returncode == 1
    assert "node nope does not exist" in out.stderr
    out = cli(k, "node", "drain", k.node, "--max-parallel", "0", "--no-wait")
    assert out.returncode == 1 and "maxParallel: must be between 1 and 100" in out.stderr
    out = cli(k, "node", "drain", "--attr", "az=1z", "--no-wait")
    assert out.returncode == 1 and "no node has the attribute az=1z" in out.stderr
    with pytest.raises(ClientError) as missing:
        k.get("/v1/nodes/nope")
    assert missing.value.status == 404

    read = k.client.post("/v1/tokens", {"role": "read"})["token"]
    reader = Client(k.addr, timeout=10, token=read)
    try:
        assert reader.get("/v1/nodes")["nodes"][0]["name"] == k.node
        for call in (lambda: reader.put(f"/v1/nodes/{k.node}/eligibility", {"eligible": False}),
                     lambda: reader.post(f"/v1/nodes/{k.node}/drain", {}),
                     lambda: reader.post("/v1/nodes/drain", {"attr": "az=1a"})):
            with pytest.raises(ClientError) as refused:
                call()
            assert refused.value.status == 403 and "needs a admin token" in str(refused.value)
    finally:
        reader.close()
    assert node(k)["eligible"] is True and node(k)["drain"] is None


def test_a_bad_attribute_stops_kade_up_with_the_reason(tmp_path: Path) -> None:
    k = Kade(tmp_path / "kade", extra=["--attr", "az"])
    try:
        result = subprocess.run(k.command(), capture_output=True, text=True, timeout=60,
                                env={**os.environ, "KADE_ATTR": ""})
    finally:
        k.cleanup()
    assert result.returncode == 2
    assert "--attr: 'az' must be key=value, e.g. az=1a" in result.stderr
