"""Leader election, on both backends: one leader at a time, the next when it goes, and the
writes of a deposed leader refused (fencing)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kade.store import Compare, Put, SqliteStore, Store
from kade.store.election import Election, Leader, NotLeader
from tests.etcd import store_on

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["sqlite", "etcd"])
async def servers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two servers' views of one store: two etcd clients, or SQLite's one process."""
    if request.param == "etcd":
        cluster = request.getfixturevalue("etcd_cluster")
        async with store_on(cluster) as a, store_on(cluster, a.ns.root) as b:
            yield a, b
        return
    s = SqliteStore(tmp_path / "data")
    yield s, s
    await s.close()


async def test_one_candidate_leads_at_once_and_resigns(servers: tuple[Store, Store]) -> None:
    a, _ = servers
    election = Election(a, "scheduler", ttl=5)
    assert await election.leader() is None
    lead = await asyncio.wait_for(election.campaign(b"server-1"), 10)
    leader = await election.leader()
    assert leader is not None and leader.value == b"server-1" and leader.key == lead.key
    await lead.proclaim(b"server-1 at 10.0.0.1")
    leader = await election.leader()
    assert leader is not None and leader.value == b"server-1 at 10.0.0.1"
    rev = await lead.put("state/owner", b"1")
    assert (await a.get("state/owner")) is not None and rev > 0
    await lead.resign()
    assert lead.lost.is_set()
    assert await election.leader() is None


async def test_the_next_candidate_leads_when_the_leader_resigns(
        servers: tuple[Store, Store]) -> None:
    a, b = servers
    first = await asyncio.wait_for(Election(a, "sched", ttl=5).campaign(b"one"), 10)
    waiting = asyncio.ensure_future(Election(b, "sched", ttl=5).campaign(b"two"))
    seen: list[bytes | None] = []

    async def watch_leaders() -> None:
        async for leader in Election(b, "sched").observe():
            seen.append(leader.value if leader else None)

    observer = asyncio.ensure_future(watch_leaders())
    await asyncio.sleep(0.5)
    assert not waiting.done()  # one leader at a time
    await first.resign()
    second = await asyncio.wait_for(waiting, 10)
    leader = await Election(a, "sched").leader()
    assert leader is not None and leader.value == b"two"
    for _ in range(100):
        if seen[-1:] == [b"two"]:
            break
        await asyncio.sleep(0.05)
    assert seen[0] == b"one" and seen[-1] == b"two"
    observer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await observer
    await second.resign()


async def test_a_deposed_leader_cannot_write(servers: tuple[Store, Store]) -> None:
    a, b = servers
    old = await asyncio.wait_for(Election(a, "deploy", ttl=5).campaign(b"old"), 10)
    await old.put("apps/web", b"v1")
    # Its lease ends while it is paused (here: revoked from outside); another takes over.
    await b.revoke(old.lease)
    new = await asyncio.wait_for(Election(b, "deploy", ttl=5).campaign(b"new"), 10)
    with pytest.raises(NotLeader):
        await old.put("apps/web", b"stale")
    with pytest.raises(NotLeader):
        await old.txn([Compare("apps/web", 0)], [Put("apps/other", b"x")])
    entry = await a.get("apps/web")
    assert entry is not None and entry.value == b"v1"
    assert await a.get("apps/other") is None
    assert old.lost.is_set()
    await new.put("apps/web", b"v2")
    await new.resign()


async def test_a_leader_notices_its_lease_ended(servers: tuple[Store, Store]) -> None:
    a, b = servers
    lead = await asyncio.wait_for(Election(a, "monitor", ttl=1).campaign(b"x"), 10)
    await b.revoke(lead.lease)
    await asyncio.wait_for(lead.lost.wait(), 10)
    assert await Election(b, "monitor").leader() is None


async def test_a_failed_compare_of_the_leader_is_not_a_lost_lead(
        servers: tuple[Store, Store]) -> None:
    a, _ = servers
    lead = await asyncio.wait_for(Election(a, "sched2", ttl=5).campaign(b"x"), 10)
    result = await lead.txn([Compare("apps/web", 12345)], [Put("apps/web", b"x")])
    assert not result.succeeded and not lead.lost.is_set()
    await lead.resign()


async def test_a_cancelled_campaign_withdraws(servers: tuple[Store, Store]) -> None:
    a, b = servers
    first = await asyncio.wait_for(Election(a, "e", ttl=5).campaign(b"one"), 10)
    waiting = asyncio.ensure_future(Election(b, "e", ttl=5).campaign(b"two"))
    await asyncio.sleep(0.3)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await first.resign()
    assert await Election(a, "e").leader() is None
    assert (await a.range("elect/e/"))[0] == []


def test_election_names_are_checked() -> None:
    for bad in ("", "a/b", "x\n"):
        with pytest.raises(ValueError, match="election name"):
            Election(None, bad)  # type: ignore[arg-type]
    assert Leader("k", b"v", 1, 1).value == b"v"
