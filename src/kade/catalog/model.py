"""The catalog: every task endpoint under its service name, as immutable values.

A Catalog is a snapshot; readers (DNS, the Consul API, the router) keep a reference to one
and never see it change under them. The live view swaps in a new one after each store batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["passing", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class Check:
    """A Consul-style health check of one instance (or of a node)."""

    id: str
    name: str
    status: Status
    output: str = ""
    type: str = ""  # Consul's check type: "http", "tcp", "script", "" for kade's own


@dataclass(frozen=True, slots=True)
class Instance:
    """One endpoint of a service: a task and one of its ports (Consul's service instance)."""

    id: str  # unique per task and port: "<task id>:<port index>"
    service: str
    task_id: str
    app_id: str
    node: str
    address: str
    port: int  # the host port; 0 for a task without ports
    port_index: int | None
    port_name: str | None
    tags: tuple[str, ...]
    meta: tuple[tuple[str, str], ...]  # sorted (key, value) pairs, kept hashable
    checks: tuple[Check, ...]

    @property
    def status(self) -> Status:
        """The worst status of its checks, as Consul aggregates them."""
        return worst(c.status for c in self.checks)

    @property
    def passing(self) -> bool:
        return self.status == "passing"


@dataclass(frozen=True, slots=True)
class CatalogNode:
    name: str
    address: str
    meta: tuple[tuple[str, str], ...] = ()
    down: bool = False  # its agent's lease ended: its tasks get no traffic


_RANK: dict[Status, int] = {"passing": 0, "warning": 1, "critical": 2}


def worst(statuses: Iterable[Status]) -> Status:
    result: Status = "passing"
    for s in statuses:
        if _RANK[s] > _RANK[result]:
            result = s
    return result


@dataclass(frozen=True)
class Catalog:
    """Services (name → instances sorted by id) and nodes, at one store revision."""

    datacenter: str = "dc1"
    services: Mapping[str, tuple[Instance, ...]] = field(default_factory=dict)
    nodes: Mapping[str, CatalogNode] = field(default_factory=dict)
    index: int = 0  # the store revision this snapshot reflects (0 when built by hand)
    problems: tuple[str, ...] = ()  # e.g. an invalid kade.service.name label, and what was used
    _lower_services: dict[str, str] = field(init=False, repr=False, compare=False)
    _lower_nodes: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Case-insensitive lookups are on the DNS hot path: index them once per snapshot.
        object.__setattr__(self, "_lower_services", {n.lower(): n for n in self.services})
        object.__setattr__(self, "_lower_nodes", {n.lower(): n for n in self.nodes})

    def instances(
        self, service: str, *, tags: Iterable[str] = (), passing: bool = False
    ) -> list[Instance]:
        """Instances of `service` carrying every tag in `tags` (case-insensitive, as Consul)."""
        wanted = [t.lower() for t in tags]
        out = []
        for inst in self.services.get(service, ()):
            if passing and not inst.passing:
                continue
            if wanted:
                have = {t.lower() for t in inst.tags}
                if not all(t in have for t in wanted):
                    continue
            out.append(inst)
        return out

    def service_tags(self, service: str) -> list[str]:
        """The union of its instances' tags, sorted (what /v1/catalog/services lists)."""
        tags: set[str] = set()
        for inst in self.services.get(service, ()):
            tags.update(inst.tags)
        return sorted(tags)

    def node_instances(self, node: str) -> list[Instance]:
        return [
            inst
            for name in sorted(self.services)
            for inst in self.services[name]
            if inst.node == node
        ]

    def find_service(self, name: str) -> str | None:
        """The service called `name`, ignoring case (DNS names are case-insensitive)."""
        if name in self.services:
            return name
        return self._lower_services.get(name.lower())

    def find_node(self, name: str) -> CatalogNode | None:
        node = self.nodes.get(name)
        if node is not None:
            return node
        key = self._lower_nodes.get(name.lower())
        return self.nodes[key] if key is not None else None
