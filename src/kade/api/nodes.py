"""`/v1/nodes`: the nodes, their eligibility, drains of one node or of a zone, drain progress.

The agent of a node writes `nodes/<name>`; what operators ask of a node — eligibility, a
drain — is written here, to `nodectl/<name>`, always as a compare-and-swap on the record read
(a lost race is read again and retried, never merged blindly). The scheduler reads both.

A zone drain (`POST /v1/nodes/drain` with `{"attr": "az=1a"}`) first makes every matching
node ineligible in one transaction, and only then sets their drains: no task moved off one
node of the zone can be placed on another node of the same zone.

Progress is a pure function of the records (kade.api.node_views); `?watch=true` streams it
as NDJSON, one line per change, until the drain is complete, cancelled, or kade stops.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from kade import model
from kade.admission import parse_body
from kade.admission.nodes import (
    DrainRequest,
    NodeRequestError,
    admit_drain,
    admit_eligibility,
    parse_attr,
)
from kade.api.closing import closing_event, watch_until_closing
from kade.api.node_views import TaskIndex, index_tasks, is_active, known_names, node_json
from kade.model import DrainSpec, Node, NodeControl, Task, TaskStatus, decode, decode_all
from kade.spec import AppSpec, SpecError
from kade.store.base import Compacted, Compare, Put, Store

KEEPALIVE_SECONDS = 15.0
_RETRIES = 10  # compare-and-swap attempts before a write answers 409
# What a node's view is computed from: a change elsewhere does not recompute it.
_WATCHED = (model.NODES, model.ALIVE, model.NODECTL, model.TASKS, model.STATUS, model.APPS)


@dataclass
class Snapshot:
    nodes: dict[str, Node]
    registered: set[str]  # names with a record, readable or not
    alive: set[str]  # names whose agent keeps `alive/<name>` (kade.agent.liveness)
    controls: dict[str, tuple[NodeControl, int]]  # with the record's mod_revision
    tasks: list[Task]
    index: TaskIndex

    def names(self) -> list[str]:
        return known_names(self.nodes, self.controls, self.tasks)

    def knows(self, name: str) -> bool:
        return name in self.registered or name in self.controls

    def control(self, name: str) -> NodeControl | None:
        found = self.controls.get(name)
        return found[0] if found else None

    def json(self, name: str, now: float) -> dict[str, Any]:
        node = self.nodes.get(name)
        return node_json(name, node, self.control(name), self.index, now,
                         alive=node is None or node.alive(self.alive))

    def active_on(self, name: str) -> int:
        return sum(1 for t in self.index.on.get(name, [])
                   if is_active(t, self.index.statuses.get(t.id)))

    def with_attr(self, key: str, value: str) -> list[str]:
        return sorted(n for n, node in self.nodes.items() if node.attributes.get(key) == value)


async def read_snapshot(store: Store) -> Snapshot:
    """Every record a node's view reads, each decoded under the one bad-record policy."""
    nodes_e, _ = await store.range(model.NODES)
    alive_e, _ = await store.range(model.ALIVE)
    ctl_e, _ = await store.range(model.NODECTL)
    tasks_e, _ = await store.range(model.TASKS)
    status_e, _ = await store.range(model.STATUS)
    apps_e, _ = await store.range(model.APPS)
    controls = {}
    for entry in ctl_e:
        control = decode(entry, NodeControl)
        if isinstance(control, NodeControl):
            controls[entry.key[len(model.NODECTL):]] = (control, entry.mod_revision)
    tasks = decode_all(tasks_e, Task)[0]
    statuses = {s.task_id: s for s in decode_all(status_e, TaskStatus)[0]}
    apps = {a.id: a for a in decode_all(apps_e, AppSpec)[0]}
    return Snapshot(
        nodes={n.name: n for n in decode_all(nodes_e, Node)[0]},
        registered={e.key[len(model.NODES):] for e in nodes_e},
        alive={e.key[len(model.ALIVE):] for e in alive_e},
        controls=controls,
        tasks=tasks,
        index=index_tasks(tasks, statuses, apps),
    )


