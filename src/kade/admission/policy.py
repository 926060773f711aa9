"""The container policy: what an app may ask of the host, decided by the server, deny by default.

kade runs as root and whoever may deploy an app must not thereby own the machine. Everything
that reaches past the container (privileged mode, added capabilities, host namespaces,
unconfined seccomp/AppArmor, devices, sysctls, host paths, the Docker socket, command apps as
root) is refused unless the operator opened it with a `kade up` flag; each refusal names the
field and the flag. docs/app-spec.md has the table.

Host paths are judged as written (normalized) and as they resolve now (symlinks followed):
both must lie inside an allowed directory. A symlink made later is a task for the host's
owner; the allowed directories should not be writable by those who deploy.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Callable
from dataclasses import dataclass

from kade.spec.docker_parameters import canonical
from kade.spec.model import AppSpec

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a Docker named volume
_SAFE_SECURITY_OPTS = re.compile(
    r"^no-new-privileges(?:[=:]true)?$|^apparmor[=:](?!unconfined$)[A-Za-z0-9_.\-/]+$")
_IPC_PRIVATE = frozenset({"", "none", "private", "shareable"})


@dataclass(frozen=True)
class ContainerPolicy:
    """What the server lets apps ask for. The defaults deny everything that reaches the host."""

    allow_privileged: bool = False
    allow_caps: frozenset[str] = frozenset()  # capability names without CAP_; "ALL": any
    allow_host_namespaces: bool = False  # pid/ipc/uts/userns of the host or another container
    allow_unconfined: bool = False  # security-opt beyond no-new-privileges and AppArmor profiles
    allow_devices: bool = False
    allow_sysctls: bool = False
    allow_host_paths: tuple[str, ...] = ()  # directories whose insides may be mounted
    allow_docker_socket: bool = False
    allow_root_commands: bool = False  # command apps (no image) as root on the host

    @classmethod
    def permissive(cls) -> ContainerPolicy:
        """Everything allowed: for tests of what the driver does with such a spec."""
        return cls(allow_privileged=True, allow_caps=frozenset({"ALL"}),
                   allow_host_namespaces=True, allow_unconfined=True, allow_devices=True,
                   allow_sysctls=True, allow_host_paths=("/",), allow_docker_socket=True,
                   allow_root_commands=True)


def capability(name: str) -> str:
    """`cap_net_admin`, `CAP_NET_ADMIN`, `net_admin` → `NET_ADMIN`."""
    name = name.strip().upper()
    return name.removeprefix("CAP_")


def _refused(where: str, what: str, flag: str) -> str:
    return f"{where}: {what} refused by this server (start kade with {flag})"


def docker_socket_groups() -> frozenset[int]:
    """The groups whose members may use the Docker socket (and so are root in effect)."""
    gids = set()
    for path in DOCKER_SOCKETS:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_mode & 0o060:
            gids.add(st.st_gid)
    return frozenset(gids)


def check_policy(app: AppSpec, policy: ContainerPolicy, *,
                 realpath: Callable[[str], str] = os.path.realpath,
                 socket_groups: Callable[[], frozenset[int]] = docker_socket_groups
                 ) -> list[str]:
    """Every way `app` asks for more than `policy` allows, as `field: message (flag)`.

    `realpath` and `socket_groups` look at this host; tests give plain values."""
    problems: list[str] = []
    docker = app.container.docker if app.container else None
    if docker is not None and docker.privileged and not policy.allow_privileged:
        problems.append(_refused("container.docker.privileged", "privileged containers are",
                                 "--allow-privileged"))
    for i, param in enumerate(docker.parameters if docker else []):
        where = f"container.docker.parameters.{i} ({param.key}={param.value})"
        problems.extend(_check_parameter(where, canonical(param.key), param.value, policy,
                                         realpath))
    for i, volume in enumerate(app.container.volumes if app.container else []):
        if ":" in volume.container_path or "," in volume.container_path:
            # Docker splits a bind at ':': a path holding one could shift the fields
            problems.append(f"container.volumes.{i}.containerPath: must not contain ':' or ','")
        problems.extend(_check_host_path(f"container.volumes.{i}.hostPath", volume.host_path,
                                         policy, realpath))
    for i, f in enumerate(app.fetch):  # kade reads the file, as root: the host path is judged
        local = f.uri[len("file://"):] if f.uri.lower().startswith("file://") else f.uri
        if local.startswith("/"):
            problems.extend(_check_host_path(f"fetch.{i}.uri", local.split("?")[0], policy,
                                             realpath))
    network = app.docker_network_name or ""
    if network.startswith("container:") and not policy.allow_host_namespaces:
        problems.append(_refused("networks.0.name", "joining another container's network "
                                 "namespace is", "--allow-host-namespaces"))
    if app.image is None and app.user is not None:
        if _is_root(app.user):  # root reaches everything: one flag says so
            if not policy.allow_root_commands:
                problems.append(_refused("user", f"running a command app as {app.user!r} on "
                                         "the host is", "--allow-root-commands"))
        elif not policy.allow_docker_socket and _groups(app.user) & socket_groups():
            problems.append(_refused("user", f"{app.user!r} may use the Docker socket, and so "
                                     "the host; running a command app as it is",
                                     "--allow-docker-socket"))
    return problems


def _check_parameter(where: str, key: str, value: str, policy: ContainerPolicy,
                     realpath: Callable[[str], str]) -> list[str]:
    if key == "privileged":
        if value.strip().lower() in ("false", "0", "no", "off") or policy.allow_privileged:
            return []
        return [_refused(where, "privileged containers are", "--allow-privileged")]
    if key == "volume":  # host:container[:options], or a Docker volume name
        host_path, _, rest = value.partition(":")
        if not rest:
            return []  # an anonymous volume: nothing of the host
        return _check_host_path(where, host_path, policy, realpath)
    if key == "mount":
        return _check_mount(where, value, policy, realpath)
    if key in ("volumes-from", "cgroupns", "cgroup-parent"):
        if key == "cgroupns" and value.strip().lower() == "private":
            return []
        what = {"volumes-from": "mounting another container's volumes (and its host paths) is",
                "cgroupns": "the host's cgroup namespace is",
                "cgroup-parent": "placing the container in another cgroup is"}[key]
        if policy.allow_host_namespaces:
            return []
        return [_refused(where, what, "--allow-host-namespaces")]
    if key in ("device-cgroup-rule", "gpus") and not policy.allow_devices:
        return [_refused(where, "host devices are", "--allow-devices")]
    if key == "cap-add":
        cap = capability(value)
        if not cap:
            return [f"{where}: names no capability"]
        if "ALL" in policy.allow_caps or (cap != "ALL" and cap in policy.allow_caps):
            return []
        return [_refused(where, f"adding the capability {cap} is", f"--allow-caps {cap}")]
    if key in ("pid", "uts", "userns", "ipc"):
        mode = value.strip().lower()
        if key == "ipc" and mode in _IPC_PRIVATE:
            return []
        if mode != "host" and not (key in ("pid", "ipc") and mode.startswith("container:")):
            allowed = "host, container:<name>" if key in ("pid", "ipc") else "host"
            extra = ", private, none, shareable" if key == "ipc" else ""
            return [f"{where}: {value!r} is not a {key} mode ({allowed}{extra})"]
        if policy.allow_host_namespaces:
            return []
        return [_refused(where, f"sharing the {key} namespace of the host or another "
                                "container is", "--allow-host-namespaces")]
    if key == "security-opt":
        if _SAFE_SECURITY_OPTS.match(value.strip()) or policy.allow_unconfined:
            return []
        return [_refused(where, "loosening seccomp, AppArmor, SELinux or no-new-privileges is",
                         "--allow-unconfined")]
    if key == "device" and not policy.allow_devices:
        return [_refused(where, "host devices are", "--allow-devices")]
    if key == "sysctl" and not policy.allow_sysctls:
        return [_refused(where, "kernel parameters (sysctl) are", "--allow-sysctls")]
    if key == "label" and value.partition("=")[0].startswith("kade."):
        return [f"{where}: the label prefix kade. is reserved for kade's own labels"]
    return []


def _check_mount(where: str, value: str, policy: ContainerPolicy,
                 realpath: Callable[[str], str]) -> list[str]:
    """A bind's source is a host path; a volume's `device=` option binds one too."""
    opts = [item.partition("=") for item in value.split(",")]
    kind = next((v for k, _, v in opts if k.strip().lower() == "type"), "volume")
    problems = []
    for k, _, v in opts:
        k = k.strip().lower()
        if kind == "bind" and k in ("source", "src"):
            problems += _check_host_path(where, v.strip(), policy, realpath)
        elif k == "volume-opt" and v.partition("=")[0] == "device":
            device = v.partition("=")[2]
            problems += _check_host_path(where, device, policy, realpath) if device.startswith(
                "/") else [f"{where}: the volume option device must be an absolute host path"]
    return problems


def _check_host_path(where: str, path: str, policy: ContainerPolicy,
                     realpath: Callable[[str], str]) -> list[str]:
    if not path.startswith("/"):
        if _VOLUME_NAME.match(path):
            return []  # a Docker named volume, not a place on the host
        return [f"{where}: {path!r} must be an absolute host path or a Docker volume name"]
    if ".." in path.split("/"):
        return [f"{where}: {path!r} must not contain '..'"]
    if ":" in path or "," in path:
        return [f"{where}: {path!r} must not contain ':' or ','"]
    written = os.path.normpath(path)
    if written.startswith("//"):
        written = "/" + written.lstrip("/")
    resolved = os.path.normpath(realpath(written))
    problems = []
    sockets = {os.path.normpath(s) for s in DOCKER_SOCKETS} | {
        os.path.normpath(realpath(s)) for s in DOCKER_SOCKETS}
    exposed = sorted(s for s in sockets for p in (written, resolved) if _within(s, p))
    if exposed and not policy.allow_docker_socket:
        problems.append(_refused(
            where, f"{path!r} gives the container the Docker socket ({exposed[0]}), and so "
            "the host; it is", "--allow-docker-socket"))
    socket_itself = written in sockets and resolved in sockets
    if socket_itself and policy.allow_docker_socket:
        return problems
    roots = [os.path.normpath(r) for r in policy.allow_host_paths]
    roots += [os.path.normpath(realpath(r)) for r in policy.allow_host_paths]
    if not (any(_within(written, r) for r in roots) and any(_within(resolved, r) for r in roots)):
        shown = path if written == resolved else f"{path} (resolves to {resolved})"
        problems.append(_refused(where, f"the host path {shown} is outside the allowed "
                                        "directories and is", f"--allow-host-paths {resolved}"))
    return problems


def _within(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def _is_root(user: str) -> bool:
    name = user.strip().split(":")[0]
    if name in ("root", "0"):
        return True
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError, OverflowError):
        return False
    return entry.pw_uid == 0


def _groups(user: str) -> set[int]:
    name = user.strip().split(":")[0]
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError, OverflowError):
        return set()
    return {entry.pw_gid, *os.getgrouplist(entry.pw_name, entry.pw_gid)}


def command_user(policy: ContainerPolicy, *, euid: int | None = None) -> str | None:
    """The user a command app without `user` runs as: kade's own, unless kade is root and root
    commands are not allowed; then `nobody`."""
    if (os.geteuid() if euid is None else euid) == 0 and not policy.allow_root_commands:
        return "nobody"
    return None
