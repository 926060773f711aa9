"""The scheduler loop against the real SQLite store: what it writes when the world changes.

The tests play the API (apps), and the agent (nodes and statuses), by writing to the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kade import model
from kade.model import QueueEntry, Task, TaskState, TaskStatus
from kade.scheduler.loop import Scheduler
from kade.scheduler.sim import app_spec, node
from kade.spec import AppSpec, spec_hash
from kade.store import Compare, Op, Put, SqliteStore, Store, TxnResult
from tests.unit.interleaving_store import InterleavingStore

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


async def until(store: Store, check: Callable[[], Awaitable[T | None]], timeout: float = 20) -> T:
    """Wait, woken by every store write, until `check` returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    revision = await store.revision()
    while True:
        found = await check()
        if found:
            return found
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError("condition not met in time")
        revision = await store.wait("", revision, remaining)


async def put_app(store: Store, app: AppSpec) -> None:
    await store.put(model.app_key(app.id), app.model_dump_json(by_alias=True).encode())


async def tasks_of(store: Store, app_id: str) -> list[Task]:
    entries, _ = await store.range(model.TASKS)
    return [t for t in model.decode_all(entries, Task)[0] if t.app_id == app_id]


async def running(store: Store, app_id: str) -> list[Task]:
    return [t for t in await tasks_of(store, app_id) if t.desired == "run"]


async def report(store: Store, task: Task, state: TaskState, **fields: Any) -> None:
    status = TaskStatus(task_id=task.id, app_id=task.app_id, node=task.node, state=state,
                        updated_at=1.0, **fields)
    await store.put(model.status_key(task.id), status.dump())


async def queue_entry(store: Store, app_id: str) -> QueueEntry | None:
    entry = await store.get(model.queue_key(app_id))
    return QueueEntry.load(entry.value) if entry else None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "data")
    yield s
    await s.close()


async def start(store: Store, **kwargs: Any) -> tuple[Scheduler, asyncio.Task[None]]:
    scheduler = Scheduler(store, **kwargs)
    runner = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(scheduler.wait_ready(), 20)
    return scheduler, runner


async def stop(runner: asyncio.Task[None]) -> None:
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


async def test_launches_tasks_as_the_agent_expects_them(store: SqliteStore) -> None:
    await store.put(model.node_key("n1"), node("n1", address="10.1.2.3").dump())
    app = app_spec("/shop/web", "2026-01-01T00:00:00Z", instances=2, cpus=0.25, mem=32)
    await put_app(store, app)
    _, runner = await start(store, port_range=(40000, 40100))
    try:
        tasks = await until(store, lambda: _at_least(running(store, "/shop/web"), 2))
        assert len(tasks) == 2
        stored = AppSpec.model_validate_json(app.model_dump_json(by_alias=True))
        for t in tasks:
            assert t.id.startswith("shop_web.") and len(t.id) == len("shop_web.") + 12
            assert (t.node, t.host, t.cpus, t.mem) == ("n1", "10.1.2.3", 0.25, 32)
            assert t.version == "2026-01-01T00:00:00Z" and t.spec_hash == spec_hash(stored)
            assert t.desired == "run"
        assert sorted(t.host_ports[0] for t in tasks) == [40000, 40001]
        assert await queue_entry(store, "/shop/web") is None
    finally:
        await stop(runner)


async def _at_least(tasks: Awaitable[list[Task]], n: int) -> list[Task] | None:
    found = await tasks
    return found if len(found) >= n else None


async def test_failed_task_is_replaced_after_its_backoff(store: SqliteStore) -> None:
    await store.put(model.node_key("n1"), node("n1").dump())
    await put_app(store, app_spec("/web", backoffSeconds=0.3, backoffFactor=2))
    _, runner = await start(store)
    try:
        (first,) = await until(store, lambda: _at_least(running(store, "/web"), 1))
        await report(store, first, "failed", exit_code=2)

        async def replaced() -> list[Task] | None:
            tasks = await running(store, "/web")
            return tasks if tasks and tasks[0].id != first.id else None

        (second,) = await until(store, replaced)
        assert await store.get(model.task_key(first.id)) is None
        assert await store.get(model.status_key(first.id)) is None
        entry = await queue_entry(store, "/web")
        assert entry is not None
        assert (entry.failures, entry.last_failure) == (1, "exited with code 2")
        assert entry.last_failure_at is not None
        assert entry.delay_until == pytest.approx(entry.last_failure_at + 0.3)
        assert second.created_at >= entry.delay_until
    finally:
        await stop(runner)


