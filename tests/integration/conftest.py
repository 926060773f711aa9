from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Kade
from tests.integration.webhooks import Hook


@pytest.fixture
def kade(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade")
    try:
        yield k.start()
    finally:
        k.cleanup()


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A webhook receiver (alerts' notices)."""
    h = Hook()
    yield h
    h.close()
