"""The control plane of a kade process: the API (kade's, Consul's, Marathon's, the store's),
the catalog view and the routing tables every server answers from, and the loops that must
run once in a cluster — scheduler and deployer — which run where `leader_loops` is called:
always in `kade up`, on the elected leader in `kade server`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI

from kade.admission import ContainerPolicy
from kade.alerts.manager import Alerting
from kade.alerts.notify import Dispatcher
from kade.api.alerts import alerts_router
from kade.api.app import create_app
from kade.api.consul_catalog import catalog_router
from kade.api.consul_kv import kv_router
from kade.api.prometheus import MetricsSource, prometheus_router
from kade.api.routing import Routing, routing_router
from kade.api.security import SecurityConfig
from kade.catalog.view import CatalogView
from kade.deployments.controller import Deployer
from kade.metrics.series import QuerySources
from kade.scheduler.loop import Scheduler
from kade.store.base import Store, StoreError
from kade.store.election import Election, NotLeader
from kade.store.fenced import FencedStore
from kade.templates.isolate import TemplateWorkers
from kade.ui.login import login_router
from kade.ui.pages import ui_router
from kade.ui.services import services_pages_router

log = logging.getLogger("kade")


@dataclass
class ControlConfig:
    node_name: str  # what Consul's agent/self presents
    port_range: tuple[int, int] = (31000, 32000)
    policy: ContainerPolicy = field(default_factory=ContainerPolicy)
    api_hosts: Sequence[str] = ()
    cors_origins: Sequence[str] = ()


class ControlPlane:
    def __init__(self, store: Store, cfg: ControlConfig, *,
                 extra: Sequence[APIRouter] = (), clock: Callable[[], float] = time.time
                 ) -> None:
        self.store = store
        self.cfg = cfg
        self.view = CatalogView(store)
        self.routing = Routing(store, self.view)
        self.view.on_change(self.routing.rebuild)
        self.app: FastAPI = create_app(
            store, policy=cfg.policy, clock=clock,
            extra=[*extra, kv_router(store), catalog_router(self.view, node_name=cfg.node_name),
                   routing_router(self.routing), ui_router(store, clock),
                   services_pages_router(self.routing, clock),
                   login_router(store, clock)],
            security=SecurityConfig(hosts=tuple(cfg.api_hosts),
                                    cors_origins=tuple(cfg.cors_origins)),
        )
        self._monitoring: tuple[MetricsSource | QuerySources[MetricsSource], Dispatcher, bool,
                                float] | None = None
        self.alerting: Alerting | None = None
        self.template_workers = TemplateWorkers()  # alerts' annotations
        if cfg.cors_origins:
            from starlette.middleware.cors import CORSMiddleware

            self.app.add_middleware(
                CORSMiddleware, allow_origins=list(cfg.cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "X-Kade-Token"])

    def start(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """The catalog view, which the API, DNS and routing tables answer from."""
        return [tg.create_task(self.view.run(), name="catalog")]

    async def ready(self) -> None:
        await self.view.ready()
        self.routing.rebuild(self.view.catalog)

    def monitor(self, source: MetricsSource | QuerySources[MetricsSource],
                metadata: Callable[[], dict[str, tuple[str, str]]],
                dispatcher: Dispatcher, builtin: bool = True, interval: float = 10.0) -> None:
        """Serve Prometheus' query API and /metrics over `source` and evaluate alert rules on
        it while leading (kade.alerts.manager). A server's source is one per query
        (kade.metrics.remote: its own series and every node's)."""
        self._monitoring = (source, dispatcher, builtin, interval)
        self.app.include_router(prometheus_router(source, metadata))
        self.app.include_router(alerts_router(
            self.store, builtin=builtin,
            errors=lambda: self.alerting.errors if self.alerting is not None else {}))

    def leader_loops(self, store: Store | None = None) -> dict[str, Coroutine[Any, Any, None]]:
        """Scheduler and deployer by name (and alerting when monitoring), writing through
        `store` (a leader's fenced store)."""
        store = store or self.store
        loops = {"scheduler": Scheduler(store, port_range=self.cfg.port_range).run(),
                 "deployer": Deployer(store).run()}
        if self._monitoring is not None:
            source, dispatcher, builtin, interval = self._monitoring
            self.alerting = Alerting(store, source, self.template_workers, dispatcher,
                                     builtin=builtin, interval=interval)
            loops["alerting"] = self.alerting.run()
        return loops

    async def lead(self, election: Election, value: bytes, stop: asyncio.Event) -> None:
        """Stand for leader until `stop`; while leading, run the leader's loops with every
        write fenced. A lost lead stops them at once; the server stands again."""
        while not stop.is_set():
            try:
                leadership = await election.campaign(value)
            except StoreError as e:
                log.warning("cannot stand for leader (%s); trying again", e)
                await asyncio.sleep(1.0)
                continue
            log.info("leading: scheduler and deployer run on this server")
            tasks = [asyncio.create_task(coro, name=name)
                     for name, coro in self.leader_loops(FencedStore(leadership)).items()]
            waits = [asyncio.create_task(leadership.lost.wait()),
                     asyncio.create_task(stop.wait())]
            try:
                await asyncio.wait({*tasks, *waits}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (*tasks, *waits):
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results, strict=True):
                if isinstance(result, Exception) and not isinstance(result, NotLeader):
                    log.error("%s failed while leading: %s", task.get_name(), result,
                              exc_info=result)
            if stop.is_set():
                await leadership.resign()  # the next server leads at once
                return
            leadership.stop()
            log.warning("no longer leading: scheduler and deployer stopped here")
