"""CatalogView on the real SQLite store: follows writes, per-service indexes, blocking waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kade import model
from kade.catalog import Catalog, CatalogView
from kade.model import Node, Task, TaskStatus
from kade.spec import parse_app
from kade.store import Put, SqliteStore
from tests.unit.interleaving_store import InterleavingStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "data")
    yield s
    await s.close()


async def put_app(store: SqliteStore, app_id: str, **fields: Any) -> None:
    app = parse_app({"id": app_id, "cmd": "sleep 1000", **fields}).app
    await store.put(model.app_key(app_id), app.model_dump_json(by_alias=True).encode())


async def put_task(store: SqliteStore, task_id: str, app_id: str, port: int,
                   desired: str = "run") -> None:
    task = Task(id=task_id, app_id=app_id, version="v1", spec_hash="h", node="n1",
                host="127.0.0.1", host_ports=[port], desired=desired,  # type: ignore[arg-type]
                created_at=0)
    await store.put(model.task_key(task_id), task.dump())


async def put_status(store: SqliteStore, task_id: str, app_id: str, state: str = "running",
                     health: str = "unknown", updated_at: float = 0) -> None:
    status = TaskStatus(task_id=task_id, app_id=app_id, node="n1", state=state,  # type: ignore[arg-type]
                        health=health, updated_at=updated_at)  # type: ignore[arg-type]
    await store.put(model.status_key(task_id), status.dump())


async def seed(store: SqliteStore) -> None:
    await store.put(model.node_key("n1"),
                    Node(name="n1", address="127.0.0.1", cpus=2, mem=1024).dump())
    await put_app(store, "/shop/web", healthChecks=[{"path": "/health"}])
    await put_app(store, "/shop/api")
    await put_task(store, "w1", "/shop/web", 31001)
    await put_status(store, "w1", "/shop/web", "running", "unknown")
    await put_task(store, "a1", "/shop/api", 31002)
    await put_status(store, "a1", "/shop/api", "running")


async def until(view: CatalogView, check: Any, timeout: float = 10) -> None:
    """Wait for `check()` to hold, woken by catalog changes."""
    async with asyncio.timeout(timeout):
        while not check():
            await view.wait(None, view.index, timeout)


async def test_loads_a_snapshot_then_follows_writes(store: SqliteStore) -> None:
    await seed(store)
    async with CatalogView(store).running() as view:
        cat = view.catalog
        assert sorted(cat.services) == ["api-shop", "web-shop"]
        assert [i.task_id for i in cat.instances("web-shop", passing=True)] == []
        await put_status(store, "w1", "/shop/web", "running", "healthy")
        await until(view, lambda: view.catalog.instances("web-shop", passing=True))
        assert cat.instances("web-shop", passing=True) == []  # old snapshots never change


async def test_each_service_has_its_own_index(store: SqliteStore) -> None:
    await seed(store)
    async with CatalogView(store).running() as view:
        web, api = view.service_index("web-shop"), view.service_index("api-shop")
        rev = await store.put(model.node_key("other"),
                              Node(name="x", address="10.9.9.9", cpus=1, mem=1).dump())
        await until(view, lambda: view.index == rev)  # a node changed: the catalog's index moves
        await put_status(store, "w1", "/shop/web", "running", "healthy")
        await until(view, lambda: view.service_index("web-shop") > web)
        assert view.service_index("api-shop") == api
        assert view.catalog.index == view.index == view.service_index("web-shop")


async def test_a_write_that_changes_nothing_visible_does_not_move_the_index(
    store: SqliteStore,
) -> None:
    await seed(store)
    async with CatalogView(store).running() as view:
        before = view.service_index("api-shop")
        await put_status(store, "a1", "/shop/api", "running", updated_at=99)  # a heartbeat
        marker = await store.put(model.node_key("n2"),
                                 Node(name="n2", address="10.0.0.2", cpus=1, mem=1).dump())
        await until(view, lambda: view.index == marker)  # the view has seen both writes
        assert view.service_index("api-shop") == before


async def test_blocking_wait_returns_when_the_service_changes(store: SqliteStore) -> None:
    await seed(store)
    async with CatalogView(store).running() as view:
        index = view.service_index("web-shop")
        waiter = asyncio.ensure_future(view.wait("web-shop", index, timeout=30))
        other = asyncio.ensure_future(view.wait("api-shop", view.service_index("api-shop"), 30))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await put_status(store, "w1", "/shop/web", "running", "healthy")
        new = await asyncio.wait_for(waiter, 10)
        assert new > index
        assert view.catalog.instances("web-shop", passing=True)
        assert not other.done()  # another service's waiters sleep on
        other.cancel()
        with pytest.raises(asyncio.CancelledError):
            await other


async def test_wait_times_out_with_the_same_index_and_returns_at_once_when_behind(
    store: SqliteStore,
) -> None:
    await seed(store)
    async with CatalogView(store).running() as view:
        index = view.service_index("web-shop")
        assert await view.wait("web-shop", index, timeout=0.1) == index
        assert await view.wait("web-shop", index - 1, timeout=30) == index
        assert await view.wait("web-shop", 0, timeout=30) == index


async def test_a_wait_on_a_service_not_yet_there_returns_when_it_appears(
    store: SqliteStore,
) -> None:
    await seed(store)
    async with CatalogView(store).running() as view:
        index = view.service_index("new-app")
        assert index == view.index
        waiter = asyncio.ensure_future(view.wait("new-app", index, timeout=30))
        await put_app(store, "/app/new")
        await put_task(store, "n1", "/app/new", 31005)
        assert not waiter.done()
        await put_status(store, "n1", "/app/new")
        assert await asyncio.wait_for(waiter, 10) > index
        assert "new-app" in view.catalog.services


async def test_thousands_of_waiters_are_woken_by_one_write(store: SqliteStore) -> None:
    await seed(store)
    async with CatalogView(store).running() as view:
        index = view.service_index("web-shop")
        waiters = [asyncio.ensure_future(view.wait("web-shop", index, 60)) for _ in range(5000)]
        catalog_waiters = [asyncio.ensure_future(view.wait(None, view.index, 60))
                           for _ in range(100)]
        await asyncio.sleep(0.05)
        await put_status(store, "w1", "/shop/web", "running", "healthy")
        results = await asyncio.wait_for(asyncio.gather(*waiters, *catalog_waiters), 30)
        assert len(set(results)) == 1 and results[0] > index


async def test_a_task_marked_to_stop_leaves_and_callbacks_hear_of_it(store: SqliteStore) -> None:
    await seed(store)
    seen: list[tuple[Catalog, frozenset[str]]] = []
    async with CatalogView(store).running() as view:
        unsubscribe = view.on_change(lambda cat, changed: seen.append((cat, changed)))
        await put_task(store, "a1", "/shop/api", 31002, desired="stop")
        await until(view, lambda: bool(seen))
        cat, changed = seen[-1]
        assert changed == frozenset({"api-shop"})
        assert "api-shop" not in cat.services
        unsubscribe()
        await put_task(store, "a1", "/shop/api", 31002)
        await until(view, lambda: "api-shop" in view.catalog.services)
        assert len(seen) == 1


async def test_an_unreadable_record_is_reported_and_the_rest_still_served(
    store: SqliteStore,
) -> None:
    await seed(store)
    await store.put(model.task_key("broken"), b"{not json")
    async with CatalogView(store).running() as view:
        assert sorted(view.catalog.services) == ["api-shop", "web-shop"]
        assert any(p.startswith("tasks/broken:") for p in view.catalog.problems)


async def test_an_app_that_cannot_be_read_is_a_problem_until_it_is_replaced(
    store: SqliteStore,
) -> None:
    await seed(store)
    await store.put(model.app_key("/shop/api"), b'{"id": "/shop/api", "cmd": "x", "mem": null}')
    await store.put(model.node_key("n2"), b'{"name": "n2"}')
    async with CatalogView(store).running() as view:
        assert sorted(view.catalog.services) == ["web-shop"]
        assert "apps/shop/api: mem: Input should be a valid number" in view.catalog.problems
        assert any(p.startswith("nodes/n2: address: Field required") for p in
                   view.catalog.problems)
        await put_app(store, "/shop/api")
        await until(view, lambda: "api-shop" in view.catalog.services)
        assert not any(p.startswith("apps/") for p in view.catalog.problems)
        await store.put(model.task_key("w1"), b"[]")  # followed, not only loaded
        await until(view, lambda: "web-shop" not in view.catalog.services)
        assert "tasks/w1: Input should be an object" in view.catalog.problems
        assert sorted(view.catalog.services) == ["api-shop"]


async def test_a_served_app_rewritten_unreadable_stays_served_with_the_problem_shown(
    store: SqliteStore,
) -> None:
    await seed(store)
    async with CatalogView(store).running() as view:
        before = view.catalog.services["web-shop"]
        await store.put(model.app_key("/shop/web"), b'{"id": "/shop/web", "mem": null}')
        await until(view, lambda: any(p.startswith("apps/shop/web:") for p in
                                      view.catalog.problems))
        assert view.catalog.services["web-shop"] == before
        await store.delete(model.app_key("/shop/web"))
        await until(view, lambda: "web-shop" not in view.catalog.services)
        assert not view.catalog.problems


async def test_a_restarted_view_never_goes_back_in_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data")
    await seed(store)
    async with CatalogView(store).running() as view:
        await put_status(store, "w1", "/shop/web", "running", "healthy")
        await until(view, lambda: view.catalog.instances("web-shop", passing=True))
        last = view.service_index("web-shop")
    await store.close()
    store = SqliteStore(tmp_path / "data")
    try:
        async with CatalogView(store).running() as view:
            assert view.service_index("web-shop") >= last
            assert view.catalog.instances("web-shop", passing=True)
    finally:
        await store.close()


async def test_sync_waits_until_the_view_has_seen_a_write(store: SqliteStore) -> None:
    await seed(store)
    async with CatalogView(store).running() as view:
        rev = await store.put("kv/unrelated", b"x")  # not the catalog's: still counted as seen
        assert await view.sync(timeout=10)
        assert view.seen >= rev
        assert not await view.sync(rev + 100, timeout=0.05)


async def test_a_transaction_is_applied_whole(store: SqliteStore) -> None:
    await seed(store)
    seen: list[Catalog] = []
    async with CatalogView(store).running() as view:
        view.on_change(lambda cat, _: seen.append(cat))
        task = Task(id="a2", app_id="/shop/api", version="v1", spec_hash="h", node="n1",
                    host="127.0.0.1", host_ports=[31009], created_at=0)
        status = TaskStatus(task_id="a2", app_id="/shop/api", node="n1", state="running",
                            updated_at=0)
        stop = Task(id="a1", app_id="/shop/api", version="v1", spec_hash="h", node="n1",
                    host="127.0.0.1", host_ports=[31002], desired="stop", created_at=0)
        await store.txn([], [Put(model.task_key("a2"), task.dump()),
                             Put(model.status_key("a2"), status.dump()),
                             Put(model.task_key("a1"), stop.dump())])
        assert await view.sync()
        # One change, from one task to the other: never zero, never both.
        assert [[i.task_id for i in cat.instances("api-shop")] for cat in seen] == [["a2"]]


async def test_an_app_edit_no_instance_shows_still_reaches_callbacks(store: SqliteStore) -> None:
    await seed(store)
    seen: list[frozenset[str]] = []
    async with CatalogView(store).running() as view:
        assert sorted(view.apps()) == ["/shop/api", "/shop/web"]
        view.on_change(lambda _cat, changed: seen.append(changed))
        before, api_index = view.index, view.service_index("api-shop")
        await put_app(store, "/shop/api", routes=[{"rule": "PathPrefix(`/api`)"}])
        assert await view.sync()
        assert seen == [frozenset()]  # no service changed, but the app did
        assert view.index > before and view.service_index("api-shop") == api_index
        assert view.apps()["/shop/api"].routes[0].rule == "PathPrefix(`/api`)"
        await put_status(store, "a1", "/shop/api", "running", updated_at=5)  # a heartbeat
        assert await view.sync()
        assert seen == [frozenset()]  # nothing visible changed: no callback


async def test_a_view_that_fell_behind_the_kept_history_reloads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = SqliteStore(tmp_path / "small", history=5, ring=1)
    try:
        await seed(store)
        async with CatalogView(store).running() as view:
            # A burst of writes with no pause for the view: its history is compacted away.
            for i in range(50):
                await put_status(store, "a1", "/shop/api", "running", updated_at=i)
            await put_status(store, "w1", "/shop/web", "running", "healthy")
            assert await view.sync()
            assert [i.task_id for i in view.catalog.instances("web-shop", passing=True)] == [
                "w1"]
        assert "fell behind" in caplog.text
    finally:
        await store.close()


async def test_loaded_means_at_one_revision_however_writers_interleave(
    store: SqliteStore,
) -> None:
    """On a store where writers go on between the view's reads, the first catalog it serves
    already holds what changed under a prefix it had read first (and `seen` is not ahead)."""
    await seed(store)

    async def scheduler_places(prefix: str) -> None:
        if prefix == model.TASKS:  # read before the statuses
            await put_task(store, "w2", "/shop/web", 31003)
            await put_status(store, "w2", "/shop/web", "running", "healthy")

    view = CatalogView(InterleavingStore(store, scheduler_places))
    published: list[Catalog] = []
    view.on_change(lambda catalog, _changed: published.append(catalog))
    async with view.running():
        first = published[0]
        assert [i.task_id for i in first.instances("web-shop", passing=True)] == ["w2"]
        assert view.seen == await store.revision()
