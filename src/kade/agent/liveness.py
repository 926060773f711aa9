"""A node's liveness: `alive/<node>` under a lease the agent keeps alive.

When the agent dies, or cannot reach the store for longer than the lease's time to live, the
lease ends and the key goes — a delete event every server sees at once, with no polling and no
clock comparison between machines. The node's record (`nodes/<node>`: attributes, resources)
stays, so the node is shown as down, not forgotten. An agent that comes back puts the key
again under a new lease. A clean stop leaves the lease to run out: an agent restarted within
the time to live (an upgrade of kade itself) is never seen down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kade import model
from kade.store.base import LeaseExpired, Store, StoreError

log = logging.getLogger("kade.agent")

TTL = 10.0  # seconds without a keepalive before a node counts as down


class Liveness:
    def __init__(self, store: Store, node: str, *, ttl: float = TTL,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.node = node
        self.ttl = ttl
        self.clock = clock
        self.lease = 0
        self.alive = asyncio.Event()  # set while the key is believed to be in the store

    async def _announce(self) -> None:
        self.lease = await self.store.grant(self.ttl)
        alive = model.Alive(node=self.node, since=self.clock(), lease=self.lease)
        await self.store.put(model.alive_key(self.node), alive.dump(), lease=self.lease)
        self.alive.set()

    async def run(self) -> None:
        """Announce the node, then keep it alive; re-announce after a lease that ended."""
        while True:
            try:
                if not self.alive.is_set():
                    await self._announce()
                    log.info("node %s announced alive (lease %d, %g s)", self.node,
                             self.lease, self.ttl)
                await asyncio.sleep(self.ttl / 3)
                await self.store.keepalive(self.lease)
            except LeaseExpired:
                log.warning("node %s: its lease ended (the servers saw it down); "
                            "announcing it again", self.node)
                self.alive.clear()
            except StoreError as e:
                log.warning("node %s: keepalive failed (%s); retrying", self.node, e)
                await asyncio.sleep(min(1.0, self.ttl / 10))
