"""A task is stopped only once no live router may still send it a request."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from kade import model
from kade.agent.drain import ROUTER_STALE, wait_drained
from kade.store import SqliteStore


def router(name: str, tasks: list[str], seen_at: float) -> bytes:
    return json.dumps({"name": name, "revision": 1, "tasks": tasks, "seen_at": seen_at}).encode()


async def test_waits_until_every_router_dropped_the_task(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    try:
        now = time.time()
        await store.put(model.ROUTERS + "r1", router("r1", ["t1", "t2"], now))
        await store.put(model.ROUTERS + "r2", router("r2", ["t1"], now))
        waiter = asyncio.ensure_future(wait_drained(store, "t1", time.time, timeout=30))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await store.put(model.ROUTERS + "r1", router("r1", ["t2"], now))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # r2 still routes to it
        await store.put(model.ROUTERS + "r2", router("r2", [], now))
        await asyncio.wait_for(waiter, 5)
    finally:
        await store.close()


async def test_a_silent_router_does_not_hold_a_stop(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    try:
        gone = time.time() - ROUTER_STALE - 1
        await store.put(model.ROUTERS + "old", router("old", ["t1"], gone))
        await asyncio.wait_for(wait_drained(store, "t1", time.time, timeout=30), 5)
    finally:
        await store.close()


async def test_gives_up_at_the_timeout(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    try:
        await store.put(model.ROUTERS + "r1", router("r1", ["t1"], time.time()))
        await asyncio.wait_for(wait_drained(store, "t1", time.time, timeout=0.2), 5)
    finally:
        await store.close()
