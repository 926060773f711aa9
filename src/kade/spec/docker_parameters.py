"""`container.docker.parameters`: each `docker run --<key> <value>` flag as the Engine API has it.

Marathon hands these flags to the Docker CLI; kade speaks the Engine API, so every flag that the
CLI turns into a field of `POST /containers/create` is translated here, one small function per
flag, into the create body (`config`, `host` = its HostConfig, `endpoint` = the settings of the
container's network). One table serves both admission (a value the driver could not translate
is refused at deploy, naming the parameter) and the Docker driver, so they cannot disagree.

What a flag may reach on the host (devices, namespaces, host paths…) is judged apart, by the
container policy of `kade.admission.policy`; this module only translates. Flags that exist only
in the CLI (`env-file` reads a file where the CLI runs, `rm`, `detach`…) or that would take over
what kade does itself (ports, the restart policy, the container's name) are refused with why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENDPOINT_PARAMETERS", "NO_EQUIVALENT", "PARAMETERS", "Target", "apply_parameter",
           "canonical", "parameter_problem"]


@dataclass
class Target:
    """The parts of a create body a parameter writes to."""

    config: dict[str, Any] = field(default_factory=lambda: {"Labels": {}, "Env": []})
    host: dict[str, Any] = field(default_factory=dict)
    endpoint: dict[str, Any] = field(default_factory=dict)  # EndpointsConfig[<network>]


Apply = Callable[[str, Target], None]

_TRUE = {"", "true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*$", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                "h": 3600 * 10**9}


def boolean(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{value!r} is not true or false")


def integer(value: str) -> int:
    if not re.fullmatch(r"\s*-?\d{1,18}\s*", value):
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def size(value: str) -> int:
    """`512m`, `1g`, `64k`, `100` (bytes): binary units, as the Docker CLI reads them."""
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size such as 64m or 1g")
    unit = "bkmgtp".index((m.group(2) or "b").lower())
    return int(float(m.group(1)) * 1024**unit)


def duration(value: str) -> int:
    """A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds."""
    v = value.strip()
    parts = _DURATION_PART.findall(v)
    if not v or "".join(n + u for n, u in parts) != v:
        raise ValueError(f"{value!r} is not a duration such as 30s or 1m30s")
    return int(sum(float(n) * _DURATION_NS[u] for n, u in parts))


def _pair(value: str, what: str) -> tuple[str, str]:
    k, sep, v = value.partition("=")
    if not k.strip() or not sep:
        raise ValueError(f"{value!r} is not {what}=value")
    return k, v


def _set(section: str, name: str, parse: Callable[[str], Any] = str) -> Apply:
    def apply(value: str, t: Target) -> None:
        getattr(t, section)[name] = parse(value)
    return apply


def _append(section: str, name: str, parse: Callable[[str], Any] = str) -> Apply:
    def apply(value: str, t: Target) -> None:
        getattr(t, section).setdefault(name, []).append(parse(value))
    return apply


def _label(value: str, t: Target) -> None:
    k, _, v = value.partition("=")
    if not k:
        raise ValueError(f"{value!r} names no label")
    if not k.startswith("kade."):  # kade's own labels win; admission refuses the prefix
        t.config["Labels"][k] = v


def _env(value: str, t: Target) -> None:
    name = value.partition("=")[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{value!r} is not NAME=value")
    t.config["Env"].append(value)


def _ulimit(value: str, t: Target) -> None:
    m = re.fullmatch(r"([a-z]+)=(-?\d+)(?::(-?\d+))?", value.strip())
    if not m:
        raise ValueError(f"{value!r} is not name=soft[:hard], such as nofile=1024:2048")
    soft = int(m.group(2))
    t.host.setdefault("Ulimits", []).append(
        {"Name": m.group(1), "Soft": soft, "Hard": int(m.group(3) or soft)})


def _device(value: str, t: Target) -> None:  # host[:container[:permissions]]
    parts = value.split(":")
    if not parts[0].startswith("/") or len(parts) > 3:
        raise ValueError(f"{value!r} is not /dev/host[:/dev/container[:rwm]]")
    if len(parts) == 2 and not parts[1].startswith("/"):  # host:permissions
        parts = [parts[0], parts[0], parts[1]]
    t.host.setdefault("Devices", []).append({
        "PathOnHost": parts[0], "PathInContainer": parts[1] if len(parts) > 1 else parts[0],
        "CgroupPermissions": parts[2] if len(parts) > 2 else "rwm"})


def _log_driver(value: str, t: Target) -> None:
    t.host.setdefault("LogConfig", {"Type": "", "Config": {}})["Type"] = value


def _log_opt(value: str, t: Target) -> None:
    k, v = _pair(value, "a log option")
    t.host.setdefault("LogConfig", {"Type": "", "Config": {}})["Config"][k] = v


def _sysctl(value: str, t: Target) -> None:
    k, v = _pair(value, "a kernel parameter")
    t.host.setdefault("Sysctls", {})[k] = v


def _storage_opt(value: str, t: Target) -> None:
    k, v = _pair(value, "a storage option")
    t.host.setdefault("StorageOpt", {})[k] = v


def _tmpfs(value: str, t: Target) -> None:
    path, _, opts = value.partition(":")
    if not path.startswith("/"):
        raise ValueError(f"{value!r} is not /path[:options]")
    t.host.setdefault("Tmpfs", {})[path] = opts


def _entrypoint(value: str, t: Target) -> None:  # `--entrypoint ""` resets the image's
    t.config["Entrypoint"] = [value] if value else [""]


def _expose(value: str, t: Target) -> None:
    port, _, proto = value.partition("/")
    low, _, high = port.partition("-")
    try:
        numbers = range(int(low), int(high or low) + 1)
    except ValueError:
        raise ValueError(f"{value!r} is not port[-port][/protocol]") from None
    for n in numbers:
        t.config.setdefault("ExposedPorts", {})[f"{n}/{proto or 'tcp'}"] = {}


def _health(name: str, parse: Callable[[str], Any]) -> Apply:
    def apply(value: str, t: Target) -> None:
        t.config.setdefault("Healthcheck", {})[name] = parse(value)
    return apply


def _health_cmd(value: str, t: Target) -> None:
    t.config.setdefault("Healthcheck", {})["Test"] = ["CMD-SHELL", value]


def _no_healthcheck(value: str, t: Target) -> None:
    if boolean(value):
        t.config["Healthcheck"] = {"Test": ["NONE"]}


def _device_limit(name: str, key: str, rate: Callable[[str], int], unit: str) -> Apply:
    def apply(value: str, t: Target) -> None:
        path, sep, amount = value.rpartition(":")
        if not sep or not path.startswith("/"):
            raise ValueError(f"{value!r} is not /dev/path:{unit}")
        t.host.setdefault(name, []).append({"Path": path, key: rate(amount)})
    return apply


def _cpus(value: str, t: Target) -> None:
    try:
        cpus = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of CPUs") from None
    if not 0 < cpus < 1e6:
        raise ValueError(f"{value!r} is not a number of CPUs")
    t.host["NanoCpus"] = int(cpus * 1e9)


def _memory_swap(value: str, t: Target) -> None:
    t.host["MemorySwap"] = -1 if value.strip() == "-1" else size(value)


def _gpus(value: str, t: Target) -> None:
    v = value.strip()
    count = -1 if v in ("all", "count=all") else integer(v.removeprefix("count="))
    t.host.setdefault("DeviceRequests", []).append(
        {"Driver": "", "Count": count, "DeviceIDs": None, "Capabilities": [["gpu"]],
         "Options": {}})


def _mount(value: str, t: Target) -> None:
    """`type=bind,source=/a,target=/b,readonly` → a HostConfig.Mounts entry."""
    opts: dict[str, str] = {}
    driver_opts: dict[str, str] = {}
    for item in value.split(","):
        k, _, v = item.partition("=")
        if k.strip().lower() == "volume-opt":
            name, _, option = v.partition("=")
            driver_opts[name] = option
        else:
            opts[k.strip().lower()] = v.strip()
    kind = opts.get("type", "volume")
    target = opts.get("target") or opts.get("destination") or opts.get("dst")
    if kind not in ("bind", "volume", "tmpfs") or not target:
        raise ValueError(f"{value!r} is not type=bind|volume|tmpfs,source=…,target=…")
    mount: dict[str, Any] = {"Type": kind, "Target": target,
                             "Source": opts.get("source") or opts.get("src") or "",
                             "ReadOnly": "readonly" in opts or "ro" in opts}
    if driver_opts:
        mount["VolumeOptions"] = {"DriverConfig": {"Options": driver_opts}}
    t.host.setdefault("Mounts", []).append(mount)


def _endpoint_list(name: str) -> Apply:
    def apply(value: str, t: Target) -> None:
        t.endpoint.setdefault(name, []).append(value)
    return apply


def _ipam(name: str) -> Apply:
    def apply(value: str, t: Target) -> None:
        t.endpoint.setdefault("IPAMConfig", {})[name] = value
    return apply


# Every `docker run` flag with a place in the Engine API's create body (long names; the CLI's
# aliases too). Flags that reach the host are judged by the container policy, not here.
PARAMETERS: dict[str, Apply] = {
    # the process
    "env": _env, "label": _label, "entrypoint": _entrypoint, "user": _set("config", "User"),
    "workdir": _set("config", "WorkingDir"), "hostname": _set("config", "Hostname"),
    "domainname": _set("config", "Domainname"), "stop-signal": _set("config", "StopSignal"),
    "stop-timeout": _set("config", "StopTimeout", integer), "tty": _set("config", "Tty", boolean),
    "interactive": _set("config", "OpenStdin", boolean), "expose": _expose,
    "mac-address": _set("config", "MacAddress"),
    "health-cmd": _health_cmd, "health-interval": _health("Interval", duration),
    "health-timeout": _health("Timeout", duration),
    "health-start-period": _health("StartPeriod", duration),
    "health-retries": _health("Retries", integer), "no-healthcheck": _no_healthcheck,
    "init": _set("host", "Init", boolean), "read-only": _set("host", "ReadonlyRootfs", boolean),
    "group-add": _append("host", "GroupAdd"), "runtime": _set("host", "Runtime"),
    "isolation": _set("host", "Isolation"), "oom-score-adj": _set("host", "OomScoreAdj", integer),
    # resources
    "memory": _set("host", "Memory", size), "memory-swap": _memory_swap,
    "memory-reservation": _set("host", "MemoryReservation", size),
    "memory-swappiness": _set("host", "MemorySwappiness", integer),
    "kernel-memory": _set("host", "KernelMemory", size),
    "oom-kill-disable": _set("host", "OomKillDisable", boolean),
    "shm-size": _set("host", "ShmSize", size), "pids-limit": _set("host", "PidsLimit", integer),
    "cpus": _cpus, "cpu-shares": _set("host", "CpuShares", integer),
    "cpu-period": _set("host", "CpuPeriod", integer),
    "cpu-quota": _set("host", "CpuQuota", integer),
    "cpu-rt-period": _set("host", "CpuRealtimePeriod", integer),
    "cpu-rt-runtime": _set("host", "CpuRealtimeRuntime", integer),
    "cpuset-cpus": _set("host", "CpusetCpus"), "cpuset-mems": _set("host", "CpusetMems"),
    "blkio-weight": _set("host", "BlkioWeight", integer),
    "blkio-weight-device": _device_limit("BlkioWeightDevice", "Weight", integer, "weight"),
    "device-read-bps": _device_limit("BlkioDeviceReadBps", "Rate", size, "rate"),
    "device-write-bps": _device_limit("BlkioDeviceWriteBps", "Rate", size, "rate"),
    "device-read-iops": _device_limit("BlkioDeviceReadIOps", "Rate", integer, "rate"),
    "device-write-iops": _device_limit("BlkioDeviceWriteIOps", "Rate", integer, "rate"),
    "ulimit": _ulimit,
    # storage
    "volume": _append("host", "Binds"), "volumes-from": _append("host", "VolumesFrom"),
    "volume-driver": _set("host", "VolumeDriver"), "mount": _mount, "tmpfs": _tmpfs,
    "storage-opt": _storage_opt,
    # logging
    "log-driver": _log_driver, "log-opt": _log_opt,
    # networking (the network itself is the app's `networks`)
    "dns": _append("host", "Dns"), "dns-search": _append("host", "DnsSearch"),
    "dns-opt": _append("host", "DnsOptions"), "add-host": _append("host", "ExtraHosts"),
    "link": _append("host", "Links"), "network-alias": _endpoint_list("Aliases"),
    "ip": _ipam("IPv4Address"), "ip6": _ipam("IPv6Address"),
    "link-local-ip": _ipam("LinkLocalIPs"),
    # what reaches the host: the container policy decides
    "privileged": _set("host", "Privileged", boolean), "cap-add": _append("host", "CapAdd"),
    "cap-drop": _append("host", "CapDrop"), "security-opt": _append("host", "SecurityOpt"),
    "sysctl": _sysctl, "device": _device,
    "device-cgroup-rule": _append("host", "DeviceCgroupRules"), "gpus": _gpus,
    "pid": _set("host", "PidMode"), "ipc": _set("host", "IpcMode"), "uts": _set("host", "UTSMode"),
    "userns": _set("host", "UsernsMode"), "cgroupns": _set("host", "CgroupnsMode"),
    "cgroup-parent": _set("host", "CgroupParent"),
}
# Set on the container's endpoint: Docker takes them only on a user-defined network.
ENDPOINT_PARAMETERS = frozenset({"network-alias", "ip", "ip6", "link-local-ip"})
_ALIASES = {"e": "env", "l": "label", "u": "user", "w": "workdir", "h": "hostname",
            "m": "memory", "c": "cpu-shares", "v": "volume", "t": "tty", "i": "interactive",
            "net-alias": "network-alias", "dns-option": "dns-opt", "p": "publish",
            "P": "publish-all", "d": "detach", "a": "attach", "q": "quiet"}

# Flags the Docker CLI has that have no Engine API equivalent, or that kade keeps for itself.
NO_EQUIVALENT: dict[str, str] = {
    "env-file": "reads a file where the Docker CLI runs; put the variables in env",
    "label-file": "reads a file where the Docker CLI runs; put the labels in labels",
    "cidfile": "writes a file where the Docker CLI runs",
    "detach": "a Docker CLI option", "attach": "a Docker CLI option",
    "sig-proxy": "a Docker CLI option", "quiet": "a Docker CLI option",
    "disable-content-trust": "a Docker CLI option", "pull": "use container.docker.forcePullImage",
    "platform": "kade runs images built for this host",
    "name": "kade names containers after their task",
    "rm": "kade removes containers itself", "restart": "kade restarts tasks itself",
    "publish": "ports are kade's: use container.portMappings",
    "publish-all": "ports are kade's: use container.portMappings",
    "network": "use networks (or ipAddress.networkName)",
    "net": "use networks (or ipAddress.networkName)",
}


def canonical(key: str) -> str:
    key = key.strip()
    stripped = key.lstrip("-")
    return _ALIASES.get(stripped, stripped)


def parameter_problem(key: str, value: str) -> str | None:
    """Why `key`/`value` cannot be translated (None: it can), naming the key."""
    name = canonical(key)
    if name in NO_EQUIVALENT:
        return f"{key!r} is not supported: {NO_EQUIVALENT[name]}"
    if name not in PARAMETERS:
        return f"{key!r} is not a docker run option with an Engine API equivalent"
    try:
        PARAMETERS[name](value, Target())
    except ValueError as e:
        return f"{key}: {e}"
    return None


def apply_parameter(key: str, value: str, target: Target) -> None:
    """Write one parameter into `target`; ValueError names the problem."""
    why = parameter_problem(key, value)
    if why is not None:
        raise ValueError(why)
    PARAMETERS[canonical(key)](value, target)
