"""Reading a task's usage from cgroup files (v2 and v1 trees as the kernel lays them out)
and from /proc (network namespaces, process trees)."""

from __future__ import annotations

import os
from pathlib import Path

from kade.metrics.cgroups import (
    Usage,
    cgroup_paths,
    read_cgroup,
    read_network,
    read_process_tree,
)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_paths_of_a_process_v1_and_v2(tmp_path: Path) -> None:
    _write(tmp_path, {"7/cgroup": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"
                                   "0::/system.slice/docker-abc.scope\n"})
    assert cgroup_paths(7, tmp_path) == {"memory": "/docker/abc", "cpu": "/docker/abc",
                                         "cpuacct": "/docker/abc",
                                         "": "/system.slice/docker-abc.scope"}
    assert cgroup_paths(8, tmp_path) == {}  # gone: nothing read


def test_cgroup_v2(tmp_path: Path) -> None:
    d = "system.slice/docker-abc.scope/"
    _write(tmp_path, {
        "cgroup.controllers": "cpu io memory pids\n",
        d + "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        d + "memory.current": "104857600\n",
        d + "memory.max": "268435456\n",
        d + "memory.stat": "anon 50000000\nfile 54857600\ninactive_file 4857600\n",
        d + "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        d + "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n"
                       "8:16 rbytes=100 wbytes=0 rios=1 wios=0\n",
    })
    got = read_cgroup({"": "/system.slice/docker-abc.scope"}, tmp_path)
    assert got == Usage(cpu_seconds=2.5, memory=104857600, working_set=100000000,
                        memory_limit=268435456, oom_kills=1, io_read=4196, io_write=8192)


def test_cgroup_v2_without_a_limit(tmp_path: Path) -> None:
    _write(tmp_path, {"cgroup.controllers": "", "t/memory.max": "max\n",
                      "t/memory.current": "10\n"})
    got = read_cgroup({"": "/t"}, tmp_path)
    assert got.memory_limit is None and got.memory == 10 and got.cpu_seconds is None


def test_cgroup_v1(tmp_path: Path) -> None:
    _write(tmp_path, {
        "cpu,cpuacct/docker/abc/cpuacct.usage": "1500000000\n",
        "memory/docker/abc/memory.usage_in_bytes": "2000\n",
        "memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
        "memory/docker/abc/memory.stat": "cache 100\ntotal_inactive_file 500\n",
        "memory/docker/abc/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "blkio/docker/abc/blkio.throttle.io_service_bytes":
            "8:0 Read 10\n8:0 Write 20\n8:0 Total 30\nTotal 30\n",
    })
    paths = {"cpuacct": "/docker/abc", "memory": "/docker/abc", "blkio": "/docker/abc"}
    got = read_cgroup(paths, tmp_path)
    assert got == Usage(cpu_seconds=1.5, memory=2000, working_set=1500, memory_limit=None,
                        oom_kills=2, io_read=10, io_write=20)


def test_a_cgroup_that_is_gone_reads_as_nothing(tmp_path: Path) -> None:
    assert read_cgroup({"memory": "/docker/gone"}, tmp_path) == Usage()


def test_network_of_kade_s_own_namespace_is_not_a_task_s() -> None:
    assert read_network(os.getpid()) is None


def test_process_tree_counts_this_process() -> None:
    got = read_process_tree(os.getpid())
    assert got.cpu_seconds is not None and got.cpu_seconds > 0
    assert got.memory is not None and got.memory > 10 * 1024 * 1024
    assert read_process_tree(2**22 + 7) == Usage()
