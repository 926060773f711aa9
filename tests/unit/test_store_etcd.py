"""The store on etcd, where it differs from SQLite: members that go, quorum lost and back,
compaction, quotas counted across servers, namespaces, and how it is opened."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from kade.store import (
    Compacted,
    EtcdStore,
    Event,
    LimitExceeded,
    NoQuorum,
    StoreError,
    Unavailable,
    open_store,
)
from kade.store.limits import kv_quota
from tests.etcd import EtcdCluster, free_port, store_on

pytestmark = pytest.mark.timeout(180)


async def collect(
    watch: AsyncIterator[list[Event]], count: int, timeout: float = 30
) -> list[Event]:
    seen: list[Event] = []
    while len(seen) < count:
        seen += await asyncio.wait_for(anext(watch), timeout)
    return seen


async def test_a_member_down_is_not_noticed(etcd_cluster: EtcdCluster) -> None:
    async with store_on(etcd_cluster) as store:
        r0 = await store.put("apps/a", b"1")
        watch = store.watch("apps/", r0)
        waiter = asyncio.ensure_future(store.wait("apps/", r0, 60))
        preferred = store._gw.order()[0]  # the leader, which the store's follower watches too
        etcd_cluster.kill(store.endpoints.index(preferred))
        for i in range(20):
            await store.put(f"apps/{i}", str(i).encode())
        assert len((await store.range("apps/"))[0]) == 21
        events = await collect(watch, 20)
        assert [e.key for e in events] == [f"apps/{i}" for i in range(20)]
        assert [e.revision for e in events] == list(range(r0 + 1, r0 + 21))
        assert await asyncio.wait_for(waiter, 30) > r0  # blocking queries still wake
        await watch.aclose()  # type: ignore[attr-defined]


async def test_quorum_lost_refuses_writes_and_answers_reads(etcd_cluster: EtcdCluster) -> None:
    async with store_on(etcd_cluster) as store:
        r1 = await store.put("kv/a", b"1")
        watch = store.watch("kv/", r1)
        etcd_cluster.wait_revision(r1)  # the member left has it (a read may go to it alone)
        etcd_cluster.kill(1, 2)
        etcd_cluster.wait_until("no-leader")
        with pytest.raises(NoQuorum) as info:
            await store.put("kv/b", b"2")
        message = str(info.value)
        assert "etcd has no quorum" in message
        assert "writes are refused until it returns" in message
        for i in (1, 2):
            assert etcd_cluster.endpoints[i] in message  # the members it cannot reach
        with pytest.raises(NoQuorum):  # refused at once while it lasts
            await store.delete("kv/a")
        a = await store.get("kv/a")  # reads still answer
        assert a is not None and a.value == b"1"
        assert [e.key for e in (await store.range("kv/"))[0]] == ["kv/a"]
        assert await store.prefix_revision("kv/") == r1

        etcd_cluster.heal()
        for _ in range(100):  # the first writes may still find etcd electing a leader
            try:
                r2 = await store.put("kv/b", b"2")
                break
            except Unavailable:
                await asyncio.sleep(0.1)
        events = await collect(watch, 1)  # the watch resumed by itself
        assert [(e.revision, e.key) for e in events] == [(r2, "kv/b")]
        await watch.aclose()  # type: ignore[attr-defined]


async def test_unreachable_endpoints_are_named() -> None:
    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with pytest.raises(Unavailable) as info:
        await EtcdStore(urls).connect()
    assert "etcd is unreachable" in str(info.value)
    assert all(url in str(info.value) for url in urls)


async def test_open_store_picks_etcd_from_endpoints(etcd_cluster: EtcdCluster) -> None:
    store = await open_store(None, etcd=",".join(etcd_cluster.endpoints), namespace="open-t/")
    try:
        assert isinstance(store, EtcdStore)
        rev = await store.put("k", b"v")
        assert (await store.get("k")) is not None and rev > 0
        await store.delete("", prefix=True)
    finally:
        await store.close()
    for bad in ("ftp://x:1", "http://", ""):
        with pytest.raises(StoreError, match="etcd"):
            await open_store(None, etcd=bad)
    with pytest.raises(StoreError, match="namespace"):
        await open_store(None, etcd=etcd_cluster.endpoints, namespace="no-slash")


async def test_watch_from_compacted_history_raises(etcd_cluster: EtcdCluster) -> None:
    async with store_on(etcd_cluster) as store:
        r0 = await store.revision()
        for i in range(10):
            await store.put(f"k/{i}", b"")
        await store.compact(r0 + 5)
        with pytest.raises(Compacted) as info:
            await anext(store.watch("k/", r0))
        assert info.value.revision == r0 and info.value.compacted == r0 + 5
        kept = store.watch("k/", r0 + 5)
        assert [e.revision for e in await collect(kept, 5)] == list(range(r0 + 6, r0 + 11))
        await kept.aclose()  # type: ignore[attr-defined]


async def test_history_is_compacted_past_its_bound(etcd_cluster: EtcdCluster) -> None:
    bounded = await EtcdStore(etcd_cluster.endpoints, namespace="hist-t/", history=10).connect()
    try:
        r0 = await bounded.revision()
        for i in range(30):
            await bounded.put(f"k/{i}", b"")
        with pytest.raises(Compacted):
            await anext(bounded.watch("", r0))
        recent = bounded.watch("", r0 + 25)
        assert len(await collect(recent, 5)) == 5
        await recent.aclose()  # type: ignore[attr-defined]
        await bounded.delete("", prefix=True)
    finally:
        await bounded.close()


async def test_kv_quota_counts_across_servers(etcd_cluster: EtcdCluster) -> None:
    quotas = [kv_quota(max_keys=3, max_bytes=1_000)]
    async with store_on(etcd_cluster) as ns:
        a = await EtcdStore(etcd_cluster.endpoints, namespace=ns.ns.root, quotas=quotas).connect()
        b = await EtcdStore(etcd_cluster.endpoints, namespace=ns.ns.root, quotas=quotas).connect()
        try:
            await a.put("kv/1", b"x")
            await a.put("kv/2", b"x")
            await b.put("kv/3", b"x")
            for _ in range(100):  # a's follower sees b's write
                if a.usage()[0][1].keys == 3:
                    break
                await asyncio.sleep(0.05)
            rev = await a.revision()
            with pytest.raises(LimitExceeded) as info:
                await a.put("kv/4", b"x")
            assert info.value.kind == "keys" and "nothing was written" in str(info.value)
            assert await a.revision() == rev
            await a.put("kv/3", b"y" * 100)  # replacing a value adds no key
            with pytest.raises(LimitExceeded) as info:
                await b.put("kv/2", b"x" * 2_000)  # within a value's bound, past the bytes
            assert info.value.kind == "bytes"
            await b.delete("kv/1")
            await a.put("kv/4", b"x")  # room again
            with pytest.raises(LimitExceeded) as info:
                await a.put("apps/huge", b"x" * (2 * 1024 * 1024))
            assert info.value.kind == "value" and "etcd" in str(info.value)
        finally:
            await a.close()
            await b.close()


async def test_namespaces_keep_stores_apart(etcd_cluster: EtcdCluster) -> None:
    async with store_on(etcd_cluster) as one, store_on(etcd_cluster) as two:
        await one.put("apps/web", b"1")
        await one.delete("apps/web")  # leaves a delete mark beside the namespace
        await one.put("apps/api", b"1")
        await two.put("apps/web", b"2")
        assert [(e.key, e.value) for e in (await one.range(""))[0]] == [("apps/api", b"1")]
        assert [(e.key, e.value) for e in (await two.range(""))[0]] == [("apps/web", b"2")]


async def test_a_leader_without_quorum_knows_it_lost_the_lead(etcd_cluster: EtcdCluster) -> None:
    from kade.store.election import Election

    async with store_on(etcd_cluster) as store:
        lead = await asyncio.wait_for(Election(store, "scheduler", ttl=2).campaign(b"s1"), 10)
        etcd_cluster.kill(1, 2)
        # No keepalive can succeed: within a TTL its lease may have ended, so it stops leading.
        await asyncio.wait_for(lead.lost.wait(), 30)
        etcd_cluster.heal()
        await lead.resign()  # gives the lease back once etcd can take it
        for _ in range(100):
            try:
                again = await asyncio.wait_for(
                    Election(store, "scheduler", ttl=2).campaign(b"s2"), 10)
                break
            except Unavailable:
                await asyncio.sleep(0.1)
        leader = await Election(store, "scheduler").leader()
        assert leader is not None and leader.value == b"s2"
        await again.resign()


async def test_a_watch_leaves_a_member_that_stopped_answering(etcd_cluster: EtcdCluster) -> None:
    async with store_on(etcd_cluster, check_every=1.0) as store:
        r0 = await store.put("apps/a", b"1")
        watch = store.watch("apps/", r0)
        waiter = asyncio.ensure_future(store.wait("apps/", r0, 60))
        leader = store._gw.order()[0]  # both watches are on it
        etcd_cluster.pause(store.endpoints.index(leader))
        written = []
        while len(written) < 5:  # a write sent to the stopped member may or may not apply
            with contextlib.suppress(Unavailable):
                written.append(await store.put(f"apps/{len(written)}", b"x"))
        events = await collect(watch, 5)
        assert [e.revision for e in events][-5:] == written
        assert await asyncio.wait_for(waiter, 30) > r0
        await watch.aclose()  # type: ignore[attr-defined]
