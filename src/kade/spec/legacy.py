"""Marathon's older and other shapes, brought to the one kade reads, before validation.

Marathon 1.5 migrated apps written for 1.4 and before on its own (`ports`, `ipAddress`); kade
does the same at the door, so such a definition runs unchanged and is stored in today's shape.
What kade cannot run at all (pods, resident tasks and their persistent volumes, external
volumes) is refused here by name, rather than as a pile of unknown fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Docker's default network: where an `ipAddress` without a `networkName` puts the task
# (Marathon puts it on its configured default network).
DEFAULT_NETWORK = "bridge"

POD_REFUSAL = "pods are not supported: deploy each container as an app"


@dataclass
class Migrated:
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # reported as warnings
    problems: list[str] = field(default_factory=list)


def migrate(data: dict[str, Any]) -> Migrated:
    """`data` (a copy is changed) in today's shape, with what was done and what is refused."""
    out = Migrated(_without_nulls(data))
    _unsupported(out)
    if out.problems:
        return out
    _network_parameter(out)
    _ip_address(out)
    _docker_network(out)
    _ports(out)
    _uris(out)
    _dest_path(out)
    return out


# Maps of the user's own names: there a null value is a mistake to name, not a field left out.
_USER_MAPS = frozenset({"env", "labels"})


def _without_nulls(value: Any, key: str = "") -> Any:
    """Marathon reads a field set to null as a field left out, and definitions exported from it
    are full of them (`"cmd": null`, `"fetch": null`, `"labels": null`): so does kade."""
    if isinstance(value, dict):
        keep_nulls = key in _USER_MAPS
        return {k: _without_nulls(v, k) for k, v in value.items()
                if v is not None or keep_nulls}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _unsupported(m: Migrated) -> None:
    d = m.data
    if "containers" in d and isinstance(d["containers"], list):
        m.problems.append(f"containers: {POD_REFUSAL}")
        return
    if d.get("residency") is not None:
        m.problems.append("residency: resident tasks are not supported: kade replaces a task "
                          "anywhere; keep state in a hostPath volume or a Docker volume")
    container = d.get("container")
    if isinstance(container, dict) and "image" in container and "docker" not in container:
        m.problems.append("container.image: the container format of Marathon before 0.7 "
                          "(container.image, container.options) is not supported: write "
                          "container.docker.image (the image name, without docker:///)")
    env = d.get("env")
    for name, value in sorted(env.items()) if isinstance(env, dict) else []:
        if isinstance(value, dict) and "secret" in value:
            m.problems.append(f"env.{name}: secret references are not supported: set the "
                              "value, or render a file with a template (templates)")
    volumes = container.get("volumes") if isinstance(container, dict) else None
    for i, v in enumerate(volumes if isinstance(volumes, list) else []):
        if not isinstance(v, dict):
            continue
        where = f"container.volumes.{i}"
        if "persistent" in v:
            m.problems.append(f"{where}.persistent: persistent (local) volumes are not "
                              "supported: use hostPath with a host directory or a Docker "
                              "volume name")
        elif "external" in v:
            m.problems.append(f"{where}.external: external volumes are not supported: use "
                              "hostPath with a Docker volume name")
        elif "secret" in v:
            m.problems.append(f"{where}.secret: secret volumes are not supported: use a "
                              "template (templates) to render the file")


def _ip_address(m: Migrated) -> None:
    """`ipAddress` (Marathon ≤ 1.4, IP per task) → a `container` network and its ports (the
    network a BRIDGE or HOST `docker.network` names, as Marathon 1.5 migrates it)."""
    d = m.data
    ip = d.pop("ipAddress", None)
    if ip is None:
        return
    if not isinstance(ip, dict):
        m.problems.append("ipAddress: must be an object")
        return
    if d.get("networks"):
        m.problems.append("ipAddress: set networks or ipAddress, not both")
        return
    container = d.get("container")
    docker = container.get("docker") if isinstance(container, dict) else None
    if not isinstance(docker, dict):
        m.problems.append("ipAddress: an IP per task needs a Docker container "
                          "(container.docker.image); a command app runs on the host network")
        return
    legacy = docker.get("network")
    if legacy not in (None, "USER", "BRIDGE", "HOST"):
        m.problems.append(f"ipAddress: cannot be used with container.docker.network {legacy}")
        return
    network: dict[str, Any] = {"mode": "container",
                               "name": ip.get("networkName") or DEFAULT_NETWORK}
    if legacy in ("BRIDGE", "HOST"):  # Marathon reads these as asking for that network
        network = {"mode": _NETWORK_MODES[legacy]}
    if isinstance(ip.get("labels"), dict) and ip["labels"]:
        network["labels"] = ip["labels"]
    d["networks"] = [network]
    container = dict(container) if isinstance(container, dict) else {}
    docker = dict(docker)
    docker.pop("network", None)
    container["docker"] = docker
    if ip.get("groups"):
        m.notes.append("ipAddress.groups: network security groups do not apply, ignored")
    discovery = ip.get("discovery")
    found = discovery.get("ports") if isinstance(discovery, dict) else None
    has_mappings = container.get("portMappings") or docker.get("portMappings")
    if isinstance(found, list) and found and not has_mappings and legacy != "HOST":
        mappings = []
        for i, p in enumerate(found):
            if not isinstance(p, dict) or "number" not in p:
                m.problems.append(f"ipAddress.discovery.ports.{i}.number: is required")
                continue
            mapping = {"containerPort": p["number"], "protocol": p.get("protocol", "tcp")}
            for key in ("name", "labels"):
                if key in p:
                    mapping[key] = p[key]
            mappings.append(mapping)
        container["portMappings"] = mappings
    d["container"] = container


