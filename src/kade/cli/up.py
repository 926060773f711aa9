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
from kade.admission import ContainerPolicy, admit_file, command_user
from kade.agent.agent import Agent, AgentConfig
from kade.api.app import create_app
from kade.api.closing import closing_event
from kade.api.consul_catalog import catalog_router
from kade.api.consul_kv import kv_router
from kade.api.routing import Routing, routing_router
from kade.api.security import SecurityConfig
from kade.auth import MANAGEMENT_TOKEN_FILE, ensure_token_file
from kade.catalog.model import Catalog
from kade.catalog.view import CatalogView
from kade.cli.router_proc import ensure_router, stop_router
from kade.cli.supervise import RouterSupervisor, StartFailed
from kade.deployments import intent
from kade.deployments.controller import Deployer
from kade.dns.server import DnsServer
from kade.domain_events.config import IngestConfig
from kade.drivers.base import LABEL_NODE, Driver
from kade.scheduler.loop import Scheduler
from kade.spec import SpecError, load_document
from kade.store import open_store
from kade.store.base import CasFailed, LimitExceeded, Store
from kade.templates import ServiceEndpoint

if TYPE_CHECKING:
    from kade.domain_events.ingest import Ingest
    from kade.domain_events.store import EventStore

log = logging.getLogger("kade")

SHUTDOWN_GRACE = 2.0  # seconds open streams and blocking queries get when kade stops
ROUTER_TOKEN_FILE = "token"  # in the router's state dir


@dataclass
class UpConfig:
    data_dir: Path
    api_addr: str = "127.0.0.1:7400"
    node: str = field(default_factory=socket.gethostname)
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


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `kade up` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def make_driver(cfg: UpConfig) -> Driver:
    """Every driver this node has: `auto` is Docker when an engine answers, and exec (command
    apps as plain processes) always; `docker`, `exec` or `docker,exec` name them."""
    from kade.agent.node_drivers import NodeDrivers
    from kade.drivers.docker import DockerDriver
    from kade.drivers.exec import ExecDriver

    wanted = [w.strip() for w in cfg.driver.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in ("auto", "docker", "exec")]
    if unknown or not wanted:
        raise SystemExit(f"kade: --driver {cfg.driver!r}: choose auto, docker, exec or "
                         "docker,exec")
    drivers: list[Driver] = []
    if "docker" in wanted or "auto" in wanted:
        docker = DockerDriver(publish_ip=cfg.publish_ip, fetch_cache=cfg.data_dir / "fetch-cache")
        try:
            await docker.resources()
            drivers.append(docker)
        except Exception as e:
            await docker.close()
            if "docker" in wanted:
                raise SystemExit(f"kade: no Docker Engine answers: {e}") from None
            log.warning("no Docker Engine answers (%s): running command apps only", e)
    if "exec" in wanted or "auto" in wanted:
        drivers.append(ExecDriver(cfg.data_dir / "sandboxes",
                                  default_user=command_user(cfg.policy)))
    return NodeDrivers(drivers)


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


def endpoints(catalog: Catalog) -> dict[str, list[ServiceEndpoint]]:
    """Healthy endpoints per service, as templates' `service "name"` sees them."""
    return {
        name: [ServiceEndpoint(name=i.service, id=i.id, address=i.address, port=i.port,
                               node=i.node, tags=i.tags, meta=i.meta)
               for i in instances if i.passing]
        for name, instances in catalog.services.items()
    }


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


async def stop_all(driver: Driver, node: str) -> None:
    workloads = [w for w in await driver.list() if w.labels.get(LABEL_NODE, node) == node]
    await asyncio.gather(*(driver.stop(w.id, 10) for w in workloads if w.state == "running"))
    for w in workloads:
        await driver.remove(w.id)
    log.info("stopped %d tasks", len(workloads))


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


