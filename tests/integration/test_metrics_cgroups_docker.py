"""A real container's usage as the collector reads it: CPU it burns, its memory limit, and
an OOM kill inside it."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from kade.metrics.cgroups import cgroup_paths, read_cgroup, read_network

pytestmark = pytest.mark.docker
LABEL = f"kade.test=cgroups-{uuid.uuid4().hex[:8]}"


def _run(*args: str) -> str:
    return subprocess.run(["docker", "run", "-d", "--rm", "--label", LABEL, *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _pid(cid: str) -> int:
    return int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid], check=True,
                              capture_output=True, text=True).stdout)


@pytest.fixture
def cleanup() -> Iterator[None]:
    yield
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def test_a_busy_container_s_cpu_memory_limit_and_network(cleanup: None) -> None:
    cid = _run("--memory", "64m", "kade/busybox", "sh", "-c", "while true; do :; done")
    paths = cgroup_paths(_pid(cid))
    first = read_cgroup(paths)
    assert first.cpu_seconds is not None
    deadline = time.monotonic() + 30
    while (got := read_cgroup(paths)).cpu_seconds == first.cpu_seconds:
        assert time.monotonic() < deadline, "its CPU time never moved"
        time.sleep(0.1)
    assert got.cpu_seconds is not None and got.cpu_seconds > first.cpu_seconds
    assert got.memory_limit == 64 * 1024 * 1024
    assert got.memory is not None and got.memory > 0
    net = read_network(_pid(cid))  # its own namespace (bridge): counted
    assert net is not None and set(net) == {"rx_bytes", "rx_packets", "tx_bytes", "tx_packets"}


def test_an_oom_kill_inside_a_container_is_counted(cleanup: None) -> None:
    cid = _run("--memory", "32m", "--memory-swap", "32m", "kade/busybox", "sh", "-c",
               # tail holds the one endless line in memory and asks to be the one the OOM
               # killer takes (a process may raise its own score): the shell lives on
               "head -c 100000000 /dev/zero | "
               "sh -c 'echo 1000 > /proc/self/oom_score_adj; exec tail'; sleep 60")
    paths = cgroup_paths(_pid(cid))
    deadline = time.monotonic() + 60
    while not read_cgroup(paths).oom_kills:
        assert time.monotonic() < deadline, "no OOM kill was seen"
        time.sleep(0.2)
    assert read_cgroup(paths).oom_kills == 1
