"""The body of Docker's `POST /containers/create` for a task: pure, so tested without Docker.

Every container gets kade's defaults unless its app sets its own: `no-new-privileges` (a setuid
binary cannot raise a process's privileges), a pids limit (a fork bomb stays inside its
container) and capped `json-file` logs (a chatty task cannot fill the disk). Whether an app may
ask for host-reaching settings (privileged, cap-add, host namespaces…) is decided earlier, by
admission's container policy; this module only translates.
"""

from __future__ import annotations

import io
import math
import tarfile
from typing import Any

from kade.drivers.base import DriverError, LaunchSpec, Mount
from kade.spec.model import SUPPORTED_PARAMETERS

MIN_MEMORY_MIB = 6  # Docker refuses less
DEFAULT_PIDS_LIMIT = 1024
DEFAULT_LOG_CONFIG: dict[str, Any] = {
    "Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
NO_NEW_PRIVILEGES = "no-new-privileges"


def container_config(spec: LaunchSpec, *, publish_ip: str = "0.0.0.0") -> dict[str, Any]:
    """The body of `POST /containers/create` for a task. Pure; raises DriverError."""
    app = spec.app
    if app.image is None:
        raise DriverError("the docker driver needs container.docker.image")
    config: dict[str, Any] = {
        "Image": app.image,
        "Labels": spec.labels(),
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "StopTimeout": math.ceil(app.task_kill_grace_period_seconds),
    }
    if app.cmd is not None and app.args is not None:
        raise DriverError("cmd and args cannot both be set")
    if app.cmd is not None:  # Marathon: cmd runs in a shell, replacing the entrypoint
        config["Entrypoint"] = ["/bin/sh", "-c"]
        config["Cmd"] = [app.cmd]
    elif app.args is not None:  # Marathon: args go to the image's entrypoint
        config["Cmd"] = list(app.args)
    host: dict[str, Any] = {
        "Init": True,
        "RestartPolicy": {"Name": "no"},
        "Privileged": bool(app.container and app.container.docker
                           and app.container.docker.privileged),
    }
    config["HostConfig"] = host
    if app.cpus > 0:
        # A relative share, as Marathon gives Docker (--cpu-shares = cpus * 1024): a hard
        # quota would also throttle the container's start-up and idle-time bursts.
        host["CpuShares"] = max(int(app.cpus * 1024), 2)
    if app.mem > 0:
        if app.mem < MIN_MEMORY_MIB:
            raise DriverError(f"mem {app.mem:g} MiB is below Docker's minimum of "
                              f"{MIN_MEMORY_MIB} MiB")
        host["Memory"] = int(app.mem * 1024 * 1024)
    _networking(spec, publish_ip, config, host)
    binds = [f"{m.host_path}:{m.container_path}:{'ro' if m.read_only else 'rw'}"
             for m in spec.mounts]
    if app.container:
        binds += [f"{v.host_path}:{v.container_path}:{v.mode.lower()}"
                  for v in app.container.volumes]
    if binds:
        host["Binds"] = binds
    if app.container and app.container.docker:
        for p in app.container.docker.parameters:
            _apply_parameter(p.key, p.value, config, host)
    _defaults(host)
    return config


def link_archive(mounts: list[Mount]) -> bytes | None:
    """A tar of the symbolic links that mounts with `links` ask for, to be put into a
    created container at `/` before it starts (None: no links). Only the links: a missing
    parent directory is made by Docker (0755), an existing one keeps its owner and mode,
    and a file of the image at a link's path is replaced, as a bind mount would hide it."""
    entries = [(path, f"{m.container_path.rstrip('/')}/{name}")
               for m in mounts for path, name in m.links]
    if not entries:
        return None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, target in entries:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    return buf.getvalue()


def _defaults(host: dict[str, Any]) -> None:
    """kade's defaults, where the app did not choose (see the module's docstring)."""
    options = host.setdefault("SecurityOpt", [])
    if not any(o.startswith(NO_NEW_PRIVILEGES) for o in options):
        options.append(NO_NEW_PRIVILEGES)
    host.setdefault("PidsLimit", DEFAULT_PIDS_LIMIT)
    if "LogConfig" not in host:
        host["LogConfig"] = {"Type": DEFAULT_LOG_CONFIG["Type"],
                             "Config": dict(DEFAULT_LOG_CONFIG["Config"])}


def _networking(spec: LaunchSpec, publish_ip: str, config: dict[str, Any],
                host: dict[str, Any]) -> None:
    mode = spec.app.network_mode
    if mode == "host" or mode == "none":
        host["NetworkMode"] = mode
        return
    if mode == "container":
        name = spec.app.docker_network_name
        if not name:
            raise DriverError("networks[0].name: a container network needs a name")
        host["NetworkMode"] = name
    else:
        host["NetworkMode"] = "bridge"
    mappings = spec.app.port_mappings()
    if len(spec.host_ports) < len(mappings):
        raise DriverError(f"{len(mappings)} port mappings but {len(spec.host_ports)} host ports")
    exposed: dict[str, dict[str, str]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for m, host_port in zip(mappings, spec.host_ports, strict=False):
        for proto in m.protocol.split(","):
            key = f"{m.container_port or host_port}/{proto}"
            exposed[key] = {}
            bindings.setdefault(key, []).append(
                {"HostIp": publish_ip, "HostPort": str(host_port) if host_port else ""})
    config["ExposedPorts"] = exposed
    host["PortBindings"] = bindings


def _apply_parameter(key: str, value: str, config: dict[str, Any],
                     host: dict[str, Any]) -> None:
    if key not in SUPPORTED_PARAMETERS:
        raise DriverError(f"docker parameter {key!r} is not supported "
                          f"(supported: {', '.join(sorted(SUPPORTED_PARAMETERS))})")
    k, _, v = value.partition("=")
    if key == "label":
        if k.startswith("kade."):
            raise DriverError(f"label {k!r}: the kade. prefix is reserved")
        config["Labels"][k] = v
    elif key == "env":
        config["Env"].append(value)
    elif key in ("hostname", "user", "workdir", "stop-signal"):
        field = {"hostname": "Hostname", "user": "User", "workdir": "WorkingDir",
                 "stop-signal": "StopSignal"}[key]
        config[field] = value
    elif key in ("add-host", "cap-add", "cap-drop", "dns", "dns-search", "security-opt"):
        field = {"add-host": "ExtraHosts", "cap-add": "CapAdd", "cap-drop": "CapDrop",
                 "dns": "Dns", "dns-search": "DnsSearch", "security-opt": "SecurityOpt"}[key]
        host.setdefault(field, []).append(value)
    elif key == "ulimit":
        soft, _, hard = v.partition(":")
        try:
            limit = {"Name": k, "Soft": int(soft), "Hard": int(hard or soft)}
        except ValueError:
            raise DriverError(f"ulimit {value!r}: expected name=soft[:hard]") from None
        host.setdefault("Ulimits", []).append(limit)
    elif key == "log-driver":
        host.setdefault("LogConfig", {"Type": "", "Config": {}})["Type"] = value
    elif key == "log-opt":
        host.setdefault("LogConfig", {"Type": "", "Config": {}})["Config"][k] = v
    elif key == "sysctl":
        host.setdefault("Sysctls", {})[k] = v
    elif key == "read-only":
        host["ReadonlyRootfs"] = value.lower() in ("", "true", "1", "yes")
    elif key == "tmpfs":
        path, _, opts = value.partition(":")
        host.setdefault("Tmpfs", {})[path] = opts
    elif key in ("pid", "ipc", "uts", "userns"):
        field = {"pid": "PidMode", "ipc": "IpcMode", "uts": "UTSMode",
                 "userns": "UsernsMode"}[key]
        host[field] = value
    elif key == "device":  # host[:container[:permissions]], as `docker run --device`
        parts = value.split(":")
        if not parts[0].startswith("/") or len(parts) > 3:
            raise DriverError(f"device {value!r}: expected /dev/host[:/dev/container[:rwm]]")
        host.setdefault("Devices", []).append({
            "PathOnHost": parts[0], "PathInContainer": parts[1] if len(parts) > 1 else parts[0],
            "CgroupPermissions": parts[2] if len(parts) > 2 else "rwm"})
    elif key == "pids-limit":
        try:
            host["PidsLimit"] = int(value)
        except ValueError:
            raise DriverError(f"pids-limit {value!r}: expected a number") from None
