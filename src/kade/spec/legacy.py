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
    out = Migrated(dict(data))
    _unsupported(out)
    if out.problems:
        return out
    _ip_address(out)
    _ports(out)
    _uris(out)
    return out


def _unsupported(m: Migrated) -> None:
    d = m.data
    if "containers" in d and isinstance(d["containers"], list):
        m.problems.append(f"containers: {POD_REFUSAL}")
        return
    if d.get("residency") is not None:
        m.problems.append("residency: resident tasks are not supported: kade replaces a task "
                          "anywhere; keep state in a hostPath volume or a Docker volume")
    container = d.get("container")
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
    """`ipAddress` (Marathon ≤ 1.4, IP per task) → a `container` network and its ports."""
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
    if legacy not in (None, "USER"):
        m.problems.append(f"ipAddress: cannot be used with container.docker.network {legacy}")
        return
    name = ip.get("networkName") or DEFAULT_NETWORK
    network: dict[str, Any] = {"mode": "container", "name": name}
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
    if isinstance(found, list) and found and not has_mappings:
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
