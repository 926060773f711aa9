"""The control plane's side of routing: the table routers fetch, and what they acknowledge.

The table is built from the apps (routes, Traefik labels) and the catalog's *passing*
endpoints, and replaced whole when its content changes. Routers fetch it with a blocking
query and acknowledge each table they applied, with the in-flight requests still running on
servers that left it. From those acknowledgements this module writes one fact per router,
`routers/<name>`: the tasks that router may still send to (in its table, or draining). The
agent stops a task only once no live router lists it: that is how a task leaves every router
before it is told to stop.

A router with an HTTPS entrypoint asks for certificates too (`tlsIndex=`): the PEM pairs under
`kade/tls/<name>/cert` and `kade/tls/<name>/key` in KV are added to its answer, and its
blocking query also ends when they change. Routers that do not ask never receive keys.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from kade import model
from kade.api.closing import until_closing
from kade.api.consul_common import parse_index, parse_wait
from kade.catalog.model import Catalog
from kade.catalog.view import CatalogView
from kade.router.routes import Backend, RouteError, build_table
from kade.spec import AppSpec
from kade.store.base import Store
from kade.templates.kvdata import decode_kv_value

HISTORY = 64  # table revisions remembered, to map an acknowledged revision to its tasks
TLS_PREFIX = model.KV + "kade/tls/"  # kade/tls/<name>/cert and .../key, PEM


async def tls_material(store: Store) -> dict[str, Any]:
    """{"index": revision of the prefix, "certificates": [{"name", "cert", "key"}]}: the
    pairs whose both halves are there and are text."""
    entries, _ = await store.range(TLS_PREFIX)
    index = await store.prefix_revision(TLS_PREFIX)
    pairs: dict[str, dict[str, str]] = {}
    for entry in entries:
        name, _, part = entry.key[len(TLS_PREFIX):].partition("/")
        if not name or part not in ("cert", "key"):
            continue
        value, _flags = decode_kv_value(entry.value)
        try:
            pairs.setdefault(name, {})[part] = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
    certificates = [{"name": name, "cert": pair["cert"], "key": pair["key"]}
                    for name, pair in sorted(pairs.items()) if len(pair) == 2]
    return {"index": index, "certificates": certificates}


def backends_of(catalog: Catalog) -> dict[str, list[Backend]]:
    """Passing endpoints per app id, with each task's host ports in port-index order."""
    ports: dict[str, dict[str, dict[int, int]]] = {}
    hosts: dict[str, str] = {}
    for instances in catalog.services.values():
        for inst in instances:
            if not inst.passing or inst.port_index is None:
                continue
            ports.setdefault(inst.app_id, {}).setdefault(inst.task_id, {})[inst.port_index] = (
                inst.port
            )
            hosts[inst.task_id] = inst.address
    out: dict[str, list[Backend]] = {}
    for app_id, tasks in ports.items():
        out[app_id] = [
            Backend(task_id=task_id, host=hosts[task_id],
                    ports=[by_index.get(i, 0) for i in range(max(by_index) + 1)])
            for task_id, by_index in sorted(tasks.items())
        ]
    return out


def tasks_of(table: Mapping[str, Any]) -> dict[str, str]:
    """server url → task id, for every server of a table."""
    return {
        server["url"]: server["task"]
        for service in table.get("services", {}).values()
        for server in service.get("servers", [])
    }


class Ack(BaseModel):
    router: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    revision: int = Field(ge=0)
    inflight: dict[str, int] = Field(default_factory=dict)


class RouterState(model.Record):
    """What one router may still send requests to (written from its acknowledgements)."""

    name: str
    revision: int
    tasks: list[str]  # tasks in its applied table, or with requests still in flight
    seen_at: float


class Routing:
    def __init__(self, store: Store, view: CatalogView,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.view = view
        self.clock = clock
        self.table: dict[str, Any] = {"revision": 0, "routers": [], "services": {}}
        self.errors: list[RouteError] = []
        self._history: dict[int, dict[str, str]] = {}
        self._changed = asyncio.Event()

    def rebuild(self, catalog: Catalog, _changed: frozenset[str] = frozenset()) -> None:
        apps: dict[str, AppSpec] = self.view.apps()
        # never revision 0: routers follow with `index`, and index 0 asks without waiting (an
        # empty table kept at 0 would have every router ask, and acknowledge, without pause)
        table, errors = build_table(apps, backends_of(catalog), max(catalog.index, 1))
        self.errors = errors
        if self.table["revision"] and _content(table) == _content(self.table):
            return
        self.table = table
        self._history[table["revision"]] = tasks_of(table)
        for old in sorted(self._history)[:-HISTORY]:
            del self._history[old]
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, index: int, timeout: float) -> dict[str, Any]:
        if self.table["revision"] <= index:
            changed = self._changed
            with suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await changed.wait()
        return self.table

    async def wait_with_tls(self, index: int, tls_index: int, timeout: float) -> None:
        """Until the table passes `index` or the certificates pass `tls_index` (or timeout)."""
        waits = {asyncio.ensure_future(self.wait(index, timeout)),
                 asyncio.ensure_future(self.store.wait(TLS_PREFIX, tls_index, timeout))}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def acknowledge(self, ack: Ack) -> RouterState:
        applied = self._history.get(ack.revision)
        if applied is None:
            # A table older than we remember (e.g. from before a restart): assume the worst,
            # it may still route to anything we currently list.
            applied = tasks_of(self.table)
        current = tasks_of(self.table)
        tasks = set(applied.values())
        for url, count in ack.inflight.items():
            if count > 0:
                task = current.get(url) or _task_in_history(self._history, url)
                if task is not None:
                    tasks.add(task)
        state = RouterState(name=ack.router, revision=ack.revision, tasks=sorted(tasks),
                            seen_at=self.clock())
        await self.store.put(model.ROUTERS + ack.router, state.dump())
        return state


def _task_in_history(history: Mapping[int, Mapping[str, str]], url: str) -> str | None:
    for revision in sorted(history, reverse=True):
        if url in history[revision]:
            return history[revision][url]
    return None


def _content(table: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in table.items() if k != "revision"}, sort_keys=True)


def routing_router(routing: Routing) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/router/table")
    async def table(request: Request) -> JSONResponse:
        index = parse_index(request.query_params.get("index"))
        wait = min(parse_wait(request.query_params.get("wait") or "60s"), 300)
        tls_index = request.query_params.get("tlsIndex")
        if tls_index is None:
            woke = await until_closing(request, routing.wait(index, wait)) if index else None
            body = woke or routing.table
            return JSONResponse(body, headers={"X-Kade-Index": str(body["revision"])})
        if index:
            await until_closing(request,
                                routing.wait_with_tls(index, parse_index(tls_index), wait))
        body = {**routing.table, "tls": await tls_material(routing.store)}
        return JSONResponse(body, headers={"X-Kade-Index": str(body["revision"]),
                                           "Cache-Control": "no-store"})

    @r.put("/v1/router/ack")
    async def ack(body: Ack) -> dict[str, Any]:
        state = await routing.acknowledge(body)
        return state.model_dump()

    @r.get("/v1/router/errors")
    async def errors() -> dict[str, Any]:
        return {"errors": [{"app": e.app, "router": e.router, "message": e.message}
                           for e in routing.errors]}

    @r.get("/v1/routers")
    async def routers() -> dict[str, Any]:
        entries, _ = await routing.store.range(model.ROUTERS)
        return {"routers": [json.loads(e.value) for e in entries]}

    return r
