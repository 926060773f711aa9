"""Leases, on both backends: keys under a lease go (a delete a watcher sees) when it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kade.store import Event, LeaseExpired, Put, SqliteStore, Store
from kade.testing.clock import FakeClock
from tests.etcd import store_on

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["sqlite", "etcd"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "etcd":
        async with store_on(request.getfixturevalue("etcd_cluster")) as etcd:
            yield etcd
        return
    s = SqliteStore(tmp_path / "data")
    yield s
    await s.close()


async def deletes(watch: AsyncIterator[list[Event]], count: int) -> list[Event]:
    seen: list[Event] = []
    while len([e for e in seen if e.kind == "delete"]) < count:
        seen += await asyncio.wait_for(anext(watch), 15)
    return [e for e in seen if e.kind == "delete"]


async def test_keys_under_a_lease_go_when_it_expires(store: Store) -> None:
    r0 = await store.revision()
    lease = await store.grant(1)
    await store.put("nodes/n1", b"up", lease=lease)
    await store.txn([], [Put("nodes/n1/attrs", b"az=1a", lease), Put("nodes/kept", b"x")])
    watch = store.watch("nodes/", r0)
    gone = await deletes(watch, 2)  # no keepalive: the lease ends by itself
    await watch.aclose()  # type: ignore[attr-defined]
    assert sorted(e.key for e in gone) == ["nodes/n1", "nodes/n1/attrs"]
    assert len({e.revision for e in gone}) == 1  # one revision for all of a lease's keys
    assert gone[0].prev is not None
    assert [e.key for e in (await store.range("nodes/"))[0]] == ["nodes/kept"]
    with pytest.raises(LeaseExpired):
        await store.keepalive(lease)
    rev = await store.revision()
    with pytest.raises(LeaseExpired):
        await store.put("nodes/n2", b"up", lease=lease)
    assert await store.revision() == rev and await store.get("nodes/n2") is None


async def test_revoke_deletes_what_the_lease_holds(store: Store) -> None:
    lease = await store.grant(60)
    assert await store.keepalive(lease) >= 59
    await store.put("s/a", b"1", lease=lease)
    await store.put("s/b", b"1", lease=lease)
    await store.put("s/b", b"2")  # written again without the lease: no longer under it
    rev = await store.revision()
    await store.revoke(lease)
    assert await store.revision() == rev + 1
    assert [(e.key, e.value) for e in (await store.range("s/"))[0]] == [("s/b", b"2")]
    await store.revoke(lease)  # already gone: nothing to do
    assert await store.revision() == rev + 1


async def test_grant_refuses_a_bad_ttl(store: Store) -> None:
    for ttl in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ttl"):
            await store.grant(ttl)


async def test_a_lease_kept_alive_keeps_its_keys(tmp_path: Path) -> None:
    clock = FakeClock()
    s = SqliteStore(tmp_path, clock=clock)
    lease = await s.grant(10)
    await s.put("n", b"up", lease=lease)
    for _ in range(5):
        await clock.advance(8)
        assert await s.keepalive(lease) == 10
    assert await s.get("n") is not None
    await clock.advance(9.9)
    assert await s.get("n") is not None
    await clock.advance(0.2)
    assert await s.get("n") is None
    await s.close()


async def test_keys_of_a_previous_process_lease_are_deleted_at_open(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path)
    lease = await s.grant(60)
    await s.put("nodes/n1", b"up", lease=lease)
    await s.put("apps/web", b"spec")
    await s.close()  # the lease dies with the process
    s = SqliteStore(tmp_path)
    assert await s.get("nodes/n1") is None
    assert await s.get("apps/web") is not None
    assert await s.revision() == 3
    watch = s.watch("nodes/", 0)
    events: list[Event] = []
    while len(events) < 2:
        events += await asyncio.wait_for(anext(watch), 10)
    assert [(e.revision, e.kind) for e in events] == [(1, "put"), (3, "delete")]
    await watch.aclose()  # type: ignore[attr-defined]
    await s.close()
    s = SqliteStore(tmp_path)
    assert await s.revision() == 3  # nothing left to delete
    await s.close()


async def test_an_etcd_lease_outlives_the_store_that_granted_it(
        etcd_cluster: object) -> None:
    from tests.etcd import EtcdCluster

    assert isinstance(etcd_cluster, EtcdCluster)
    async with store_on(etcd_cluster) as first:
        lease = await first.grant(30)
        await first.put("n", b"up", lease=lease)
        second = await type(first)(etcd_cluster.endpoints, namespace=first.ns.root).connect()
        try:
            await first.close()
            assert await second.keepalive(lease) >= 29  # another server keeps it alive
            await second.revoke(lease)
            assert await second.get("n") is None
        finally:
            await second.close()
