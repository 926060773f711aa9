"""`kade up`: the composition root. Store, scheduler, agent and API in one process.

Stopping it (Ctrl-C, SIGTERM) leaves the containers running: the data plane outlives the
control plane, and the next `kade up` adopts them. `kade down --stop-tasks` stops them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from rich.console import Console
from rich.logging import RichHandler

from kade import model
from kade.addresses import is_loopback, split_addr
from kade.admission import ContainerPolicy, admit_file
from kade.api.closing import closing_event
from kade.api.logs import logs_router
from kade.auth import MANAGEMENT_TOKEN_FILE, ensure_token_file
from kade.catalog.view import CatalogView
from kade.cli.control import ControlConfig, ControlPlane
from kade.cli.node_side import ROUTER_TOKEN_FILE, NodeConfig, NodeSide, endpoints
from kade.deployments import intent
from kade.domain_events.config import IngestConfig
from kade.spec import SpecError, load_document
from kade.store import open_store
from kade.store.base import CasFailed, LimitExceeded, Store

if TYPE_CHECKING:
    from kade.domain_events.ingest import Ingest
    from kade.domain_events.store import EventStore
    from kade.metrics.cluster import ClusterMetrics

log = logging.getLogger("kade")

SHUTDOWN_GRACE = 2.0  # seconds open streams and blocking queries get when kade stops


@dataclass
class UpConfig:
    data_dir: Path
    api_addr: str = "127.0.0.1:7400"
    node: str = field(default_factory=socket.gethostname)
    attributes: dict[str, str] = field(default_factory=dict)  # `--attr az=1a`: constraints, zones
    advertise: str = "127.0.0.1"
    driver: str = "auto"  # docker | exec | docker,exec | auto (exec, and docker when it answers)
    publish_ip: str = "0.0.0.0"
    port_range: tuple[int, int] = (31000, 32000)
    deploy: list[Path] = field(default_factory=list)
    dns_addr: str = "127.0.0.1:8600"
    domain: str = "consul"
    router: bool = True
    http_addr: str = "127.0.0.1:8080"
    router_admin_addr: str = "127.0.0.1:8081"
    access_log: str | None = None
    seed_kv: list[Path] = field(default_factory=list)
    tls_cert: Path | None = None  # the API's certificate and key (HTTPS)
    tls_key: Path | None = None
    api_hosts: list[str] = field(default_factory=list)  # names the API is reached by
    cors_origins: list[str] = field(default_factory=list)
    https_addr: str | None = None  # the router's HTTPS entrypoint
    https_cert_dir: Path | None = None  # its certificates as files (besides kade/tls/ in KV)
    router_admin_public: bool = False  # serve the router's admin listener off loopback
    policy: ContainerPolicy = field(default_factory=ContainerPolicy)  # deny by default
    events: IngestConfig | None = None  # the RabbitMQ broker domain events come from
    alert_webhooks: list[str] = field(default_factory=list)
    alertmanagers: list[str] = field(default_factory=list)
    builtin_alerts: bool = True
    metrics_interval: float = 10.0  # seconds between collections
    alert_interval: float = 10.0  # seconds between evaluations of the rules


def log_handler(console: Console) -> logging.Handler:
    """Rich's columns on a terminal; one plain line per record otherwise (a log file, a
    journal), so that a record, e.g. a task's failure and its reason, is found whole by grep
    rather than wrapped at 80 columns."""
    if console.is_terminal:
        return RichHandler(console=console, show_path=False)
    handler = logging.StreamHandler(console.file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def check_api_exposure(api_addr: str, cert: Path | None, key: Path | None,
                       insecure: bool) -> None:
    """The API listens beyond this machine only over TLS (tokens would cross the network in
    clear text otherwise), unless the operator says they know."""
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    for path in (cert, key):
        if path is not None and not path.is_file():
            raise ValueError(f"{path}: no such file")
    host, _ = split_addr(api_addr)
    if cert is None and not insecure and not is_loopback(host):
        raise ValueError(f"--api-addr {api_addr} is reachable from other machines: serve it "
                         "with --tls-cert/--tls-key, or pass --insecure-i-know")


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: `kade up` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def deploy_files(store: Store, paths: list[Path],
                       policy: ContainerPolicy | None = None) -> None:
    """Deploy app definitions from files or folders (what `make up` uses for the examples),
    through the same admission as the API.

    Apps that exist already are left as they are: a restart must not undo a `kade scale` or
    a later deploy. `kade deploy -f` updates them."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
        else:
            files.append(path)
    for file in files:
        try:
            admitted = admit_file(file.read_bytes(), file.name,
                                  policy=policy or ContainerPolicy())
        except (OSError, SpecError) as e:
            log.error("cannot deploy %s: %s", file, e)
            continue
        for item in admitted:
            try:
                await intent.put_app(store, item.app, time.time(), create_only=True)
                log.info("deployed %s from %s", item.app.id, file)
            except intent.Conflict:
                log.info("%s exists: left as it is (kade deploy -f %s updates it)",
                         item.app.id, file)
            except SpecError as e:  # e.g. no node runs its kind of task
                log.error("cannot deploy %s from %s: %s", item.app.id, file, e)


