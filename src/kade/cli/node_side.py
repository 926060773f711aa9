"""What runs on every node: the drivers, the agent, its log store, DNS and the router process.

`kade up` runs it beside the control plane on one store; `kade agent` runs it alone, following
the servers through their store API (`kade.client.remote_store`). The code is the same: the
node side only knows the `Store` protocol and the catalog view it is given.

The node's tasks' output is kept on the node, in its log store (`node.logs`, under
`<data dir>/logs/`): the agent captures into it, the API (`kade up`) and the node listener
(`kade agent`) answer queries from it, and its retention runs beside the agent. Its tasks'
usage and the router's requests are kept the same way, in its metrics store (`node.metrics`,
under `<data dir>/metrics/`), written by the node's collector every 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

from kade.addresses import split_addr
from kade.admission import ContainerPolicy, command_user
from kade.agent.agent import Agent, AgentConfig
from kade.agent.liveness import TTL as LIVENESS_TTL
from kade.agent.liveness import Liveness
from kade.agent.metrics import MetricsHook
from kade.catalog.model import Catalog
from kade.catalog.view import CatalogView
from kade.cli.router_proc import ensure_router, stop_router
from kade.cli.supervise import RouterSupervisor, StartFailed
from kade.dns.server import DnsServer
from kade.drivers.base import LABEL_NODE, Driver
from kade.logs.store import LogStore
from kade.metrics.collector import Collector
from kade.metrics.tsdb import TSDB
from kade.store.base import Store
from kade.templates import ServiceEndpoint

log = logging.getLogger("kade")

ROUTER_TOKEN_FILE = "token"  # in the router's state dir


@dataclass
class NodeConfig:
    data_dir: Path
    node: str
    advertise: str = "127.0.0.1"
    driver: str = "auto"  # docker | exec | docker,exec | auto (exec, and docker when it answers)
    publish_ip: str = "0.0.0.0"
    attributes: dict[str, str] = field(default_factory=dict)
    policy: ContainerPolicy = field(default_factory=ContainerPolicy)  # who command apps run as
    dns_addr: str = "127.0.0.1:8600"
    domain: str = "consul"
    router: bool = True
    http_addr: str = "127.0.0.1:8080"
    router_admin_addr: str = "127.0.0.1:8081"
    access_log: str | None = None
    https_addr: str | None = None
    https_cert_dir: Path | None = None
    router_admin_public: bool = False
    api_url: str = "http://127.0.0.1:7400"  # where the router follows the control plane
    api_cacert: Path | None = None
    node_ttl: float = LIVENESS_TTL  # seconds without a keepalive before the node is down
    port_range: tuple[int, int] | None = None  # host ports for tasks here (None: the servers')
    listen: str | None = None  # the node listener's address (`kade agent --listen`); None: off
    metrics_interval: float = 10.0  # seconds between collections of tasks' usage

    @property
    def listener_url(self) -> str:
        """Where servers reach the node listener: its address, or the node's advertised
        one when it listens on every interface."""
        if not self.listen:
            return ""
        host, port = split_addr(self.listen)
        if host in ("0.0.0.0", "::"):
            host = self.advertise
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    @property
    def router_dir(self) -> Path:
        return self.data_dir / "router"


async def make_driver(cfg: NodeConfig) -> Driver:
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


def endpoints(catalog: Catalog) -> dict[str, list[ServiceEndpoint]]:
    """Healthy endpoints per service, as templates' `service "name"` sees them."""
    return {
        name: [ServiceEndpoint(name=i.service, id=i.id, address=i.address, port=i.port,
                               node=i.node, tags=i.tags, meta=i.meta)
               for i in instances if i.passing]
        for name, instances in catalog.services.items()
    }


async def stop_all(driver: Driver, node: str) -> None:
    workloads = [w for w in await driver.list() if w.labels.get(LABEL_NODE, node) == node]
    await asyncio.gather(*(driver.stop(w.id, 10) for w in workloads if w.state == "running"))
    for w in workloads:
        await driver.remove(w.id)
    log.info("stopped %d tasks", len(workloads))


