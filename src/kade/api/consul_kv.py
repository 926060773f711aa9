"""Consul's KV API (`/v1/kv/...`, `/v1/txn`) over the store, so existing Consul clients,
consul-template and `curl` scripts work unchanged.

User keys live in the store under `kv/`; Consul's `Flags` travel inside the stored bytes
(`kade.templates.kvdata`). `CreateIndex`/`ModifyIndex` are store revisions, so `?cas=` is a
compare-and-swap on the key's mod_revision. Errors are Consul's: plain text with a 4xx status
(400 naming the bad parameter, 413 for sizes), and a failed transaction is a 409 with
`{"Errors": [{"OpIndex", "What"}]}`. Sessions and locks are not offered.

The store enforces the KV's quotas (`kade.store.limits`); a write past one is answered 507
with the store's message naming the limit (Consul has no such limit, so no client expects a
particular answer). Bodies are read as a stream and refused as soon as they pass their cap:
a 10 MB value is never held in memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from kade.api.consul_common import block, set_headers
from kade.model import KV
from kade.store.base import CasFailed, Compare, Delete, Entry, LimitExceeded, Op, Put, Store
from kade.templates.kvdata import (
    MAX_FLAGS,
    MAX_KEY_BYTES,
    MAX_TXN_OPS,
    MAX_VALUE_BYTES,
    decode_kv_value,
    encode_kv_value,
)

MAX_TXN_BYTES = 1024 * 1024  # more than Consul's 512 KiB: one 512 KiB value fits, in base64
TXN_RETRIES = 8
_PENDING = -1  # an index not known until the transaction commits


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_key(raw: str, *, allow_empty: bool = False, what: str = "key") -> str:
    """A user key as Consul accepts it; leading slashes are dropped (`/a/b` is `a/b`)."""
    key = raw.lstrip("/")
    if not key and not allow_empty:
        raise BadRequest(400, "Missing key name")
    if "\x00" in key:
        raise BadRequest(400, f"{what}: must not contain NUL")
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        raise BadRequest(400, f"{what}: is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise BadRequest(400, f"{what}: too long ({size} bytes > {MAX_KEY_BYTES})")
    return key


def _check_utf8(request: Request) -> None:
    """The decoded path has invalid bytes replaced; refuse them instead of storing U+FFFD."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        try:
            urllib.parse.unquote_to_bytes(raw.split(b"?", 1)[0]).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(400, "key: is not valid UTF-8") from None


def parse_uint(name: str, text: str | None, limit: int = MAX_FLAGS) -> int:
    if text is None or not (text.strip().isascii() and text.strip().isdigit()):
        raise BadRequest(400, f"{name}: {text!r} is not an unsigned whole number")
    value = int(text)
    if value > limit:
        raise BadRequest(400, f"{name}: {value} is larger than {limit}")
    return value


def entry_json(e: Entry, *, with_value: bool = True) -> dict[str, Any]:
    value, flags = decode_kv_value(e.value)
    return {
        "LockIndex": 0,
        "Key": e.key[len(KV):],
        "Flags": flags,
        "Value": base64.b64encode(value).decode() if value and with_value else None,
        "CreateIndex": e.create_revision,
        "ModifyIndex": e.mod_revision,
    }


def _flag(request: Request, name: str) -> bool:
    return name in request.query_params


def _json(data: Any, index: int, status: int = 200) -> JSONResponse:
    response = JSONResponse(data, status_code=status)
    set_headers(response, index)
    return response


Refusal = BadRequest | HTTPException | LimitExceeded
INSUFFICIENT_STORAGE = 507


def _error(e: Refusal) -> Response:
    if isinstance(e, HTTPException):
        return PlainTextResponse(str(e.detail), status_code=e.status_code)
    if isinstance(e, LimitExceeded):
        status = 413 if e.kind == "value" else INSUFFICIENT_STORAGE
        return PlainTextResponse(str(e), status_code=status)
    return PlainTextResponse(e.message, status_code=e.status)


