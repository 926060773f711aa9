"""The revisioned key/value store: the protocol, and the embedded SQLite backend."""

from __future__ import annotations

from pathlib import Path

from kade.store.base import (
    CasFailed,
    Compacted,
    Compare,
    Delete,
    Entry,
    Event,
    Op,
    Put,
    Store,
    StoreError,
    TxnResult,
)
from kade.store.sqlite import SqliteStore

__all__ = [
    "CasFailed",
    "Compacted",
    "Compare",
    "Delete",
    "Entry",
    "Event",
    "Op",
    "Put",
    "SqliteStore",
    "Store",
    "StoreError",
    "TxnResult",
    "open_store",
]


async def open_store(data_dir: Path) -> Store:
    """Open the embedded store in `data_dir` (created if missing), owning it exclusively."""
    return SqliteStore(Path(data_dir))