Change = Callable[[NodeControl], NodeControl]


async def update_controls(store: Store, names: Sequence[str], change: Change,
                          now: float) -> int:
    """Apply `change` to the `nodectl/` records of `names` in one transaction, each guarded by
    the revision it was read at (a missing record starts from the defaults: eligible, no
    drain); retried from a fresh read when another write came first. The revision written."""
    for _ in range(_RETRIES):
        compares, puts = [], []
        for name in names:
            key = model.nodectl_key(name)
            entry = await store.get(key)
            current = decode(entry, NodeControl) if entry is not None else None
            if not isinstance(current, NodeControl):  # missing, or unreadable: replaced
                current = NodeControl(name=name)
            new = change(current.model_copy(update={"name": name})).model_copy(
                update={"updated_at": now})
            compares.append(Compare(key, entry.mod_revision if entry is not None else 0))
            puts.append(Put(key, new.dump()))
        result = await store.txn(compares, puts)
        if result.succeeded:
            return result.revision
    raise HTTPException(409, f"node(s) {', '.join(names)} changed concurrently "
                             f"{_RETRIES} times: try again")


def _ineligible(control: NodeControl) -> NodeControl:
    return control.model_copy(update={"eligible": False})


def _drained(req: DrainRequest, now: float, tasks: Mapping[str, int]) -> Change:
    """Set a drain (ineligible too); `tasks`: how many run on each node now. A drain asked
    again keeps when it began and how many tasks it had, and takes the new deadline and
    settings."""
    def change(control: NodeControl) -> NodeControl:
        old = control.drain
        drain = DrainSpec(
            started_at=old.started_at if old else now, deadline=now + req.deadline,
            keep_system=req.keep_system, max_parallel=req.max_parallel,
            tasks_at_start=old.tasks_at_start if old else tasks.get(control.name, 0))
        return control.model_copy(update={"eligible": False, "drain": drain})
    return change


