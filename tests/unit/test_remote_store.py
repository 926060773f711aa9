"""An agent's view of the store through a server's HTTP store API (`kade.client.remote_store`
against `kade.api.store_api`, a real uvicorn on loopback): the same protocol as in process,
only what a node may see, failing over between servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from kade import model
from kade.admission.store_ops import StoreRequestError, admit_txn
from kade.agent.liveness import Liveness
from kade.api.app import create_app
from kade.api.closing import closing_event
from kade.auth.tokens import create_token
from kade.client.remote_store import Refused, RemoteStore, Unreachable
from kade.model import Task
from kade.store import CasFailed, Compare, Put, SqliteStore
from kade.store.base import Compacted, Event, LeaseExpired

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    store: SqliteStore
    token: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        closing_event(self.server.config.app).set()
        self.server.should_exit = True
        await self.task


async def serve(store: SqliteStore, token: str, port: int | None = None) -> Server:
    port = port or free_port()
    app = create_app(store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="off", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
        await asyncio.sleep(0.02)
    return Server(f"http://127.0.0.1:{port}", store, token, server, task)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, str]]:
    store = SqliteStore(tmp_path / "store")
    token, _ = await create_token(store, role="node", now=time.time())
    yield store, token
    await store.close()


@pytest.fixture
async def server(backend: tuple[SqliteStore, str]) -> AsyncIterator[Server]:
    s = await serve(*backend)
    yield s
    with contextlib.suppress(Exception):
        await s.stop()


@pytest.fixture
async def remote(server: Server) -> AsyncIterator[RemoteStore]:
    r = RemoteStore([server.url], server.token, keepalive=0.5)
    yield r
    await r.close()


async def next_batch(watch: AsyncIterator[list[Event]]) -> list[Event]:
    return await asyncio.wait_for(anext(watch), 10)


async def test_reads_and_reports_as_in_process(server: Server, remote: RemoteStore) -> None:
    local = server.store
    await local.put("tasks/web.1", b'{"id": "web.1"}')
    entries, revision = await remote.range(model.TASKS)
    assert [(e.key, e.value) for e in entries] == [("tasks/web.1", b'{"id": "web.1"}')]
    assert revision == await local.revision() == await remote.revision()

    rev = await remote.put("status/web.1", b"running")
    assert (await local.get("status/web.1")).value == b"running"  # type: ignore[union-attr]
    assert (await remote.get("status/web.1")).mod_revision == rev  # type: ignore[union-attr]
    assert await remote.prefix_revision("status/") == rev

    with pytest.raises(CasFailed):  # a guarded write that lost the race
        await remote.put("status/web.1", b"stale", expect=rev - 1)
    result = await remote.txn([Compare("status/web.1", rev)], [Put("status/web.1", b"healthy")])
    assert result.succeeded and result.events[0].entry.value == b"healthy"  # type: ignore[union-attr]
    await remote.delete("status/web.1")
    assert await local.get("status/web.1") is None


async def test_a_node_reads_and_writes_only_what_an_agent_needs(server: Server,
                                                                remote: RemoteStore) -> None:
    with pytest.raises(Refused, match="apps/web.*not writable.*status/, nodes/, alive/"):
        await remote.put("apps/web", b"{}")
    with pytest.raises(Refused, match="tokens/.*not readable"):
        await remote.range("tokens/")
    with pytest.raises(Refused, match="not readable"):
        await remote.get("tokens/abc")
    await server.store.put("tasks/web.1", b"{}")
    entries, _ = await remote.range("")  # everything it may see, and no token
    assert [e.key for e in entries] == ["tasks/web.1"]
    assert any(e.key.startswith("tokens/") for e in (await server.store.range(""))[0])


async def test_a_read_token_is_refused(server: Server) -> None:
    token, _ = await create_token(server.store, role="read", now=time.time())
    r = RemoteStore([server.url], token)
    try:
        with pytest.raises(Refused, match="needs a node token"):
            await r.range(model.TASKS)
    finally:
        await r.close()


async def test_watch_sees_every_change_in_order_and_nothing_it_may_not_read(
        server: Server, remote: RemoteStore) -> None:
    start = await remote.revision()
    watch = remote.watch("", start).__aiter__()
    await server.store.put("tasks/a", b"1")
    await create_token(server.store, role="admin", now=time.time())  # not for nodes' eyes
    await server.store.put("kv/site/title", b"hello")
    seen: list[str] = []
    while len(seen) < 2:
        seen += [e.key for e in await next_batch(watch)]
    assert seen == ["tasks/a", "kv/site/title"]
    await watch.aclose()  # type: ignore[attr-defined]


async def test_blocking_wait_answers_on_a_change(server: Server, remote: RemoteStore) -> None:
    after = await remote.prefix_revision("kv/")
    waiting = asyncio.create_task(remote.wait("kv/", after, 30))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    rev = await server.store.put("kv/x", b"1")
    assert await asyncio.wait_for(waiting, 10) == rev


async def test_compaction_reaches_the_watcher(server: Server, remote: RemoteStore) -> None:
    for i in range(5):
        await server.store.put(f"tasks/t{i}", b"x")
    server.store.compact(await server.store.revision())
    with pytest.raises(Compacted):
        await next_batch(remote.watch(model.TASKS, 1).__aiter__())


async def test_requests_and_watches_fail_over_to_the_next_server(
        backend: tuple[SqliteStore, str]) -> None:
    store, token = backend
    first, second = await serve(store, token), await serve(store, token)
    remote = RemoteStore([first.url, second.url], token, keepalive=0.5)
    try:
        watch = remote.watch(model.TASKS, await remote.revision()).__aiter__()
        await store.put("tasks/1", b"before")
        assert [e.key for e in await next_batch(watch)] == ["tasks/1"]

        await first.stop()  # the watch's server goes away: it resumes on the second
        await store.put("tasks/2", b"while moving")
        assert [e.key for e in await next_batch(watch)] == ["tasks/2"]
        assert (await remote.get("tasks/2")).value == b"while moving"  # type: ignore[union-attr]
        await watch.aclose()  # type: ignore[attr-defined]

        await second.stop()
        with pytest.raises(Unreachable, match="no kade server answered"):
            await remote.range(model.TASKS)
    finally:
        await remote.close()


# -- what the store API refuses, before the store sees it (kade.admission.store_ops) ---------

@pytest.mark.parametrize(("body", "message"), [
    ([], "body: must be an object"),
    ({"success": {}}, "success: must be a list"),
    ({"success": [{"put": "status/a"}]}, r"success\[0\].value: must be base64 text"),
    ({"success": [{"put": "status/a", "value": "%%"}]}, r"success\[0\].value: is not valid"),
    ({"success": [{"frob": "status/a"}]}, r"success\[0\]: must have put or delete"),
    ({"compares": [{"key": "status/a", "mod": -1}]}, r"compares\[0\].mod: must be a whole"),
    ({"success": [{"delete": "status/", "prefix": True}]}, r"success\[0\].key: 'status/' is"),
    ({"success": [{"delete": "status/a", "prefix": True}]}, "a prefix delete needs a key"),
    ({"success": [{"put": "status/\x01", "value": ""}]}, "control character"),
    ({"success": [{"put": "tokens/x", "value": ""}]}, "not writable"),
    ({"compares": [{"key": "tokens/x", "mod": 0}]}, "not readable"),
    ({"success": [{"delete": f"status/{i}"} for i in range(65)]}, "more than 64"),
])
def test_bad_transactions_are_refused_naming_the_field(body: object, message: str) -> None:
    with pytest.raises(StoreRequestError, match=message):
        admit_txn(body)


async def test_a_bad_transaction_changes_nothing(server: Server, remote: RemoteStore) -> None:
    before = await server.store.revision()
    with pytest.raises(Refused, match=r"success\[1\].key: 'apps/x' is not writable"):
        await remote.txn([], [Put("status/a", b"1"), Put("apps/x", b"2")])
    assert await server.store.revision() == before


# -- leases: an agent's liveness ------------------------------------------------------------

async def test_leases_through_the_store_api(server: Server, remote: RemoteStore) -> None:
    lease = await remote.grant(5)
    await remote.put("alive/n1", b"up", lease=lease)
    assert await remote.keepalive(lease) > 0
    assert (await server.store.get("alive/n1")) is not None
    await remote.revoke(lease)  # the key goes with it
    assert await server.store.get("alive/n1") is None
    with pytest.raises(LeaseExpired):
        await remote.keepalive(lease)
    with pytest.raises(Refused, match="ttl: must be a number of seconds from 1 to 300"):
        await remote.grant(0.1)


async def test_a_node_is_alive_while_its_agent_keeps_the_lease(server: Server,
                                                               remote: RemoteStore) -> None:
    liveness = Liveness(remote, "n1", ttl=1.5)
    keeping = asyncio.create_task(liveness.run())
    await asyncio.wait_for(liveness.alive.wait(), 10)
    await asyncio.sleep(2.5)  # longer than the lease: kept alive
    assert await server.store.get(model.alive_key("n1")) is not None

    await server.store.revoke(liveness.lease)  # the servers saw it down: it comes back
    deadline = asyncio.get_running_loop().time() + 10
    while (entry := await server.store.get(model.alive_key("n1"))) is None:
        assert asyncio.get_running_loop().time() < deadline, "not announced again"
        await asyncio.sleep(0.1)
    assert model.Alive.load(entry.value).node == "n1"

    keeping.cancel()  # the agent dies: the key goes when the lease ends
    with contextlib.suppress(asyncio.CancelledError):
        await keeping
    while await server.store.get(model.alive_key("n1")) is not None:
        assert asyncio.get_running_loop().time() < deadline + 10, "still alive"
        await asyncio.sleep(0.1)


async def test_a_token_bound_to_a_node_reports_for_that_node_only(server: Server) -> None:
    token, _ = await create_token(server.store, role="node", now=time.time(), node="n1")
    bound = RemoteStore([server.url], token)
    try:
        here = Task(id="web.1", app_id="/web", version="v", spec_hash="h", node="n1",
                    created_at=1.0)
        there = here.model_copy(update={"id": "web.2", "node": "n2"})
        for task in (here, there):
            await server.store.put(model.task_key(task.id), task.dump())
        await bound.put("nodes/n1", b"{}")
        await bound.put("alive/n1", b"{}")
        await bound.put("status/web.1", b"{}")
        for key, why in (("nodes/n2", "n2"), ("alive/n2", "n2"),
                         ("status/web.2", "n2"), ("status/web.9", "not placed here")):
            with pytest.raises(Refused, match=rf"{key}: a token of node n1 reports for that "
                                              rf"node only \({why}\)"):
                await bound.put(key, b"{}")
        assert (await bound.range(model.TASKS))[0]  # reads are not bound
    finally:
        await bound.close()


async def test_numbers_past_64_bits_are_refused_by_name(server: Server) -> None:
    import httpx

    auth = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=auth) as http:
        lease = await http.put(f"/v1/store/leases/{2**64}")
        assert lease.status_code == 400 and "lease" in lease.text
        watch = await http.get("/v1/store/wait", params={"after": str(2**63), "timeout": 0})
        assert watch.status_code == 400 and "after: must be a revision" in watch.text
