"""The revisioned key/value store: the protocol, the embedded SQLite backend, and etcd.

`open_store` picks the backend: a data dir (SQLite, `kade up`) or etcd endpoints
(`kade server --etcd URL[,URL…]`); callers see the same `Store` either way."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kade.store.base import (
    CasFailed,
    Compacted,
    Compare,
    Delete,
    Entry,
    Event,
    LeaseExpired,
    LimitExceeded,
    NoQuorum,
    Op,
    Put,
    Store,
    StoreError,
    TxnResult,
    Unavailable,
)
from kade.store.etcd import NAMESPACE, EtcdStore
from kade.store.etcd_client import parse_endpoints
from kade.store.limits import Quota, default_quotas
from kade.store.sqlite import SqliteStore

__all__ = [
    "CasFailed",
    "Compacted",
    "Compare",
    "Delete",
    "Entry",
    "EtcdStore",
    "Event",
    "LeaseExpired",
    "LimitExceeded",
    "NoQuorum",
    "Op",
    "Put",
    "Quota",
    "SqliteStore",
    "Store",
    "StoreError",
    "TxnResult",
    "Unavailable",
    "open_store",
    "parse_endpoints",
]


async def open_store(
    data_dir: Path | None,
    *,
    quotas: Sequence[Quota] | None = None,
    etcd: str | Sequence[str] | None = None,
    namespace: str = NAMESPACE,
) -> Store:
    """Open the store: on etcd when `etcd` names endpoints (`http://10.0.0.1:2379,...`, keys
    under `namespace`), else the embedded store in `data_dir` (created 0700 if missing),
    owned exclusively.

    Without `quotas`, the KV's come from $KADE_KV_MAX_KEYS and $KADE_KV_MAX_BYTES (defaults in
    `kade.store.limits`); a bad value or endpoint raises StoreError naming it. etcd that no
    endpoint answers raises Unavailable naming each endpoint and why."""
    try:
        if quotas is None:
            quotas = default_quotas()
        urls = parse_endpoints(etcd) if etcd else None
        if urls is not None:
            return await EtcdStore(urls, namespace=namespace, quotas=quotas).connect()
    except ValueError as e:
        raise StoreError(str(e)) from None
    if data_dir is None:
        raise StoreError("the store needs a data dir or etcd endpoints")
    return SqliteStore(Path(data_dir), quotas=quotas)
