"""What a task uses, read from the kernel's own counters: its cgroup's files (v2, or v1's
cpuacct/memory/blkio controllers) and its network namespace's `/proc/<pid>/net/dev`.

Reading a few small files per task costs microseconds; Docker's stats API costs a second or
two per container unless asked for one shot, and cAdvisor's defaults cost more than the
containers they watch. A process that is not in a cgroup of its own (the exec driver's
tasks) is measured from `/proc` over its process tree instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as a huge number near 2^63


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float | None = None
    memory: int | None = None  # bytes in use, page cache included (the kernel's count)
    working_set: int | None = None  # what the OOM killer looks at: usage - inactive files
    memory_limit: int | None = None
    oom_kills: int | None = None
    io_read: int | None = None
    io_write: int | None = None
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    rx_packets: int | None = None
    tx_packets: int | None = None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _fields(text: str | None) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat, memory.events, oom_control)."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value.strip())
        except ValueError:
            continue
    return out


def cgroup_paths(pid: int, proc: Path = Path("/proc")) -> dict[str, str]:
    """Controller → path of the process's cgroups; `""` is the unified (v2) hierarchy."""
    paths: dict[str, str] = {}
    for line in (_read(proc / str(pid) / "cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(","):
            paths[controller] = parts[2]
    return paths


def read_cgroup(paths: dict[str, str], root: Path = Path("/sys/fs/cgroup")) -> Usage:
    """The task's cgroup counters, v2 where the unified hierarchy holds its controllers."""
    if (root / "cgroup.controllers").exists() and "" in paths:
        return _read_v2(root / paths[""].lstrip("/"))
    return _read_v1(paths, root)


def _read_v2(d: Path) -> Usage:
    cpu = _fields(_read(d / "cpu.stat")).get("usage_usec")
    memory = _int(_read(d / "memory.current"))
    stat = _fields(_read(d / "memory.stat"))
    limit_text = (_read(d / "memory.max") or "").strip()
    read = write = 0
    io = _read(d / "io.stat")
    for line in (io or "").splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return Usage(
        cpu_seconds=cpu / 1e6 if cpu is not None else None,
        memory=memory,
        working_set=_working_set(memory, stat.get("inactive_file")),
        memory_limit=int(limit_text) if limit_text.isdigit() else None,
        oom_kills=_fields(_read(d / "memory.events")).get("oom_kill"),
        io_read=read if io is not None else None,
        io_write=write if io is not None else None,
    )


def _read_v1(paths: dict[str, str], root: Path) -> Usage:
    def where(controller: str) -> Path | None:
        for name in (controller, f"{controller},cpu", f"cpu,{controller}"):
            if controller in paths and (root / name).exists():
                return root / name / paths[controller].lstrip("/")
        return None

    cpu = None
    if (d := where("cpuacct")) is not None:
        cpu = _int(_read(d / "cpuacct.usage"))
    memory = limit = oom = working = None
    if (d := where("memory")) is not None:
        memory = _int(_read(d / "memory.usage_in_bytes"))
        limit = _int(_read(d / "memory.limit_in_bytes"))
        stat = _fields(_read(d / "memory.stat"))
        working = _working_set(memory, stat.get("total_inactive_file", stat.get("inactive_file")))
        oom = _fields(_read(d / "memory.oom_control")).get("oom_kill")
    read = write = None
    if (d := where("blkio")) is not None:
        blkio = _read(d / "blkio.throttle.io_service_bytes")
        if blkio is not None:
            read = write = 0
            for line in blkio.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] == "Read":
                    read += int(parts[2])
                elif len(parts) == 3 and parts[1] == "Write":
                    write += int(parts[2])
    return Usage(
        cpu_seconds=cpu / 1e9 if cpu is not None else None,
        memory=memory, working_set=working,
        memory_limit=limit if limit is not None and limit < UNLIMITED else None,
        oom_kills=oom, io_read=read, io_write=write,
    )


def _working_set(usage: int | None, inactive: int | None) -> int | None:
    if usage is None:
        return None
    return max(usage - (inactive or 0), 0)


def read_network(pid: int, proc: Path = Path("/proc")) -> dict[str, int] | None:
    """Bytes and packets through the interfaces of the process's network namespace (not the
    loopback); None when it shares kade's own namespace (host networking: the counters
    would be the machine's)."""
    try:
        if os.stat(proc / str(pid) / "ns" / "net").st_ino == os.stat(
                proc / "self" / "ns" / "net").st_ino:
            return None
    except OSError:
        return None
    text = _read(proc / str(pid) / "net" / "dev")
    if text is None:
        return None
    out = {"rx_bytes": 0, "rx_packets": 0, "tx_bytes": 0, "tx_packets": 0}
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            continue
        values = counters.split()
        if len(values) >= 10:
            out["rx_bytes"] += int(values[0])
            out["rx_packets"] += int(values[1])
            out["tx_bytes"] += int(values[8])
            out["tx_packets"] += int(values[9])
    return out


def read_process_tree(pid: int, proc: Path = Path("/proc")) -> Usage:
    """CPU and resident memory of a process and its descendants (tasks with no cgroup of
    their own). Children that exited count through their parent's cutime/cstime."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        text = _read(Path(entry.path) / "stat")
        if text is None:
            continue
        fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) "
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    if pid not in stats:
        return Usage()
    cpu = 0
    rss = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        f = stats.get(p)
        if f is None:
            continue
        cpu += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])  # utime stime cutime cstime
        rss += int(f[21]) * page
        todo += children.get(p, [])
    return Usage(cpu_seconds=cpu / ticks, memory=rss, working_set=rss)
