"""`kade server`: the control plane of a cluster — API, catalog, routing tables, and (on the
leader) scheduler and deployer — without a node of its own. Agents (`kade agent`) join it
through its store API with a node token.

The store is etcd (`--etcd`), shared by every server: each answers the API, and the one the
election chose runs the scheduler and the deployer, its writes fenced (docs/cluster.md). With
`--data-dir` only, one server keeps the store in SQLite like `kade up` does.

Logs and metrics queries fan out to the nodes (kade.fanout). Each server also keeps the
cluster's own series (apps, tasks, deployments, nodes up, its disk) in a metrics store under
its data dir, so that whichever server leads has their history; the leader evaluates the
alert rules over them and every node's (docs/monitoring.md).
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
from kade.alerts.notify import Dispatcher
from kade.api.closing import closing_event
from kade.api.logs import logs_router
from kade.api.servers import ELECTION, candidate_value
from kade.auth import MANAGEMENT_TOKEN_FILE, ensure_token_file
from kade.auth.assertions import ServerKey
from kade.cli.control import ControlConfig, ControlPlane
from kade.cli.up import SHUTDOWN_GRACE, Server, deploy_files, listen, seed_kv
from kade.logs.fanout import FanOut, publish_key
from kade.metrics.cluster import METRICS, ClusterMetrics
from kade.metrics.collector import OWN_METRICS, TASK_METRICS
from kade.metrics.remote import NodeMetrics
from kade.metrics.tsdb import TSDB
from kade.store import StoreError, open_store
from kade.store.election import Election
from kade.store.etcd import NAMESPACE as ETCD_PREFIX

log = logging.getLogger("kade")

NODE_TOKEN_FILE = "node.token"  # in the data dir: what agents join with (role node)
LEADER_TTL = 3.0  # seconds: a leader that dies is followed by another within about this


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
    etcd: list[str] = field(default_factory=list)  # endpoints; none: SQLite in data_dir
    leader_ttl: float = LEADER_TTL
    etcd_prefix: str = ETCD_PREFIX  # kade's keys in etcd: several clusters can share one
    alert_webhooks: list[str] = field(default_factory=list)
    alertmanagers: list[str] = field(default_factory=list)
    builtin_alerts: bool = True
    metrics_interval: float = 10.0  # seconds between writes of the cluster's series
    alert_interval: float = 10.0  # seconds between evaluations of the rules


def monitor(control: ControlPlane, cfg: ServerConfig, source: NodeMetrics) -> ClusterMetrics:
    """The query API over this server's series and every node's, alert rules evaluated on
    them while leading, and the cluster's series this server writes (with `server=<name>`
    on its disk's, the nodes' disks having `node=`)."""
    def metadata() -> dict[str, tuple[str, str]]:
        meta = {name: (kind, text) for name, _, kind, text in TASK_METRICS}
        meta.update({name: (kind, text) for name, kind, text in (*OWN_METRICS, *METRICS)})
        return meta

    external = f"{'https' if cfg.tls_cert else 'http'}://{cfg.api_addr}"
    control.monitor(source, metadata,
                    Dispatcher(webhooks=cfg.alert_webhooks, alertmanagers=cfg.alertmanagers,
                               external_url=external),
                    builtin=cfg.builtin_alerts, interval=cfg.alert_interval)
    return ClusterMetrics(control.store, data_dirs=lambda: {"kade": cfg.data_dir},
                          disk_labels={"server": cfg.name})


async def serve_server(cfg: ServerConfig) -> None:
    api_sock = listen(cfg.api_addr, "API")
    cfg.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        store = await open_store(cfg.data_dir, etcd=cfg.etcd or None, namespace=cfg.etcd_prefix)
    except StoreError as e:
        raise SystemExit(f"kade server: {e}") from None
    now = time.time()
    await ensure_token_file(store, cfg.data_dir / MANAGEMENT_TOKEN_FILE, role="admin",
                            description=f"management token of server {cfg.name}", now=now)
    await ensure_token_file(store, cfg.data_dir / NODE_TOKEN_FILE, role="node",
                            description=f"agents joining server {cfg.name}", now=now)
    stop = asyncio.Event()
    scheme = "https" if cfg.tls_cert else "http"
    admin = APIRouter()

    @admin.post("/v1/admin/shutdown")
    async def shutdown() -> JSONResponse:
        stop.set()
        return JSONResponse({"message": "shutting down"})

    # log and metrics queries fan out to the nodes, each request signed with this server's key
    key = ServerKey(cfg.name)
    await publish_key(store, key, now)
    fanout = FanOut(store, key)
    control = ControlPlane(store, ControlConfig(
        node_name=cfg.name, port_range=cfg.port_range, policy=cfg.policy,
        api_hosts=cfg.api_hosts, cors_origins=cfg.cors_origins),
        extra=[admin, logs_router(fanout)])
    metrics = TSDB(cfg.data_dir / "metrics")
    await asyncio.to_thread(metrics.open)
    cluster_metrics = monitor(control, cfg, NodeMetrics(fanout, metrics))
    server = Server(uvicorn.Config(
        control.app, log_level="warning", lifespan="off", access_log=False,
        ssl_certfile=cfg.tls_cert, ssl_keyfile=cfg.tls_key,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            election = Election(store, ELECTION, ttl=cfg.leader_ttl)
            leadership = tg.create_task(
                control.lead(election, candidate_value(cfg.name, f"{scheme}://{cfg.api_addr}"),
                             stop),
                name="leadership")
            workers = [*control.start(tg), leadership,
                       tg.create_task(cluster_metrics.mirror.run(), name="cluster metrics"),
                       tg.create_task(cluster_metrics.keep(metrics, cfg.metrics_interval),
                                      name="cluster metrics writer"),
                       tg.create_task(metrics.run(), name="metrics retention")]
            api = tg.create_task(server.serve(sockets=[api_sock]), name="api")
            await control.ready()
            log.info("kade server %s is up: API on %s://%s, store %s; agents join with "
                     "--servers %s://%s --token-file %s", cfg.name, scheme, cfg.api_addr,
                     f"etcd {','.join(cfg.etcd)}" if cfg.etcd else f"in {cfg.data_dir}",
                     scheme, cfg.api_addr, cfg.data_dir / NODE_TOKEN_FILE)
            log.info("web interface: %s://%s/ui/ (a one-time sign-in link: `kade ui`)",
                     scheme, cfg.api_addr)
            if cfg.seed_kv:
                await seed_kv(store, cfg.seed_kv)
            if cfg.deploy:
                await deploy_files(store, cfg.deploy, cfg.policy)
            stopper = tg.create_task(stop.wait())
            await asyncio.wait({stopper, api, *workers}, return_when=asyncio.FIRST_COMPLETED)
            log.info("server %s shutting down", cfg.name)
            stop.set()  # a leader resigns: the next server leads at once
            closing_event(control.app).set()
            await asyncio.wait([leadership], timeout=5)
            for task in workers:
                task.cancel()
            server.should_exit = True
            stopper.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await fanout.close()
        await asyncio.to_thread(metrics.close)
        await store.close()
