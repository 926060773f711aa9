"""Requests of the store API (`/v1/store/*`), judged before they reach the store.

An agent of a cluster follows and reports through these; the document is bounded like every
other (size, depth, counts), each key is checked against what a node may read or write
(`kade.auth.policy.STORE_READ`/`STORE_WRITE`), and a refusal names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kade.auth.policy import STORE_WRITE, store_read_scope, store_writable
from kade.store.base import Compare, Delete, Op, Put
from kade.store.wire import WireError, compare_from, op_from
from kade.templates.kvdata import MAX_KEY_BYTES, MAX_TXN_OPS


class StoreRequestError(ValueError):
    """A store request kade refuses; `status` is the HTTP answer (400 or 403)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StoreTxn:
    compares: tuple[Compare, ...]
    success: tuple[Op, ...]
    failure: tuple[Op, ...]


def check_key(key: str, what: str = "key") -> str:
    if not key:
        raise StoreRequestError(f"{what}: must not be empty")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise StoreRequestError(f"{what}: longer than {MAX_KEY_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise StoreRequestError(f"{what}: contains a control character")
    return key


def read_scope(prefix: str, what: str = "prefix") -> tuple[str, ...]:
    """The readable prefixes a range or watch of `prefix` is answered from (403 if none)."""
    if len(prefix.encode()) > MAX_KEY_BYTES:
        raise StoreRequestError(f"{what}: longer than {MAX_KEY_BYTES} bytes")
    scope = store_read_scope(prefix)
    if scope is None:
        raise StoreRequestError(f"{what}: {prefix!r} is not readable through the store API",
                                status=403)
    return scope


MIN_LEASE_TTL, MAX_LEASE_TTL = 1.0, 300.0


def admit_lease_ttl(data: Any) -> float:
    """`{"ttl": seconds}` for a new lease, within bounds."""
    ttl = data.get("ttl") if isinstance(data, dict) else None
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) \
            or not MIN_LEASE_TTL <= ttl <= MAX_LEASE_TTL:
        raise StoreRequestError(f"ttl: must be a number of seconds from {MIN_LEASE_TTL:g} to "
                                f"{MAX_LEASE_TTL:g}")
    return float(ttl)


def admit_txn(data: Any) -> StoreTxn:
    """A transaction document (`kade.store.wire.txn_json`) → checked compares and ops."""
    if not isinstance(data, dict):
        raise StoreRequestError("body: must be an object with compares, success, failure")
    parts: dict[str, list[Any]] = {}
    for name in ("compares", "success", "failure"):
        items = data.get(name, [])
        if not isinstance(items, list):
            raise StoreRequestError(f"{name}: must be a list")
        parts[name] = items
    if sum(len(v) for v in parts.values()) > MAX_TXN_OPS:
        raise StoreRequestError(f"body: more than {MAX_TXN_OPS} compares and operations")
    try:
        compares = tuple(compare_from(c, f"compares[{i}]")
                         for i, c in enumerate(parts["compares"]))
        success = tuple(op_from(o, f"success[{i}]") for i, o in enumerate(parts["success"]))
        failure = tuple(op_from(o, f"failure[{i}]") for i, o in enumerate(parts["failure"]))
    except WireError as e:
        raise StoreRequestError(str(e)) from None
    for i, c in enumerate(compares):
        check_key(c.key, f"compares[{i}].key")
        if store_read_scope(c.key) != (c.key,):
            raise StoreRequestError(f"compares[{i}].key: {c.key!r} is not readable through "
                                    "the store API", status=403)
    for name, ops in (("success", success), ("failure", failure)):
        for i, op in enumerate(ops):
            key = check_key(op.key, f"{name}[{i}].key")
            if not store_writable(key):
                raise StoreRequestError(
                    f"{name}[{i}].key: {key!r} is not writable through the store API (only "
                    f"under {', '.join(STORE_WRITE)})", status=403)
            if isinstance(op, Delete) and op.prefix and not key.endswith("/"):
                raise StoreRequestError(f"{name}[{i}].key: a prefix delete needs a key "
                                        "ending in /")
            if isinstance(op, Put) and len(op.value) > 1 << 20:
                raise StoreRequestError(f"{name}[{i}].value: larger than 1 MiB")
    return StoreTxn(compares, success, failure)
