"""`kade agent`: one node of a cluster — drivers, agent, DNS and router — following the
servers (`kade server`) through their store API with a node token. It never talks to the
cluster's store directly, and goes on with the next server when one stops answering.

Stopping it leaves its tasks and its router running; the next `kade agent` with the same
`--node` adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import uvicorn

from kade.api.node_api import ServerKeys, node_api
from kade.auth.tokens import write_secret_file
from kade.catalog.view import CatalogView
from kade.cli.node_side import ROUTER_TOKEN_FILE, NodeConfig, NodeSide
from kade.cli.up import Server, listen
from kade.client.remote_store import Refused, RemoteStore, Unreachable
from kade.metrics.cluster import disk_samples

log = logging.getLogger("kade")

FIRST_CONTACT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class AgentRoleConfig:
    servers: list[str]
    token: str
    node: NodeConfig
    cacert: Path | None = None


async def reach_servers(store: RemoteStore) -> int:
    """Wait until a server answers (an agent may start before its servers), saying why not."""
    attempt = 0
    while True:
        try:
            return await store.revision()
        except Unreachable as e:
            delay = FIRST_CONTACT_DELAYS[min(attempt, len(FIRST_CONTACT_DELAYS) - 1)]
            if attempt % 5 == 0:
                log.warning("%s; trying again", e)
            attempt += 1
            await asyncio.sleep(delay)


def start_listener(tg: asyncio.TaskGroup, cfg: NodeConfig, node: NodeSide, store: RemoteStore,
                   closing: asyncio.Event) -> Server | None:
    """The node listener (`--listen`): the servers' log and metrics queries, answered from
    this node's stores (kade.api.node_api); None when not asked for."""
    if not cfg.listen:
        return None
    assert node.logs is not None, "the node side is started"
    sock = listen(cfg.listen, "node listener")
    app = node_api(node.logs, cfg.node, ServerKeys(store), closing, metrics=node.metrics)
    server = Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                   timeout_graceful_shutdown=2))
    tg.create_task(server.serve(sockets=[sock]), name="node listener")
    log.info("node listener on %s (servers ask it for logs and metrics)", cfg.listener_url)
    return server


async def serve_agent(cfg: AgentRoleConfig) -> None:
    store = RemoteStore(cfg.servers, cfg.token,
                        cacert=str(cfg.cacert) if cfg.cacert else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    node: NodeSide | None = None
    closing = asyncio.Event()  # the node listener's streams end
    try:
        reach = asyncio.ensure_future(reach_servers(store))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({reach, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not reach.done():  # stopped before any server answered
            reach.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reach
            return
        try:
            reach.result()
        except Refused as e:
            raise SystemExit(f"kade agent: {e}") from None
        view = CatalogView(store)
        node = NodeSide(store, cfg.node, view)
        # the router follows the servers with the agent's own node token
        write_secret_file(cfg.node.router_dir / ROUTER_TOKEN_FILE, cfg.token)
        async with asyncio.TaskGroup() as tg:
            workers = [*await node.start(tg), tg.create_task(view.run(), name="catalog")]
            assert node.collector is not None
            # the disk under this node's data, for KadeDiskNearlyFull (kade.alerts.builtin)
            node.collector.extra = partial(disk_samples, {"kade": cfg.node.data_dir},
                                           {"node": cfg.node.node})
            listener = start_listener(tg, cfg.node, node, store, closing)
            await node.ready()
            await view.ready()
            watch_router = await node.start_router(tg)
            log.info("kade agent %s is up: servers %s, DNS on %s, driver %s, data in %s",
                     cfg.node.node, ", ".join(cfg.servers), cfg.node.dns_addr,
                     node.driver.name if node.driver else "-", cfg.node.data_dir)
            stopper = tg.create_task(stop.wait())
            await asyncio.wait({stopper, *workers}, return_when=asyncio.FIRST_COMPLETED)
            log.info("agent %s shutting down; tasks and the router keep running", cfg.node.node)
            closing.set()
            if listener is not None:
                listener.should_exit = True
            node.cancel()
            for task in workers:
                task.cancel()
            if watch_router is not None:
                watch_router.cancel()
            stopper.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if node is not None:
            await node.close()
        await store.close()
