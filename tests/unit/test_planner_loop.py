"""The scheduler loop follows nodectl/<name> and plans only what changed, against the real
SQLite store: a drain written by an operator moves a task surge-first, a system app follows a
node that joins."""

from __future__ import annotations

import asyncio
from contextlib import suppress

import pytest

from kade import model
from kade.model import DrainSpec, NodeControl
from kade.scheduler.sim import app_spec, node
from kade.store import SqliteStore
from tests.unit.test_scheduler_loop import put_app, report, running, start, store, until

pytestmark = pytest.mark.timeout(60)
__all__ = ["store"]  # the fixture, shared with the loop's own tests

CHECKED = {"healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}


async def test_a_drain_moves_the_task_surge_first_through_the_loop(store: SqliteStore) -> None:
    await store.put(model.node_key("n1"), node("n1").dump())
    scheduler, runner = await start(store)
    try:
        await put_app(store, app_spec("/web", **CHECKED))
        (old,) = await until(store, lambda: running(store, "/web"))
        await report(store, old, "running", health="healthy")
        await store.put(model.node_key("n2"), node("n2").dump())
        drain = DrainSpec(started_at=1.0, deadline=4_000_000_000.0)
        await store.put(model.nodectl_key("n1"),
                        NodeControl(name="n1", eligible=False, drain=drain).dump())

        async def replacement() -> list[model.Task]:
            return [t for t in await running(store, "/web") if t.node == "n2"]
        (new,) = await until(store, replacement)
        assert old.id in {t.id for t in await running(store, "/web")}  # not stopped yet
        await report(store, new, "running", health="healthy")

        async def moved() -> bool:
            return [t.id for t in await running(store, "/web")] == [new.id]
        await until(store, moved)
        assert scheduler.snapshot().controls["n1"].drain == drain
    finally:
        runner.cancel()
        with suppress(asyncio.CancelledError):
            await runner


async def test_a_system_app_follows_a_node_that_joins_through_the_loop(
    store: SqliteStore,
) -> None:
    await store.put(model.node_key("n1"), node("n1").dump())
    _, runner = await start(store)
    try:
        await put_app(store, app_spec("/agent", type="system"))
        await until(store, lambda: running(store, "/agent"))
        await store.put(model.node_key("n2"), node("n2").dump())

        async def everywhere() -> bool:
            return sorted(t.node for t in await running(store, "/agent")) == ["n1", "n2"]
        await until(store, everywhere)
        await store.delete(model.node_key("n1"))

        async def only_n2() -> bool:
            return [t.node for t in await running(store, "/agent")] == ["n2"]
        await until(store, only_n2)
    finally:
        runner.cancel()
        with suppress(asyncio.CancelledError):
            await runner