def nodes_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter()

    async def known(name: str) -> Snapshot:
        snap = await read_snapshot(store)
        if not snap.knows(name):
            raise HTTPException(404, f"node {name} does not exist (`kade nodes` lists them)")
        return snap

    async def body(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return None
        try:
            return parse_body(raw)
        except SpecError as e:
            message = str(e)
            raise HTTPException(400, message if message.startswith("body:") else
                                f"body: {message}") from None

    def progress_of(snap: Snapshot, name: str) -> dict[str, Any]:
        shown = snap.json(name, clock())
        return {"node": name, "status": shown["status"], "eligible": shown["eligible"],
                "drain": shown["drain"]}

    def finished(item: dict[str, Any]) -> bool:
        return item["drain"] is None or bool(item["drain"]["complete"])

    @r.get("/v1/nodes")
    async def list_nodes(attr: str | None = None) -> dict[str, Any]:
        """Every node, or those with the attribute `attr` (`az=1a`)."""
        selector = _selector(attr)
        snap = await read_snapshot(store)
        now = clock()
        names = snap.with_attr(*selector) if selector else snap.names()
        return {"nodes": [snap.json(name, now) for name in names]}

    @r.get("/v1/nodes/drain", response_model=None)
    async def zone_progress(request: Request, attr: str | None = None,
                            watch: bool = False) -> dict[str, Any] | StreamingResponse:
        """The drains of every node with `attr` (all drains without it)."""
        selector = _selector(attr)

        async def current() -> tuple[dict[str, Any], bool]:
            snap = await read_snapshot(store)
            names = (snap.with_attr(*selector) if selector else
                     [n for n in snap.names() if (c := snap.control(n)) and c.drain])
            drains = [progress_of(snap, n) for n in names]
            complete = all(finished(d) for d in drains)
            return {"drains": drains, "complete": complete}, complete

        if watch:
            return _ndjson(_follow(store, closing_event(request.app), current))
        return (await current())[0]

    @r.post("/v1/nodes/drain")
    async def drain_zone(request: Request) -> dict[str, Any]:
        try:
            req = admit_drain(await body(request), zone=True)
        except NodeRequestError as e:
            raise HTTPException(400, str(e)) from None
        assert req.attr is not None
        snap = await read_snapshot(store)
        names = snap.with_attr(*req.attr)
        if not names:
            raise HTTPException(404, f"no node has the attribute {'='.join(req.attr)} "
                                     "(`kade nodes` shows attributes)")
        now = clock()
        # First the whole zone ineligible, then the drains: nothing moves within the zone.
        await update_controls(store, names, _ineligible, now)
        await update_controls(store, names,
                              _drained(req, now, {n: snap.active_on(n) for n in names}), now)
        snap = await read_snapshot(store)
        return {"nodes": [snap.json(n, now) for n in names]}

    @r.get("/v1/nodes/{name}")
    async def get_node(name: str) -> dict[str, Any]:
        return {"node": (await known(name)).json(name, clock())}

    @r.put("/v1/nodes/{name}/eligibility")
    async def eligibility(name: str, request: Request) -> dict[str, Any]:
        try:
            eligible = admit_eligibility(await body(request))
        except NodeRequestError as e:
            raise HTTPException(400, str(e)) from None
        await known(name)
        now = clock()
        await update_controls(store, [name],
                              lambda c: c.model_copy(update={"eligible": eligible}), now)
        return {"node": (await read_snapshot(store)).json(name, now)}

    @r.post("/v1/nodes/{name}/drain")
    async def drain_node(name: str, request: Request) -> dict[str, Any]:
        try:
            req = admit_drain(await body(request))
        except NodeRequestError as e:
            raise HTTPException(400, str(e)) from None
        snap = await known(name)
        now = clock()
        await update_controls(store, [name], _drained(req, now, {name: snap.active_on(name)}),
                              now)
        return {"node": (await read_snapshot(store)).json(name, now)}

    @r.delete("/v1/nodes/{name}/drain")
    async def cancel_drain(name: str, eligible: bool = False) -> dict[str, Any]:
        """Stop draining: tasks already moved stay where they are; the node stays
        ineligible unless `eligible=true`."""
        await known(name)
        now = clock()
        update: dict[str, Any] = {"drain": None}
        if eligible:
            update["eligible"] = True
        await update_controls(store, [name], lambda c: c.model_copy(update=update), now)
        return {"node": (await read_snapshot(store)).json(name, now)}

    @r.get("/v1/nodes/{name}/drain", response_model=None)
    async def node_progress(name: str, request: Request,
                            watch: bool = False) -> dict[str, Any] | StreamingResponse:
        await known(name)

        async def current() -> tuple[dict[str, Any], bool]:
            item = progress_of(await read_snapshot(store), name)
            return item, finished(item)

        if watch:
            return _ndjson(_follow(store, closing_event(request.app), current))
        return (await current())[0]

    return r


def _selector(attr: str | None) -> tuple[str, str] | None:
    if attr is None:
        return None
    try:
        return parse_attr(attr)
    except NodeRequestError as e:
        raise HTTPException(400, str(e)) from None


def _ndjson(lines: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(lines, media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-cache"})


async def _follow(store: Store, closing: asyncio.Event,
                  current: Callable[[], Awaitable[tuple[dict[str, Any], bool]]]
                  ) -> AsyncIterator[bytes]:
    """The current state as one JSON line, then again each time it changes, until it says it
    is finished or the server stops. A blank line is a keepalive."""
    since = await store.revision()  # before the read: no change in between is missed
    shown, done = await current()
    yield _line(shown)
    while not done:
        try:
            async for batch in watch_until_closing(store, since, closing, KEEPALIVE_SECONDS):
                if batch is None:
                    yield b"\n"
                    continue
                since = batch[-1].revision
                if not any(e.key.startswith(_WATCHED) for e in batch):
                    continue
                now, done = await current()
                if now != shown:
                    shown = now
                    yield _line(shown)
                if done:
                    return
            return  # the server is stopping
        except Compacted:  # fell behind the history: read afresh and follow from there
            since = await store.revision()
            now, done = await current()
            if now != shown:
                shown = now
                yield _line(shown)


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"
