"""`/v1/store/*`: the store as the agents of a cluster follow it, over HTTP.

An agent on a node never talks to etcd: it reads, watches and reports through any server,
and this API gives it the same `Store` protocol (`kade.client.remote_store` is the other end),
so the agent's code is the one `kade up` runs in process. Node tokens only; what a node may
read and write is `kade.auth.policy.STORE_READ`/`STORE_WRITE` (never tokens), checked in
`kade.admission.store_ops`. A range or watch wider than what is readable (`""`, the catalog's
watch) is answered filtered.

- `GET /v1/store/range?prefix=`      {"revision", "entries"}
- `GET /v1/store/get?key=`           {"revision", "entry"} (entry null when absent)
- `GET /v1/store/revision?prefix=`   {"revision", "prefixRevision"}
- `GET /v1/store/wait?prefix=&after=&timeout=`   {"prefixRevision"}, a blocking query
- `GET /v1/store/watch?prefix=&after=`  NDJSON: {"events": [...]} batches, {} keepalives,
  {"progress": revision} for changes it may not see, {"compacted": n} when `after` is
  older than the history; ends when the server stops
- `POST /v1/store/txn`               `kade.store.wire.txn_json` → its result
- `POST /v1/store/leases` {"ttl"} → {"id", "ttl"}; `PUT /v1/store/leases/{id}` keeps it
  alive → {"ttl"} (404 once it ended); `DELETE /v1/store/leases/{id}` ends it (an agent's
  liveness: its node's `alive/` key lives under one)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from kade import model
from kade.admission.store_ops import (
    StoreRequestError,
    admit_lease_ttl,
    admit_txn,
    check_key,
    read_scope,
)
from kade.api.closing import closing_event, until_closing, watch_until_closing
from kade.api.security import principal_of
from kade.auth import Principal
from kade.auth.policy import node_of_key
from kade.model import Task, decode
from kade.spec import load_document
from kade.spec.errors import DocumentError
from kade.store.base import (
    Compacted,
    Event,
    LeaseExpired,
    LimitExceeded,
    Op,
    Store,
    StoreError,
)
from kade.store.wire import entry_json, event_json, txn_result_json

KEEPALIVE_SECONDS = 5.0  # a watcher that hears nothing for 3× this knows its server is gone
MAX_WAIT_SECONDS = 600.0
MAX_ID = 2**63 - 1  # revisions and lease ids are signed 64-bit numbers in both stores


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status)


def _refused(e: Exception) -> JSONResponse:
    if isinstance(e, StoreRequestError):
        return _error(e.status, str(e))
    if isinstance(e, LeaseExpired):
        return _error(404, str(e), kind="lease")
    if isinstance(e, LimitExceeded):
        return _error(413 if e.kind == "value" else 507, str(e), kind=e.kind, limit=e.limit,
                      prefix=e.prefix)
    return _error(503, f"the store cannot answer: {e}")


def _within(key: str, scope: tuple[str, ...]) -> bool:
    return any(key.startswith(p) for p in scope)


def _after(value: str | None) -> int:
    if value is None or not value.isdigit() or len(value) > 19 or int(value) > MAX_ID:
        raise StoreRequestError("after: must be a revision (a whole number ≥ 0)")
    return int(value)


def store_router(store: Store) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/store/range")
    async def range_(prefix: str = "") -> Response:
        try:
            scope = read_scope(prefix)
            entries, revision = await store.range(prefix)
        except (StoreRequestError, StoreError) as e:
            return _refused(e)
        return JSONResponse({"revision": revision, "entries": [
            entry_json(e) for e in entries if _within(e.key, scope)]})

    @r.get("/v1/store/get")
    async def get(key: str = "") -> Response:
        try:
            check_key(key)
            if read_scope(key, "key") != (key,):
                raise StoreRequestError(f"key: {key!r} is not readable through the store API",
                                        status=403)
            entry = await store.get(key)
            revision = await store.revision()
        except (StoreRequestError, StoreError) as e:
            return _refused(e)
        return JSONResponse({"revision": revision,
                             "entry": entry_json(entry) if entry is not None else None})

    @r.get("/v1/store/revision")
    async def revision(prefix: str = "") -> Response:
        try:
            scope = read_scope(prefix)
            current = await store.revision()
            of_prefix = max([await store.prefix_revision(p) for p in scope], default=0)
        except (StoreRequestError, StoreError) as e:
            return _refused(e)
        return JSONResponse({"revision": current, "prefixRevision": of_prefix})

    @r.get("/v1/store/wait")
    async def wait(request: Request, prefix: str = "", after: str | None = None,
                   timeout: float = 60.0) -> Response:
        try:
            scope = read_scope(prefix)
            since = _after(after)
            if not 0 <= timeout <= MAX_WAIT_SECONDS:
                raise StoreRequestError(f"timeout: must be 0 to {MAX_WAIT_SECONDS:g} seconds")
            await until_closing(request, store.wait(prefix, since, timeout))
            of_prefix = max([await store.prefix_revision(p) for p in scope], default=0)
        except (StoreRequestError, StoreError) as e:
            return _refused(e)
        return JSONResponse({"prefixRevision": of_prefix})

    @r.get("/v1/store/watch")
    async def watch(request: Request, prefix: str = "", after: str | None = None) -> Response:
        try:
            scope = read_scope(prefix)
            since = _after(after)
        except StoreRequestError as e:
            return _refused(e)
        return StreamingResponse(_lines(store, prefix, scope, since, closing_event(request.app)),
                                 media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-cache"})

    @r.post("/v1/store/txn")
    async def txn(request: Request) -> Response:
        try:
            raw = await request.body()
            try:
                data = load_document(raw.decode("utf-8"), "txn.json")
            except (DocumentError, UnicodeDecodeError) as e:
                raise StoreRequestError(f"body: not a JSON document ({e})") from None
            t = admit_txn(data)
            await _check_node(store, principal_of(request), (*t.success, *t.failure))
            result = await store.txn(t.compares, t.success, t.failure)
        except (StoreRequestError, StoreError) as e:
            return _refused(e)
        return JSONResponse(txn_result_json(result))

    @r.post("/v1/store/leases")
    async def grant(request: Request) -> Response:
        try:
            data = load_document((await request.body()).decode("utf-8"), "lease.json")
            ttl = admit_lease_ttl(data)
            lease = await store.grant(ttl)
        except (DocumentError, UnicodeDecodeError) as e:
            return _error(400, f"body: not a JSON document ({e})")
        except (StoreRequestError, StoreError) as e:
            return _refused(e)
        return JSONResponse({"id": lease, "ttl": ttl})

    @r.put("/v1/store/leases/{lease}")
    async def keepalive(lease: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
        try:
            ttl = await store.keepalive(lease)
        except LeaseExpired as e:
            return _error(404, str(e), kind="lease")
        except StoreError as e:
            return _refused(e)
        return JSONResponse({"ttl": ttl})

    @r.delete("/v1/store/leases/{lease}")
    async def revoke(lease: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
        try:
            await store.revoke(lease)
        except StoreError as e:
            return _refused(e)
        return JSONResponse({"id": lease})

    return r


async def _check_node(store: Store, who: Principal | None, ops: Sequence[Op]) -> None:
    """A token bound to a node reports for that node only: its own `nodes/`, `alive/` keys,
    and the statuses of tasks placed on it."""
    node = who.node if who is not None else None
    if node is None:
        return
    for op in ops:
        owner = node_of_key(op.key)
        if owner is None and op.key.startswith(model.STATUS):
            task = await store.get(model.task_key(op.key[len(model.STATUS):]))
            placed = decode(task, Task) if task is not None else None
            owner = placed.node if isinstance(placed, Task) else ""
        if owner != node:
            raise StoreRequestError(f"{op.key}: a token of node {node} reports for that node "
                                    f"only ({'not placed here' if owner == '' else owner})",
                                    status=403)


async def _lines(store: Store, prefix: str, scope: tuple[str, ...], since: int,
                 closing: Any) -> AsyncIterator[bytes]:
    yield b"{}\n"  # the stream is open: the watcher knows it is attached
    try:
        async for batch in watch_until_closing(store, since, closing, KEEPALIVE_SECONDS,
                                               prefix=prefix):
            if batch is None:
                yield b"{}\n"
                continue
            shown: list[Event] = [e for e in batch if _within(e.key, scope)]
            if shown:
                yield json.dumps({"events": [event_json(e) for e in shown]}).encode() + b"\n"
            else:  # nothing readable changed: the watcher still moves on, resuming later
                yield json.dumps({"progress": batch[-1].revision}).encode() + b"\n"
    except Compacted as e:
        yield json.dumps({"compacted": e.compacted}).encode() + b"\n"
    except StoreError as e:
        yield json.dumps({"error": f"the store cannot answer: {e}"}).encode() + b"\n"
