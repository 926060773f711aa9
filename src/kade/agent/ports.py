"""Host ports held by something other than kade's tasks: found before a task starts.

The scheduler knows which ports kade's own tasks hold, not what else runs on the machine. A
task given a port another process listens on cannot bind it and exits, and in the moment
between its start and its exit a health check reaches the other process and passes. So the
agent tries to bind each assigned port first (as a server would: SO_REUSEADDR, so that a
port in TIME_WAIT after a task stopped counts as free), on the address ports are published
on, with each protocol the port is for. A held port fails the start with the reason, and is
written to the node (`Node.ports_in_use`) so that the planner gives it to no other task;
the agent looks at such ports again now and then (nothing tells it when another process lets
go of a port) and frees them on the node once they bind.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kade import model
from kade.model import Node, Unreadable, decode
from kade.store.base import CasFailed, Store, StoreError

log = logging.getLogger("kade.agent")

RECHECK_INTERVAL = 15.0  # seconds between looks at ports held by other processes
_RETRIES = 20


@dataclass(frozen=True, slots=True)
class Held:
    """A port that did not bind: which, for which protocol, and the system's word for it."""

    port: int
    protocol: str  # tcp | udp
    error: str


def protocols(spec: str) -> list[str]:
    """Marathon's `tcp`, `udp`, `udp,tcp`: the protocols to bind, each once."""
    out = [p.strip() for p in spec.split(",") if p.strip() in ("tcp", "udp")]
    return list(dict.fromkeys(out)) or ["tcp"]


def try_bind(address: str, port: int, protocol: str) -> str | None:
    """None when `port` binds on `address` for `protocol`, else why not."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return "in use by another process"
            return e.strerror or str(e)
    return None


def held_ports(address: str, wanted: Iterable[tuple[int, str]]) -> list[Held]:
    """Of (port, protocols) pairs, those that do not bind on `address`."""
    out: list[Held] = []
    for port, spec in wanted:
        if port <= 0:
            continue
        for protocol in protocols(spec):
            why = try_bind(address, port, protocol)
            if why is not None:
                out.append(Held(port, protocol, why))
    return out


def free_again(address: str, ports: Sequence[int]) -> list[int]:
    """Of ports listed as held, those that now bind for both TCP and UDP (only their
    number is kept on the node, so both must be free)."""
    return [p for p in ports if all(try_bind(address, p, proto) is None
                                    for proto in ("tcp", "udp"))]


def describe(held: Sequence[Held], address: str) -> str:
    """The reason a start failed: `host port 31000/tcp on 127.0.0.1 is in use by another
    process`."""
    parts = [f"host port {h.port}/{h.protocol} on {address} is {h.error}"
             if h.error.startswith("in use") else
             f"host port {h.port}/{h.protocol} on {address} cannot be bound: {h.error}"
             for h in held]
    return "; ".join(parts) + ": the task is placed again on another port"


async def update_node(store: Store, name: str, *, add: Iterable[int] = (),
                      remove: Iterable[int] = ()) -> Node | None:
    """Add and remove ports of the node's `ports_in_use` (a compare-and-swap write: the
    record has other writers). None when the node is not registered or cannot be read."""
    key = model.node_key(name)
    add, remove = set(add), set(remove)
    for _ in range(_RETRIES):
        entry = await store.get(key)
        if entry is None:
            return None
        node = decode(entry, Node)
        if isinstance(node, Unreadable):
            return None
        ports = sorted((set(node.ports_in_use) | add) - remove)
        if ports == node.ports_in_use:
            return node
        new = node.model_copy(update={"ports_in_use": ports})
        try:
            await store.put(key, new.dump(), expect=entry.mod_revision)
        except CasFailed:
            continue
        return new
    return None


class PortGuard:
    """One node's view of its host ports that other processes hold, kept in its record."""

    def __init__(self, store: Store, node: str, address: str) -> None:
        self.store = store
        self.node = node
        self.address = address  # where task ports are published: the bind tests' address
        self.held: list[int] = []  # as last written to the node

    def registering(self, previous: Sequence[int]) -> list[int]:
        """What the node's record lists when the agent (re)registers: the ports an earlier
        agent saw held, less those that bind now."""
        free = free_again(self.address, previous)
        self.held = [p for p in previous if p not in free]
        return list(self.held)

    async def before_start(self, wanted: Iterable[tuple[int, str]]) -> str | None:
        """None when every (port, protocols) binds. Otherwise the held ports are written to
        the node first (the planner must know before it places the replacement that the
        failure asks for), and the reason the start fails is returned."""
        held = held_ports(self.address, wanted)
        if not held:
            return None
        await self._update(add=sorted({h.port for h in held}))
        return describe(held, self.address)

    async def run(self) -> None:
        """Look again at held ports now and then: nothing tells when another process lets go
        of one. Freed ones are given back to the planner."""
        while True:
            await asyncio.sleep(RECHECK_INTERVAL)
            free = free_again(self.address, self.held) if self.held else []
            if not free:
                continue
            try:
                await self._update(remove=free)
            except StoreError as e:
                log.warning("cannot update node %s: %s", self.node, e)
                continue
            log.info("host ports %s are free again", ", ".join(map(str, free)))

    async def _update(self, *, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        node = await update_node(self.store, self.node, add=add, remove=remove)
        if node is not None:
            self.held = list(node.ports_in_use)
