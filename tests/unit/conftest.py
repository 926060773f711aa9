"""Fixtures of the agent's unit tests: the real SQLite store and the recording fake driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kade.store import SqliteStore, Store
from tests.unit.test_agent_support import Driver


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store")
    yield s
    await s.close()


@pytest.fixture
def driver(store: Store) -> Driver:
    return Driver(store)