async def test_scale_down_and_delete_stop_tasks_and_forget_them(store: SqliteStore) -> None:
    await store.put(model.node_key("n1"), node("n1").dump())
    app = app_spec("/web", instances=3)
    await put_app(store, app)
    _, runner = await start(store)
    try:
        tasks = await until(store, lambda: _at_least(running(store, "/web"), 3))
        for t in tasks:
            await report(store, t, "running")
        await put_app(store, app.model_copy(update={"instances": 1}))

        async def scaled() -> list[Task] | None:
            stopped = [t for t in await tasks_of(store, "/web") if t.desired == "stop"]
            return stopped if len(stopped) == 2 else None

        stopped = await until(store, scaled)
        assert {t.stop_reason for t in stopped} == {"scaled down"}
        for t in stopped:
            await report(store, t, "killed")
        await until(store, lambda: _exactly(tasks_of(store, "/web"), 1))

        await store.delete(model.app_key("/web"))
        (last,) = await until(store, lambda: _stopped(store, "/web"))
        assert last.stop_reason == "app deleted"
        await report(store, last, "killed")
        await until(store, lambda: _none_left(store))
    finally:
        await stop(runner)


async def _exactly(tasks: Awaitable[list[Task]], n: int) -> list[Task] | None:
    found = await tasks
    return found if len(found) == n else None


async def _stopped(store: Store, app_id: str) -> list[Task] | None:
    found = await tasks_of(store, app_id)
    return found if found and all(t.desired == "stop" for t in found) else None


async def _none_left(store: Store) -> bool:
    tasks, _ = await store.range(model.TASKS)
    statuses, _ = await store.range(model.STATUS)
    return not tasks and not statuses


async def test_waiting_reason_is_visible_in_the_queue_and_the_snapshot(
    store: SqliteStore,
) -> None:
    await store.put(model.node_key("small"), node("small", cpus=0.5).dump())
    await put_app(store, app_spec("/big", cpus=2))
    scheduler, runner = await start(store)
    try:
        entry = await until(store, lambda: queue_entry(store, "/big"))
        assert entry.waiting == "no node fits: small: needs 2.0 cpus, 0.5 free"
        assert scheduler.snapshot().queue["/big"] == entry
        await store.put(model.node_key("large"), node("large", cpus=8).dump())
        await until(store, lambda: _at_least(running(store, "/big"), 1))
        await until(store, lambda: _gone(queue_entry(store, "/big")))
    finally:
        await stop(runner)


async def _gone(entry: Awaitable[QueueEntry | None]) -> bool:
    return await entry is None


async def test_a_restarted_scheduler_adopts_what_is_there(store: SqliteStore) -> None:
    await store.put(model.node_key("n1"), node("n1").dump())
    await put_app(store, app_spec("/web", instances=3))
    _, runner = await start(store)
    tasks = await until(store, lambda: _at_least(running(store, "/web"), 3))
    await stop(runner)
    before = await store.revision()
    scheduler, runner = await start(store)
    try:
        assert await store.revision() == before  # nothing to do, nothing written
        assert sorted(scheduler.snapshot().tasks) == sorted(t.id for t in tasks)
    finally:
        await stop(runner)


class RacingStore(SqliteStore):
    """A real store where another writer gets in just before the scheduler's first stop."""

    race: Callable[[str], Awaitable[None]] | None = None
    raced: str = ""  # the key the other writer changed

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        stopping = [op.key for op in success if isinstance(op, Put)
                    and op.key.startswith(model.TASKS) and Task.load(op.value).desired == "stop"]
        if stopping and self.race is not None:
            race, self.race = self.race, None
            self.raced = stopping[0]
            await race(stopping[0])
        return await super().txn(compares, success, failure)


async def test_a_plan_that_lost_a_race_is_dropped_and_made_again(tmp_path: Path) -> None:
    store = RacingStore(tmp_path / "data")
    try:
        await store.put(model.node_key("n1"), node("n1").dump())
        app = app_spec("/web", instances=2)
        await put_app(store, app)
        _, runner = await start(store)
        try:
            tasks = await until(store, lambda: _at_least(running(store, "/web"), 2))
            for t in tasks:
                await report(store, t, "running")

            async def kill_from_api(key: str) -> None:  # the very task being scaled away
                entry = await store.get(key)
                assert entry is not None
                killed = Task.load(entry.value).model_copy(
                    update={"desired": "stop", "stop_reason": "killed on request"})
                await store.put(key, killed.dump(), expect=entry.mod_revision)

            store.race = kill_from_api
            await put_app(store, app.model_copy(update={"instances": 1}))
            await until(store, lambda: _settled(store))
            after = {model.task_key(t.id): t for t in await tasks_of(store, "/web")}
            # The user's kill stands (not overwritten with "scaled down"), and the scheduler,
            # planning again, found nothing left to stop: one task still runs, none was added.
            assert len(after) == 2
            assert after[store.raced].stop_reason == "killed on request"
            assert [t.desired for k, t in after.items() if k != store.raced] == ["run"]
        finally:
            await stop(runner)
    finally:
        await store.close()


async def _settled(store: RacingStore) -> bool:
    if store.race is not None:
        return False
    tasks = await tasks_of(store, "/web")
    return sum(t.desired == "run" for t in tasks) == 1