def _too_large(what: str, limit: int, size: int | None) -> BadRequest:
    """413 naming the limit, and the size when the request said it (Content-Length)."""
    told = f" (the body is {size} bytes)" if size is not None else ""
    if what == "value":  # Consul's words
        return BadRequest(413, f"Value exceeds {limit} byte limit{told}")
    return BadRequest(413, f"{what} exceeds {limit} byte limit{told}")


async def _read_body(request: Request, limit: int, what: str) -> bytes:
    """The body, read chunk by chunk and refused (413) the moment it passes `limit`."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(what, limit, int(length))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(what, limit, None)
        chunks.append(chunk)
    return b"".join(chunks)


KvHandler = Callable[[Store, str, Request], Awaitable[Response]]


def kv_router(store: Store, *, max_txn_ops: int = MAX_TXN_OPS) -> APIRouter:
    r = APIRouter(tags=["consul"])

    async def answer(handler: KvHandler, key: str, request: Request) -> Response:
        try:
            _check_utf8(request)
            return await handler(store, key, request)
        except (BadRequest, HTTPException, LimitExceeded) as e:
            return _error(e)

    @r.get("/v1/kv/{key:path}")
    async def get_kv(key: str, request: Request) -> Response:
        return await answer(_get, key, request)

    @r.put("/v1/kv/{key:path}")
    async def put_kv(key: str, request: Request) -> Response:
        return await answer(_put, key, request)

    @r.delete("/v1/kv/{key:path}")
    async def delete_kv(key: str, request: Request) -> Response:
        return await answer(_delete, key, request)

    @r.put("/v1/txn")
    @r.post("/v1/txn")
    async def txn(request: Request) -> Response:
        try:
            body = await _read_body(request, MAX_TXN_BYTES, "Transaction")
            ops = parse_txn(body, max_txn_ops)
            status, data, index = await run_txn(store, ops)
            return _json(data, index, status)
        except (BadRequest, HTTPException, LimitExceeded) as e:
            return _error(e)

    return r


async def _get(store: Store, raw_key: str, request: Request) -> Response:
    keys_only, recurse = _flag(request, "keys"), _flag(request, "recurse")
    key = check_key(raw_key, allow_empty=keys_only or recurse)
    prefix = KV + key
    index = await block(store, prefix, request)
    if keys_only:
        entries, _ = await store.range(prefix)
        sep = request.query_params.get("separator") or ""
        names: list[str] = []
        for e in entries:
            name = e.key[len(KV):]
            cut = name.find(sep, len(key)) if sep else -1
            if cut >= 0:
                name = name[:cut + len(sep)]
            if not names or names[-1] != name:
                names.append(name)
        return _json(names, index) if names else _not_found(index)
    if recurse:
        entries, _ = await store.range(prefix)
        if not entries:
            return _not_found(index)
        return _json([entry_json(e) for e in entries], index)
    entry = await store.get(prefix)
    if entry is None:
        return _not_found(index)
    if _flag(request, "raw"):
        value = decode_kv_value(entry.value)[0]
        try:
            value.decode()
            media = "text/plain; charset=utf-8"
        except UnicodeDecodeError:
            media = "application/octet-stream"
        response = Response(value, media_type=media)
        set_headers(response, index)
        return response
    return _json([entry_json(entry)], index)


def _not_found(index: int) -> Response:
    response = Response(status_code=404)
    set_headers(response, index)
    return response


async def _put(store: Store, raw_key: str, request: Request) -> Response:
    q = request.query_params
    key = check_key(raw_key)
    for name in ("acquire", "release"):
        if name in q:
            raise BadRequest(400, f"{name}: sessions and locks are not supported by kade")
    flags = parse_uint("flags", q.get("flags")) if "flags" in q else 0
    cas = parse_uint("cas", q.get("cas")) if "cas" in q else None
    value = await _read_body(request, MAX_VALUE_BYTES, "value")
    try:
        revision = await store.put(KV + key, encode_kv_value(value, flags), expect=cas)
    except CasFailed:
        return _json(False, await store.prefix_revision(KV + key))
    return _json(True, revision)


async def _delete(store: Store, raw_key: str, request: Request) -> Response:
    q = request.query_params
    recurse = "recurse" in q
    key = check_key(raw_key, allow_empty=recurse)
    if "cas" in q:
        if recurse:
            raise BadRequest(400, "cas: cannot be combined with recurse")
        cas = parse_uint("cas", q.get("cas"))
        current = await store.get(KV + key)
        if current is None:  # Consul: nothing to delete counts as done
            return _json(True, await store.prefix_revision(KV + key))
        try:
            revision = await store.delete(KV + key, expect=cas)
        except CasFailed:
            return _json(False, await store.prefix_revision(KV + key))
        return _json(True, revision)
    revision = await store.delete(KV + key, prefix=recurse)
    return _json(True, revision)


# -- transactions ----------------------------------------------------------------------------

VERBS = {"set", "cas", "get", "get-tree", "check-index", "check-not-exists", "delete",
         "delete-tree", "delete-cas"}
_NO_SESSIONS = {"lock", "unlock", "check-session"}


@dataclass(frozen=True, slots=True)
class TxnOp:
    verb: str
    key: str
    value: bytes = b""
    flags: int = 0
    index: int = 0


def parse_txn(body: bytes, max_ops: int = MAX_TXN_OPS) -> list[TxnOp]:
    """Consul's transaction body → operations, all validated before anything runs."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BadRequest(400, f"Failed to parse body: {e}") from None
    if not isinstance(data, list):
        raise BadRequest(400, "Failed to parse body: expected a list of operations")
    if len(data) > max_ops:
        raise BadRequest(413, f"Transaction contains too many operations "
                              f"({len(data)} > {max_ops})")
    return [_parse_op(i, item) for i, item in enumerate(data)]