async def serve(cfg: UpConfig) -> None:
    api_sock = listen(cfg.api_addr, "API")
    store = await open_store(cfg.data_dir)
    await ensure_token_file(store, cfg.data_dir / MANAGEMENT_TOKEN_FILE, role="admin",
                            description="management token of kade up", now=time.time())
    router_dir = cfg.data_dir / "router"
    router_dir.mkdir(mode=0o700, exist_ok=True)
    await ensure_token_file(store, router_dir / ROUTER_TOKEN_FILE, role="node",
                            description=f"router {cfg.node}-router", now=time.time())
    driver = await make_driver(cfg)
    stop = asyncio.Event()
    stop_tasks = False

    admin = APIRouter()

    @admin.get("/v1/processes")
    async def processes() -> dict[str, object]:
        """The processes kade up looks after, and how they fared."""
        return {"router": supervisor.state.json() if cfg.router else None}

    @admin.post("/v1/admin/shutdown")
    async def shutdown(stopTasks: bool = False) -> JSONResponse:  # noqa: N803 (API name)
        nonlocal stop_tasks
        stop_tasks = stopTasks
        stop.set()
        return JSONResponse({"message": "shutting down", "stopTasks": stopTasks})

    scheduler = Scheduler(store, port_range=cfg.port_range)
    deployer = Deployer(store)
    view = CatalogView(store)
    agent = Agent(store, driver, AgentConfig(node=cfg.node, address=cfg.advertise,
                                             publish_ip=cfg.publish_ip),
                  data_dir=cfg.data_dir, services=lambda: endpoints(view.catalog))
    routing = Routing(store, view)
    domain_events, ingest, events_api = await open_domain_events(cfg, view)
    view.on_change(routing.rebuild)
    view.on_change(lambda _catalog, changed: agent.services_changed(set(changed)))
    app = create_app(
        store, policy=cfg.policy,
        logs=lambda wid, follow, tail: driver.logs(wid, follow=follow, tail=tail),
        extra=[admin, kv_router(store), catalog_router(view, node_name=cfg.node),
               routing_router(routing), events_api],
        security=SecurityConfig(hosts=tuple(cfg.api_hosts),
                                cors_origins=tuple(cfg.cors_origins)),
    )
    if cfg.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-Kade-Token"])
    server = _Server(uvicorn.Config(
        app, log_level="warning", lifespan="off", access_log=False,
        ssl_certfile=cfg.tls_cert, ssl_keyfile=cfg.tls_key,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    dns = DnsServer(view, cfg.dns_addr, cfg.domain)
    supervisor = RouterSupervisor(
        lambda: ensure_router(
            state_dir=router_dir, http_addr=cfg.http_addr, admin_addr=cfg.router_admin_addr,
            api_url=f"{'https' if cfg.tls_cert else 'http'}://{cfg.api_addr}",
            name=f"{cfg.node}-router", access_log=cfg.access_log,
            token_file=router_dir / ROUTER_TOKEN_FILE, api_cacert=cfg.tls_cert,
            https_addr=cfg.https_addr, tls_dir=cfg.https_cert_dir,
            admin_public=cfg.router_admin_public),
        ping_url=f"http://{cfg.router_admin_addr}/ping", log_file=router_dir / "router.log")
    try:
        try:
            await dns.start()
        except OSError as e:
            raise SystemExit(f"kade: cannot listen on {cfg.dns_addr} for DNS: {e.strerror} "
                             "(choose another with --dns-addr)") from None
        async with asyncio.TaskGroup() as tg:
            workers = [
                tg.create_task(scheduler.run(), name="scheduler"),
                tg.create_task(deployer.run(), name="deployer"),
                tg.create_task(agent.run(), name="agent"),
                tg.create_task(view.run(), name="catalog"),
            ]
            if ingest is not None:
                workers.append(tg.create_task(ingest.run(), name="domain events"))
            api = tg.create_task(server.serve(sockets=[api_sock]), name="api")
            await agent.ready.wait()
            await view.ready()
            routing.rebuild(view.catalog)
            watch_router = None
            if cfg.router:
                try:
                    pid = await supervisor.start()
                except StartFailed as e:
                    raise SystemExit(f"kade: {e}") from None
                log.info("router (pid %d) on http://%s", pid, cfg.http_addr)
                watch_router = tg.create_task(supervisor.run(), name="router supervisor")
            log.info("kade is up: API on %s://%s, DNS on %s, node %s, driver %s, data in %s",
                     "https" if cfg.tls_cert else "http", cfg.api_addr, cfg.dns_addr, cfg.node,
                     driver.name, cfg.data_dir)
            if cfg.seed_kv:
                await seed_kv(store, cfg.seed_kv)
            if cfg.deploy:
                await deploy_files(store, cfg.deploy, cfg.policy)
            stopper = tg.create_task(stop.wait())
            await asyncio.wait({stopper, api, *workers}, return_when=asyncio.FIRST_COMPLETED)
            log.info("shutting down%s", " and stopping every task" if stop_tasks else
                     "; tasks and the router keep running")
            closing_event(app).set()  # streams end, blocking queries answer now
            for task in workers:
                task.cancel()
            if watch_router is not None:
                watch_router.cancel()
            if stop_tasks:
                await stop_all(driver, cfg.node)
                await asyncio.to_thread(stop_router, cfg.data_dir / "router")
            server.should_exit = True
            stopper.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await dns.close()
        await domain_events.close()
        await driver.close()
        await store.close()
