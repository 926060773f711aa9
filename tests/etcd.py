"""Real etcd members for tests: a 3-member cluster on 127.0.0.1, and stores on it.

Fixtures (registered for every test by tests/conftest.py):
- `etcd_cluster` (session): an `EtcdCluster` of 3 members on free ports with data dirs under
  a tmp dir, started once (about a second) and stopped at the end. A test may `kill(i)`, `pause(i)`
  (SIGSTOP) or `restart(i)` members (two killed: quorum lost); `heal()` resumes and starts
  every member again.
- `etcd_store` (function): an `EtcdStore` on that cluster under a namespace of its own, so
  tests share the cluster without seeing each other's keys; the cluster is healed after it.
  `store_on(cluster)` gives the same from inside another fixture (a test parametrized over
  backends asks for `etcd_cluster` with request.getfixturevalue, then opens `store_on` it).

Members run with short heartbeats and elections (a new leader within a second), and accept
transactions of up to 2,048 operations.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kade.store.etcd import EtcdStore
from kade.testing.etcd import EtcdCluster, free_port  # noqa: F401 (tests import it from here)


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster]:
    root = Path(tempfile.mkdtemp(prefix="kade-etcd-"))
    cluster = EtcdCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def store_on(cluster: EtcdCluster, namespace: str | None = None,
                   **options: float) -> AsyncIterator[EtcdStore]:
    """An EtcdStore on `cluster` under `namespace` (default: one of its own); the cluster is
    healed after. Two stores on one namespace are two kade servers of one cluster."""
    namespace = namespace or f"t-{uuid.uuid4().hex[:12]}/"
    options = {"read_timeout": 1.0, "write_timeout": 2.0, **options}
    store = await EtcdStore(cluster.endpoints, namespace=namespace, **options).connect()
    try:
        yield store
    finally:
        with contextlib.suppress(Exception):
            await store.close()
        cluster.heal()


@pytest.fixture
async def etcd_store(etcd_cluster: EtcdCluster) -> AsyncIterator[EtcdStore]:
    async with store_on(etcd_cluster) as store:
        yield store