def _parse_op(i: int, item: Any) -> TxnOp:
    if not isinstance(item, dict) or len(item) != 1:
        raise BadRequest(400, f"op {i}: expected an object with one of KV, Node, Service, Check")
    kind, raw = next(iter(item.items()))
    if kind.lower() != "kv":
        raise BadRequest(400, f"op {i}: {kind} operations are not supported (only KV)")
    if not isinstance(raw, dict):
        raise BadRequest(400, f"op {i}: KV must be an object")
    fields = {str(k).lower(): v for k, v in raw.items()}
    verb = fields.get("verb")
    if not isinstance(verb, str):
        raise BadRequest(400, f"op {i}: Verb: is required")
    key = fields.get("key") or ""
    if not isinstance(key, str):
        raise BadRequest(400, f"op {i}: Key: must be a string")
    tree = verb in ("get-tree", "delete-tree")
    try:
        key = check_key(key, allow_empty=tree or verb not in VERBS, what="Key")
    except BadRequest as e:
        raise BadRequest(400, f"op {i}: {e.message}") from None
    value = b""
    encoded = fields.get("value")
    if encoded is not None:
        if not isinstance(encoded, str):
            raise BadRequest(400, f"op {i}: Value: must be a base64 string")
        try:
            value = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(400, f"op {i}: Value: is not valid base64") from None
        if len(value) > MAX_VALUE_BYTES:
            raise BadRequest(413, f"Value for key {_q(key)} is too large "
                                  f"({len(value)} > {MAX_VALUE_BYTES} bytes)")
    flags = _op_uint(i, "Flags", fields.get("flags"))
    index = _op_uint(i, "Index", fields.get("index"))
    return TxnOp(verb, key, value, flags, index)