async def seed_kv(store: Store, paths: list[Path]) -> None:
    """Create the keys of JSON/YAML trees that do not exist yet; existing keys keep their
    value, so changes made since survive a restart."""
    from kade.cli.kv import flatten
    from kade.templates import encode_kv_value

    for path in paths:
        try:
            pairs = list(flatten(load_document(path.read_text(), path.name)))
        except (OSError, SpecError, ValueError) as e:
            log.error("cannot seed KV from %s: %s", path, e)
            continue
        created = 0
        for key, value in pairs:
            try:
                await store.put(model.KV + key, encode_kv_value(value), expect=0)
                created += 1
            except CasFailed:
                pass  # it exists: its value is kept
            except LimitExceeded as e:
                log.error("cannot seed KV key %s from %s: %s", key, path, e)
        log.info("seeded %d of %d keys from %s", created, len(pairs), path)


def listen(addr: str, what: str) -> socket.socket:
    """Bind `addr` before anything starts: a port in use fails `kade up` at once, saying so."""
    host, port = split_addr(addr)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SystemExit(f"kade: cannot listen on {addr} for the {what}: {e.strerror} "
                         "(is another kade running? choose another address)") from None
    sock.listen(2048)
    return sock


def node_config(cfg: UpConfig) -> NodeConfig:
    return NodeConfig(
        data_dir=cfg.data_dir, node=cfg.node, advertise=cfg.advertise, driver=cfg.driver,
        publish_ip=cfg.publish_ip, attributes=dict(cfg.attributes), policy=cfg.policy,
        dns_addr=cfg.dns_addr,
        domain=cfg.domain, router=cfg.router, http_addr=cfg.http_addr,
        router_admin_addr=cfg.router_admin_addr, access_log=cfg.access_log,
        https_addr=cfg.https_addr, https_cert_dir=cfg.https_cert_dir,
        router_admin_public=cfg.router_admin_public,
        api_url=f"{'https' if cfg.tls_cert else 'http'}://{cfg.api_addr}",
        api_cacert=cfg.tls_cert, metrics_interval=cfg.metrics_interval)


async def open_domain_events(cfg: UpConfig, view: CatalogView
                             ) -> tuple[EventStore, Ingest | None, APIRouter]:
    """The domain-event store, its consumer of RabbitMQ (when a broker is configured; a
    broker named NAME.service.DOMAIN is found in the catalog), and its API."""
    from kade.api.domain_events import domain_events_router
    from kade.domain_events.ingest import Ingest
    from kade.domain_events.store import EventStore

    events = await EventStore(cfg.data_dir).open()
    ingest = None
    if cfg.events is not None:
        def resolve(name: str) -> str | None:
            found = endpoints(view.catalog).get(name)
            return f"{found[0].address}:{found[0].port}" if found else None

        ingest = Ingest(events, cfg.events, resolve=resolve, domain=cfg.domain)
        view.on_change(lambda _catalog, _changed: ingest.endpoints_changed())
    return events, ingest, domain_events_router(
        events, broker=ingest.state if ingest is not None else None)


