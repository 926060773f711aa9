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
from kade.spec.docker_parameters import Target, apply_parameter

MIN_MEMORY_MIB = 6  # Docker refuses less
DEFAULT_PIDS_LIMIT = 1024
# The engine's own copy of a container's output is what kade's log capture resumes from
# after kade was down (`kade.agent.logs`): 30 MB of json-file, ~160 bytes per 90-byte line,
# hold ~190,000 lines: 19 s of a task writing 10k lines/s, hours of a usual one. Lines
# rotated away while kade is down are lost to it; kade's own store keeps the rest.
DEFAULT_LOG_CONFIG: dict[str, Any] = {
    "Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
NO_NEW_PRIVILEGES = "no-new-privileges"
SANDBOX = "/mnt/mesos/sandbox"  # where a Docker app's fetched files are, as under Mesos


def container_config(spec: LaunchSpec, *, publish_ip: str = "0.0.0.0") -> dict[str, Any]:
    """The body of `POST /containers/create` for a task. Pure; raises DriverError."""
    app = spec.app
    if app.image is None:
        raise DriverError("the docker driver needs container.docker.image")
    config: dict[str, Any] = {
        "Image": app.image,
        "Labels": spec.labels(),
        "Env": [f"{k}={v}" for k, v in spec.env.items()]
               + ([f"MESOS_SANDBOX={SANDBOX}"] if app.fetch else []),
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
    _parameters(spec, config, host)
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


def _parameters(spec: LaunchSpec, config: dict[str, Any], host: dict[str, Any]) -> None:
    """`container.docker.parameters`, through the one table admission checks them with."""
    docker = spec.app.container.docker if spec.app.container else None
    if docker is None or not docker.parameters:
        return
    target = Target(config=config, host=host)
    for p in docker.parameters:
        try:
            apply_parameter(p.key, p.value, target)
        except ValueError as e:
            raise DriverError(f"docker parameter {e}") from None
    if target.endpoint:  # aliases, a fixed address…: on the container's network
        network = host.get("NetworkMode") or "default"
        config["NetworkingConfig"] = {"EndpointsConfig": {network: target.endpoint}}