def _op_uint(i: int, name: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FLAGS:
        raise BadRequest(400, f"op {i}: {name}: must be an unsigned whole number")
    return value


@dataclass
class _Val:
    value: bytes
    flags: int
    create: int
    modify: int


def _result(key: str, v: _Val, with_value: bool) -> dict[str, Any]:
    return {"KV": {
        "LockIndex": 0, "Key": key, "Flags": v.flags,
        "Value": base64.b64encode(v.value).decode() if with_value and v.value else None,
        "CreateIndex": v.create, "ModifyIndex": v.modify,
    }}


async def run_txn(store: Store, ops: Sequence[TxnOp]) -> tuple[int, dict[str, Any], int]:
    """Run a transaction atomically: evaluate it against a snapshot, then commit its writes
    guarded by the mod_revision of every key it read; retried when another write won."""
    for _ in range(TXN_RETRIES):
        seen: dict[str, _Val | None] = {}
        for op in ops:
            if op.verb in ("get-tree", "delete-tree"):
                entries, _rev = await store.range(KV + op.key)
                for e in entries:
                    seen.setdefault(e.key[len(KV):], _val(e))
            elif op.key not in seen:
                seen[op.key] = _val(await store.get(KV + op.key))
        compares = [Compare(KV + k, v.modify if v else 0) for k, v in seen.items()]
        results, errors, writes = _evaluate(ops, dict(seen))
        if errors:
            return 409, {"Results": None, "Errors": errors}, await store.revision()
        outcome = await store.txn(compares, writes)
        if not outcome.succeeded:
            continue
        for item in results:
            kv = item["KV"]
            for field in ("CreateIndex", "ModifyIndex"):
                if kv[field] == _PENDING:
                    kv[field] = outcome.revision
        return 200, {"Results": results or None, "Errors": None}, outcome.revision
    what = "the keys kept changing concurrently; try again"
    return 409, {"Results": None, "Errors": [{"OpIndex": 0, "What": what}]}, \
        await store.revision()


def _q(text: str) -> str:
    """Go's %q, which Consul's messages use."""
    return json.dumps(text, ensure_ascii=False)


def _val(e: Entry | None) -> _Val | None:
    if e is None:
        return None
    value, flags = decode_kv_value(e.value)
    return _Val(value, flags, e.create_revision, e.mod_revision)


def _evaluate(ops: Sequence[TxnOp], state: dict[str, _Val | None]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Op]]:
    """Apply `ops` in order to `state` (in memory): results, Consul-shaped errors, and the
    store writes that do the same."""
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    writes: list[Op] = []

    def fail(i: int, what: str) -> None:
        errors.append({"OpIndex": i, "What": what})

    for i, op in enumerate(ops):
        old = state.get(op.key)
        verb = op.verb
        if verb in ("set", "cas"):
            if verb == "cas" and (
                (op.index == 0 and old is not None)
                or (op.index != 0 and (old is None or old.modify != op.index))
            ):
                fail(i, f"failed to set key {_q(op.key)}, index is stale")
                continue
            new = _Val(op.value, op.flags, old.create if old else _PENDING, _PENDING)
            state[op.key] = new
            writes.append(Put(KV + op.key, encode_kv_value(op.value, op.flags)))
            results.append(_result(op.key, new, with_value=False))
        elif verb == "get":
            if old is None:
                fail(i, f"key {_q(op.key)} doesn't exist")
            else:
                results.append(_result(op.key, old, with_value=True))
        elif verb == "get-tree":
            for k in sorted(state):
                v = state[k]
                if k.startswith(op.key) and v is not None:
                    results.append(_result(k, v, with_value=True))
        elif verb == "check-index":
            if old is None:
                fail(i, f"key {_q(op.key)} doesn't exist")
            elif old.modify != op.index:
                fail(i, f"current modify index {old.modify} != {op.index}")
            else:
                results.append(_result(op.key, old, with_value=False))
        elif verb == "check-not-exists":
            if old is not None:
                fail(i, f"key {_q(op.key)} exists")
        elif verb in ("delete", "delete-cas"):
            if verb == "delete-cas" and old is not None and old.modify != op.index:
                fail(i, f"failed to delete key {_q(op.key)}, index is stale")
                continue
            state[op.key] = None
            writes.append(Delete(KV + op.key))
        elif verb == "delete-tree":
            for k in state:
                if k.startswith(op.key):
                    state[k] = None
            writes.append(Delete(KV + op.key, prefix=True))
        elif verb in _NO_SESSIONS:
            fail(i, f"verb {_q(verb)} is not supported: kade has no sessions")
        else:
            fail(i, f"unknown KV verb {_q(verb)}")
    return results, errors, writes