def monitor(control: ControlPlane, node: NodeSide, cfg: UpConfig) -> ClusterMetrics:
    """Metrics and alerts in one process: the node's metrics store answers the query API,
    what the control plane knows is written beside the tasks' samples, rules are evaluated
    on it (docs/monitoring.md)."""
    from kade.alerts.notify import Dispatcher
    from kade.metrics.cluster import METRICS, ClusterMetrics

    def metadata() -> dict[str, tuple[str, str]]:
        meta = node.collector.metadata() if node.collector is not None else {}
        meta.update({name: (kind, text) for name, kind, text in METRICS})
        return meta

    external = f"{'https' if cfg.tls_cert else 'http'}://{cfg.api_addr}"
    control.monitor(node.metrics, metadata,
                    Dispatcher(webhooks=cfg.alert_webhooks, alertmanagers=cfg.alertmanagers,
                               external_url=external),
                    builtin=cfg.builtin_alerts, interval=cfg.alert_interval)
    return ClusterMetrics(control.store, data_dirs=lambda: {"kade": cfg.data_dir})


async def serve(cfg: UpConfig) -> None:
    api_sock = listen(cfg.api_addr, "API")
    store = await open_store(cfg.data_dir)
    await ensure_token_file(store, cfg.data_dir / MANAGEMENT_TOKEN_FILE, role="admin",
                            description="management token of kade up", now=time.time())
    ncfg = node_config(cfg)
    ncfg.router_dir.mkdir(mode=0o700, exist_ok=True)
    await ensure_token_file(store, ncfg.router_dir / ROUTER_TOKEN_FILE, role="node",
                            description=f"router {cfg.node}-router", now=time.time())
    stop = asyncio.Event()
    stop_tasks = False

    admin = APIRouter()

    @admin.get("/v1/processes")
    async def processes() -> dict[str, object]:
        """The processes kade up looks after, and how they fared."""
        return node.processes()

    @admin.post("/v1/admin/shutdown")
    async def shutdown(stopTasks: bool = False) -> JSONResponse:  # noqa: N803 (API name)
        nonlocal stop_tasks
        stop_tasks = stopTasks
        stop.set()
        return JSONResponse({"message": "shutting down", "stopTasks": stopTasks})

    control = ControlPlane(store, ControlConfig(
        node_name=cfg.node, port_range=cfg.port_range, policy=cfg.policy,
        api_hosts=cfg.api_hosts, cors_origins=cfg.cors_origins), extra=[admin])
    node = NodeSide(store, ncfg, control.view)
    cluster_metrics = monitor(control, node, cfg)
    domain_events, ingest, events_api = await open_domain_events(cfg, control.view)
    control.app.include_router(events_api)
    server = Server(uvicorn.Config(
        control.app, log_level="warning", lifespan="off", access_log=False,
        ssl_certfile=cfg.tls_cert, ssl_keyfile=cfg.tls_key,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            workers = [*await node.start(tg), *control.start(tg),
                       tg.create_task(cluster_metrics.mirror.run(), name="cluster metrics"),
                       *(tg.create_task(coro, name=name)
                         for name, coro in control.leader_loops().items())]
            assert node.logs is not None  # open once started: the API reads its lines
            control.app.include_router(logs_router(node.logs))
            assert node.collector is not None
            node.collector.extra = cluster_metrics.samples  # apps, tasks, nodes, disks
            if ingest is not None:
                workers.append(tg.create_task(ingest.run(), name="domain events"))
            api = tg.create_task(server.serve(sockets=[api_sock]), name="api")
            await node.ready()
            await control.ready()
            watch_router = await node.start_router(tg)
            log.info("kade is up: API on %s://%s, DNS on %s, node %s, driver %s, data in %s",
                     "https" if cfg.tls_cert else "http", cfg.api_addr, cfg.dns_addr, cfg.node,
                     node.driver.name if node.driver else "-", cfg.data_dir)
            log.info("web interface: %s://%s/ui/ (a one-time sign-in link: `kade ui`)",
                     "https" if cfg.tls_cert else "http", cfg.api_addr)
            if cfg.seed_kv:
                await seed_kv(store, cfg.seed_kv)
            if cfg.deploy:
                await deploy_files(store, cfg.deploy, cfg.policy)
            stopper = tg.create_task(stop.wait())
            await asyncio.wait({stopper, api, *workers}, return_when=asyncio.FIRST_COMPLETED)
            log.info("shutting down%s", " and stopping every task" if stop_tasks else
                     "; tasks and the router keep running")
            closing_event(control.app).set()  # streams end, blocking queries answer now
            for task in workers:
                task.cancel()
            if watch_router is not None:
                watch_router.cancel()
            node.cancel()
            if stop_tasks:
                await node.stop_tasks()
            server.should_exit = True
            stopper.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await node.close()
        await domain_events.close()
        await store.close()
