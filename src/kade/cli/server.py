"""`kade server`: the control plane of a cluster — API, catalog, routing tables, and (on the
leader) scheduler and deployer — without a node of its own. Agents (`kade agent`) join it
through its store API with a node token.

With `--data-dir` only, one server keeps the store in SQLite like `kade up` does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from kade.admission import ContainerPolicy
from kade.api.closing import closing_event
from kade.auth import MANAGEMENT_TOKEN_FILE, ensure_token_file
from kade.cli.control import ControlConfig, ControlPlane
from kade.cli.up import SHUTDOWN_GRACE, Server, deploy_files, listen, seed_kv
from kade.store import open_store

log = logging.getLogger("kade")

NODE_TOKEN_FILE = "node.token"  # in the data dir: what agents join with (role node)


@dataclass
class ServerConfig:
    data_dir: Path
    name: str
    api_addr: str = "127.0.0.1:7400"
    port_range: tuple[int, int] = (31000, 32000)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    api_hosts: list[str] = field(default_factory=list)
    cors_origins: list[str] = field(default_factory=list)
    policy: ContainerPolicy = field(default_factory=ContainerPolicy)
    deploy: list[Path] = field(default_factory=list)
    seed_kv: list[Path] = field(default_factory=list)


async def serve_server(cfg: ServerConfig) -> None:
    api_sock = listen(cfg.api_addr, "API")
    store = await open_store(cfg.data_dir)
    now = time.time()
    await ensure_token_file(store, cfg.data_dir / MANAGEMENT_TOKEN_FILE, role="admin",
                            description=f"management token of server {cfg.name}", now=now)
    await ensure_token_file(store, cfg.data_dir / NODE_TOKEN_FILE, role="node",
                            description=f"agents joining server {cfg.name}", now=now)
    stop = asyncio.Event()
    admin = APIRouter()

    @admin.post("/v1/admin/shutdown")
    async def shutdown() -> JSONResponse:
        stop.set()
        return JSONResponse({"message": "shutting down"})

    control = ControlPlane(store, ControlConfig(
        node_name=cfg.name, port_range=cfg.port_range, policy=cfg.policy,
        api_hosts=cfg.api_hosts, cors_origins=cfg.cors_origins), extra=[admin])
    server = Server(uvicorn.Config(
        control.app, log_level="warning", lifespan="off", access_log=False,
        ssl_certfile=cfg.tls_cert, ssl_keyfile=cfg.tls_key,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            workers = [*control.start(tg), *control.leader_loops(tg)]
            api = tg.create_task(server.serve(sockets=[api_sock]), name="api")
            await control.ready()
            log.info("kade server %s is up: API on %s://%s, data in %s; agents join with "
                     "--servers %s://%s --token-file %s", cfg.name,
                     "https" if cfg.tls_cert else "http", cfg.api_addr, cfg.data_dir,
                     "https" if cfg.tls_cert else "http", cfg.api_addr,
                     cfg.data_dir / NODE_TOKEN_FILE)
            if cfg.seed_kv:
                await seed_kv(store, cfg.seed_kv)
            if cfg.deploy:
                await deploy_files(store, cfg.deploy, cfg.policy)
            stopper = tg.create_task(stop.wait())
            await asyncio.wait({stopper, api, *workers}, return_when=asyncio.FIRST_COMPLETED)
            log.info("server %s shutting down", cfg.name)
            closing_event(control.app).set()
            for task in workers:
                task.cancel()
            server.should_exit = True
            stopper.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await store.close()