class NodeSide:
    """The node's part of a kade process. `start` brings it up inside the caller's task group
    (alive, agent adopting what runs, DNS answering), `start_router` adds the router; `cancel`
    ends its own work and `close` releases DNS and drivers, leaving tasks and the router
    running (`stop_tasks` stops them too)."""

    def __init__(self, store: Store, cfg: NodeConfig, view: CatalogView) -> None:
        self.store = store
        self.cfg = cfg
        self.view = view
        self.driver: Driver | None = None
        self.agent: Agent | None = None
        self.logs: LogStore | None = None  # open from start() to close()
        self.metrics = TSDB(cfg.data_dir / "metrics")  # open from start() to close()
        self.collector: Collector | None = None
        self.dns = DnsServer(view, cfg.dns_addr, cfg.domain)
        cfg.router_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.supervisor = RouterSupervisor(
            lambda: ensure_router(
                state_dir=cfg.router_dir, http_addr=cfg.http_addr,
                admin_addr=cfg.router_admin_addr, api_url=cfg.api_url,
                name=f"{cfg.node}-router", access_log=cfg.access_log,
                token_file=cfg.router_dir / ROUTER_TOKEN_FILE, api_cacert=cfg.api_cacert,
                https_addr=cfg.https_addr, tls_dir=cfg.https_cert_dir,
                admin_public=cfg.router_admin_public),
            ping_url=f"http://{cfg.router_admin_addr}/ping",
            log_file=cfg.router_dir / "router.log")
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def start(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Start the agent and DNS; returns the tasks whose end means the node side failed.
        Call `start_router` once the control plane answers."""
        cfg = self.cfg
        self.driver = await make_driver(cfg)
        self.logs = await LogStore(cfg.data_dir).open()
        await asyncio.to_thread(self.metrics.open)
        measured = MetricsHook(self.driver, cfg.node)
        self.collector = Collector(self.metrics, measured.targets, node=cfg.node,
                                   interval=cfg.metrics_interval, endpoints=self._scraped,
                                   relabel=self._app_of_service)
        self.agent = Agent(self.store, self.driver,
                           AgentConfig(node=cfg.node, address=cfg.advertise,
                                       attributes=dict(cfg.attributes),
                                       publish_ip=cfg.publish_ip,
                                       hostname=socket.gethostname(),
                                       port_range=cfg.port_range,
                                       liveness_ttl=cfg.node_ttl,
                                       api_url=cfg.listener_url),
                           data_dir=cfg.data_dir, services=lambda: endpoints(self.view.catalog),
                           logs=self.logs, hooks=[measured])
        self.view.on_change(lambda _catalog, changed: self._services_changed(set(changed)))
        try:
            await self.dns.start()
        except OSError as e:
            raise SystemExit(f"kade: cannot listen on {cfg.dns_addr} for DNS: {e.strerror} "
                             "(choose another with --dns-addr)") from None
        # alive before the agent registers the node: a node is never seen down while it starts
        liveness = Liveness(self.store, cfg.node, ttl=cfg.node_ttl)
        self._tasks = [tg.create_task(liveness.run(), name="liveness")]
        await liveness.alive.wait()
        self._tasks.append(tg.create_task(self.agent.run(), name="agent"))
        self._tasks.append(tg.create_task(self.logs.run(), name="log retention"))
        self._tasks.append(tg.create_task(self.collector.run(), name="metrics"))
        self._tasks.append(tg.create_task(self.metrics.run(), name="metrics retention"))
        return self._tasks

    def _scraped(self) -> list[tuple[str, dict[str, str]]]:
        """The node's own Prometheus endpoints: its router's."""
        if not self.cfg.router:
            return []
        return [(f"http://{self.cfg.router_admin_addr}/metrics", {"node": self.cfg.node})]

    def _app_of_service(self, labels: dict[str, str]) -> dict[str, str]:
        """The router counts by service: its app is added, as `kade top` and rules read it."""
        service = labels.get("service")
        if service and "app" not in labels:
            instances = self.view.catalog.services.get(service)
            if instances:
                return {**labels, "app": instances[0].app_id}
        return labels

    def _services_changed(self, changed: set[str]) -> None:
        if self.agent is not None:
            self.agent.services_changed(changed)

    async def ready(self) -> None:
        """The agent has adopted what runs here."""
        assert self.agent is not None, "start() first"
        await self.agent.ready.wait()

    async def start_router(self, tg: asyncio.TaskGroup) -> asyncio.Task[None] | None:
        """The router process (found running, or started), and its supervision."""
        if not self.cfg.router:
            return None
        try:
            pid = await self.supervisor.start()
        except StartFailed as e:
            raise SystemExit(f"kade: {e}") from None
        log.info("router (pid %d) on http://%s", pid, self.cfg.http_addr)
        return tg.create_task(self.supervisor.run(), name="router supervisor")

    def processes(self) -> dict[str, object]:
        return {"router": self.supervisor.state.json() if self.cfg.router else None}

    def cancel(self) -> None:
        """Stop the node side's own work (agent, liveness); tasks and the router go on."""
        for task in self._tasks:
            task.cancel()

    async def stop_tasks(self) -> None:
        """Stop every task of this node and its router (`kade down --stop-tasks`)."""
        if self.driver is not None:
            await stop_all(self.driver, self.cfg.node)
        await asyncio.to_thread(stop_router, self.cfg.router_dir)

    async def close(self) -> None:
        """Release DNS and the drivers: call once the task group has ended."""
        if self._closed:
            return
        self._closed = True
        await self.dns.close()
        if self.driver is not None:
            await self.driver.close()
        if self.logs is not None:
            await self.logs.close()
        if self.collector is not None:
            await asyncio.to_thread(self.metrics.close)