async def test_an_unreadable_app_record_leaves_its_tasks_alone(store: SqliteStore) -> None:
    await store.put(model.node_key("n1"), node("n1").dump())
    await put_app(store, app_spec("/web", instances=2))
    scheduler, runner = await start(store)
    try:
        await until(store, lambda: _at_least(running(store, "/web"), 2))
        await store.put(model.app_key("/web"), b'{"id": "/web", "instances": "many"}')
        await put_app(store, app_spec("/other"))
        await until(store, lambda: _at_least(running(store, "/other"), 1))  # seen both writes
        assert len(await running(store, "/web")) == 2
        assert "/web" in scheduler.snapshot().unreadable
    finally:
        await stop(runner)


async def test_unreadable_records_at_start_are_skipped_logged_once_and_the_rest_planned(
    store: SqliteStore, caplog: pytest.LogCaptureFixture,
) -> None:
    await store.put(model.node_key("n1"), node("n1").dump())
    await store.put(model.node_key("n2"), b'{"name": "n2"}')
    await store.put(model.app_key("/broken"), b'{"id": "/broken", "cmd": "x", "mem": null}')
    await store.put(model.task_key("broken.1"), b"{")
    await store.put(model.status_key("broken.1"), b"[]")
    await store.put(model.queue_key("/web"), b'{"app_id": "/web", "failures": "many"}')
    await put_app(store, app_spec("/web", instances=2))
    with caplog.at_level(logging.ERROR, logger="kade.quarantine"):
        scheduler, runner = await start(store)
        try:
            await until(store, lambda: _at_least(running(store, "/web"), 2))
            for i in range(3):  # more plans: each bad record is logged once
                await put_app(store, app_spec(f"/more{i}"))
                await until(store, lambda i=i: _at_least(running(store, f"/more{i}"), 1))
        finally:
            await stop(runner)
        scheduler, runner = await start(store)  # a reload reads them all again
        try:
            await put_app(store, app_spec("/last"))
            await until(store, lambda: _at_least(running(store, "/last"), 1))
            assert scheduler.snapshot().unreadable == {"/broken"}
            assert set(scheduler.snapshot().nodes) == {"n1"}
        finally:
            await stop(runner)
    quarantined = sorted(r.getMessage().split()[1] for r in caplog.records)
    assert quarantined == ["apps/broken", "nodes/n2", "queue/web", "status/broken.1",
                           "tasks/broken.1"]
    assert "mem: Input should be a valid number" in caplog.text


async def test_an_unreadable_app_made_valid_again_is_planned(store: SqliteStore) -> None:
    await store.put(model.node_key("n1"), node("n1").dump())
    await store.put(model.app_key("/web"), b'{"id": "/web", "cmd": "x", "mem": null}')
    scheduler, runner = await start(store)
    try:
        assert scheduler.snapshot().unreadable == {"/web"}
        await put_app(store, app_spec("/web", instances=1))
        await until(store, lambda: _at_least(running(store, "/web"), 1))
        assert scheduler.snapshot().unreadable == frozenset()
    finally:
        await stop(runner)


async def test_a_failure_reported_while_the_scheduler_loads_is_replaced(
    store: SqliteStore,
) -> None:
    """On a store where writers go on between the scheduler's reads, what changed under a
    prefix it had already read is still seen."""
    await store.put(model.node_key("n1"), node("n1").dump())
    app = app_spec("/web", backoffSeconds=0)
    await put_app(store, app)
    first = Task(id="web.1", app_id="/web", version=app.version or "", spec_hash=spec_hash(app),
                 node="n1", host="127.0.0.1", created_at=0)
    await store.put(model.task_key(first.id), first.dump())
    await report(store, first, "running")

    async def agent_reports(prefix: str) -> None:
        if prefix == model.STATUS:
            await report(store, first, "failed", exit_code=1)

    _, runner = await start(InterleavingStore(store, agent_reports))
    try:
        async def replaced() -> list[Task] | None:
            tasks = await running(store, "/web")
            return tasks if tasks and tasks[0].id != first.id else None

        await until(store, replaced)
        assert await store.get(model.task_key(first.id)) is None
    finally:
        await stop(runner)


class Counting:
    """The store, counting what each transaction carries."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.sizes: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        self.sizes.append((len(compares), len(success)))
        return await self.store.txn(compares, success, failure)


async def test_a_large_plan_goes_out_in_transactions_a_store_takes(store: SqliteStore) -> None:
    """etcd refuses a transaction of more than --max-txn-ops (128 by default) operations."""
    await store.put(model.node_key("n1"), node("n1", cpus=64, mem=65536).dump())
    await put_app(store, app_spec("/big", instances=300, cpus=0.01, mem=1))
    counting = Counting(store)
    _, runner = await start(counting)  # type: ignore[arg-type]
    try:
        await until(store, lambda: _at_least(running(store, "/big"), 300))
        assert len(counting.sizes) >= 5
        assert all(c <= 128 and o <= 128 for c, o in counting.sizes)
    finally:
        await stop(runner)
