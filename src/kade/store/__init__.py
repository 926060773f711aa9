"""The revisioned key/value store: the protocol, and the embedded SQLite backend."""

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
    LimitExceeded,
    Op,
    Put,
    Store,
    StoreError,
    TxnResult,
)
from kade.store.limits import Quota, default_quotas
from kade.store.sqlite import SqliteStore

__all__ = [
    "CasFailed",
    "Compacted",
    "Compare",
    "Delete",
    "Entry",
    "Event",
    "LimitExceeded",
    "Op",
    "Put",
    "Quota",
    "SqliteStore",
    "Store",
    "StoreError",
    "TxnResult",
    "open_store",
]


async def open_store(data_dir: Path, *, quotas: Sequence[Quota] | None = None) -> Store:
    """Open the embedded store in `data_dir` (created 0700 if missing), owning it exclusively.

    Without `quotas`, the KV's come from $KADE_KV_MAX_KEYS and $KADE_KV_MAX_BYTES (defaults in
    `kade.store.limits`); a bad value raises StoreError naming the variable."""
    if quotas is None:
        try:
            quotas = default_quotas()
        except ValueError as e:
            raise StoreError(str(e)) from None
    return SqliteStore(Path(data_dir), quotas=quotas)
