"""Consuming domain events from a real RabbitMQ: ack after commit, duplicates dropped,
malformed messages dead-lettered and counted, a broker restart survived."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kade.domain_events.config import IngestConfig
from kade.domain_events.ingest import Ingest
from kade.domain_events.query import parse_query
from kade.domain_events.store import EventStore, Window
from tests.integration.rabbitmq import Broker, broker, publish

__all__ = ["broker"]


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def consumer(tmp_path: Path, broker: Broker) -> AsyncIterator[Ingest]:
    events = await EventStore(tmp_path / "events").open()
    ingest = Ingest(events, IngestConfig(url=broker.url, batch=200))
    task = asyncio.create_task(ingest.run())

    async def connected() -> bool:
        return ingest.connected

    try:
        await until(connected, 30, "the consumer to connect")
        yield ingest
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await events.close()


async def count(ingest: Ingest) -> int:
    return int((await ingest.events.stats())["events"])


async def test_malformed_messages_are_dead_lettered_and_duplicates_dropped(
        consumer: Ingest, broker: Broker) -> None:
    await publish(broker.url, [{"order": i, "customer": 4711} for i in range(100)])
    await publish(broker.url, [b"{not json", b"\xff\xfe"], ids=["bad-1", "bad-2"])
    await publish(broker.url, [{"order": i, "customer": 4711} for i in range(10)])  # again

    async def settled() -> bool:
        stats = await consumer.events.stats()
        return bool(stats["events"] == 100 and stats["deadLettered"] == 2
                    and stats["duplicates"] == 10)

    await until(settled, 30, "100 events, 2 dead-lettered, 10 duplicates")
    assert await asyncio.to_thread(broker.queue_depth, "kade.domain-events.dead") == 2
    assert await asyncio.to_thread(broker.queue_depth, "kade.domain-events") == 0
    found = await consumer.events.search(Window(parse_query("customer:4711 order:7")))
    assert [(e.type, e.source, e.message_id) for e in found] == \
        [("order.paid", "/shop/web", "msg-7")]


async def test_a_broker_restart_mid_stream_loses_nothing(consumer: Ingest,
                                                         broker: Broker) -> None:
    await publish(broker.url, [{"order": i} for i in range(5000)],
                  ids=[f"a-{i}" for i in range(5000)])
    await asyncio.to_thread(broker.stop)  # while the consumer is still storing them
    stored_while_down = await count(consumer)

    async def down() -> bool:
        return not consumer.connected and consumer.state()["consuming"] is True

    await until(down, 30, "the consumer to see the broker gone")
    await asyncio.to_thread(broker.start)

    async def back() -> bool:
        return consumer.connected

    await until(back, 60, "the consumer to reconnect by itself")
    await publish(broker.url, [{"order": i} for i in range(1000)],
                  ids=[f"b-{i}" for i in range(1000)])

    async def all_stored() -> bool:
        return await count(consumer) == 6000

    await until(all_stored, 60, "6000 events after the broker's restart")
    assert stored_while_down <= 6000
    assert await asyncio.to_thread(broker.queue_depth, "kade.domain-events") == 0
    assert len(await consumer.events.search(Window(parse_query("messageId:a-4999")))) == 1