# `docker.network` (Marathon <= 1.4) and the `networks` mode each names
_NETWORK_MODES = {"HOST": "host", "BRIDGE": "container/bridge", "USER": "container"}
# `--network` values that are not the name of a user-defined Docker network
_DOCKER_MODES = ("host", "bridge", "none", "default")


def _network_parameter(m: Migrated) -> None:
    """`parameters: [{"key": "network", "value": "shop"}]` on a bridged app: with Marathon's
    Docker containerizer the last `--network` wins, so the task joins the user-defined Docker
    network `shop` (ports still published). That is kade's `container` network `shop`."""
    d = m.data
    container = d.get("container")
    docker = container.get("docker") if isinstance(container, dict) else None
    if not isinstance(container, dict) or not isinstance(docker, dict):
        return
    params = docker.get("parameters")
    if (not isinstance(params, list) or d.get("networks") or d.get("ipAddress") is not None
            or docker.get("network") not in (None, "BRIDGE", "USER")):
        return
    found = [(i, p) for i, p in enumerate(params) if isinstance(p, dict)
             and isinstance(p.get("key"), str) and isinstance(p.get("value"), str)
             and p["key"].strip().lstrip("-") in ("network", "net")]
    if len(found) != 1:
        return
    i, param = found[0]
    name = param["value"].strip()
    if not name or name in _DOCKER_MODES or name.startswith("container:"):
        return  # validation names the parameter and what to use instead
    d["networks"] = [{"mode": "container", "name": name}]
    docker = {k: v for k, v in docker.items() if k != "network"}
    docker["parameters"] = params[:i] + params[i + 1:]
    d["container"] = {**container, "docker": docker}
    m.notes.append(f"container.docker.parameters.{i}: {param['key']}={name}: the task joins "
                   f"the Docker network {name} (networks)")


def _docker_network(m: Migrated) -> None:
    """`container.docker.network` beside `networks`: Marathon refuses the mix; kade accepts it
    when both say the same, and refuses it naming both when they disagree (the app would
    otherwise run on a network its command was not written for)."""
    d = m.data
    container = d.get("container")
    docker = container.get("docker") if isinstance(container, dict) else None
    legacy = docker.get("network") if isinstance(docker, dict) else None
    networks = d.get("networks")
    if legacy is None or not isinstance(networks, list) or not networks:
        return
    first = networks[0]
    mode = first.get("mode", "host") if isinstance(first, dict) else None
    if _NETWORK_MODES.get(legacy) != mode:
        m.problems.append(f"container.docker.network: {legacy} disagrees with networks "
                          f"(mode {mode}): set networks only (container.docker.network is "
                          "the older way to choose the network)")


def _ports(m: Migrated) -> None:
    """`ports: [0, 0, 0]` (Marathon ≤ 1.4) → three `portDefinitions`."""
    d = m.data
    if "ports" not in d:
        return
    ports = d.pop("ports")
    if ports is None:
        return
    if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in ports):
        m.problems.append("ports: must be a list of port numbers")
        return
    definitions = [{"port": p} for p in ports]
    given = d.get("portDefinitions")
    if isinstance(given, list):
        if [p.get("port", 0) if isinstance(p, dict) else None for p in given] != ports:
            m.problems.append("ports: set portDefinitions or the older ports, not both")
        return
    if given is not None:
        return  # not a list: validation names the problem
    if _has_port_mappings(d):
        m.notes.append("ports: the app's ports are its container.portMappings; ignored")
        return
    d["portDefinitions"] = definitions


def _has_port_mappings(d: dict[str, Any]) -> bool:
    container = d.get("container")
    if not isinstance(container, dict):
        return False
    docker = container.get("docker")
    nested = docker.get("portMappings") if isinstance(docker, dict) else None
    return bool(container.get("portMappings") or nested)


ARCHIVES = (".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip")


def _uris(m: Migrated) -> None:
    """`uris: ["http://…/a.tgz"]` (before `fetch`) → `fetch`, archives extracted as Marathon
    did."""
    d = m.data
    uris = d.pop("uris", None)
    if uris is None:
        return
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        m.problems.append("uris: must be a list of URIs")
        return
    if d.get("fetch"):
        if uris:
            m.problems.append("uris: set fetch or the older uris, not both")
        return
    d["fetch"] = [{"uri": u, "extract": u.split("?")[0].lower().endswith(ARCHIVES)}
                  for u in uris]


def _dest_path(m: Migrated) -> None:
    """`fetch[].destPath` (Marathon's name) → `outputFile`: the file's name in the sandbox."""
    fetch = m.data.get("fetch")
    if not isinstance(fetch, list):
        return
    entries = []
    for i, entry in enumerate(fetch):
        if isinstance(entry, dict) and "destPath" in entry:
            entry = dict(entry)
            dest = entry.pop("destPath")
            if entry.setdefault("outputFile", dest) != dest:
                m.problems.append(f"fetch.{i}: set destPath or outputFile, not both")
        entries.append(entry)
    m.data["fetch"] = entries
