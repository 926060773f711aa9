"""Figures of domain events: ingest from a real RabbitMQ with ack after commit, and search
latency over a million stored events.

Usage: python bench/domain_events.py [--ingest 100000] [--events 1000000] [--dir DIR]

Ingest: N persistent messages are published (with confirms) into kade's queue first, then
the consumer is started and timed until every one is stored and the queue is empty — the
consumer's own rate, each batch committed durably (synchronous=FULL) before its ack.
Search: the store is filled with `--events` order events spread over the last 6 days, then
each query runs 20 times; the median and the slowest are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aio_pika
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.rabbitmq import Broker, publish  # noqa: E402

from kade.domain_events.config import IngestConfig  # noqa: E402
from kade.domain_events.ingest import Ingest  # noqa: E402
from kade.domain_events.query import Query, parse_query  # noqa: E402
from kade.domain_events.record import DomainEvent  # noqa: E402
from kade.domain_events.store import EventStore, Window  # noqa: E402

TYPES = ["order.created", "order.paid", "order.shipped", "order.cancelled", "user.created"]
WORDS = ["domain", "hosting", "basic", "pro", "ssl", "certificate", "email", "ideal",
         "creditcard", "paypal", "amsterdam", "utrecht", "rotterdam", "declined", "refund"]


async def ingest(base: Path, n: int) -> None:
    broker = await asyncio.to_thread(Broker(base / "rabbitmq").start)
    try:
        cfg = IngestConfig(url=broker.url)
        connection = await aio_pika.connect(broker.url)
        async with connection:  # the queue and binding as the consumer declares them
            channel = await connection.channel()
            await channel.declare_exchange(cfg.dead_letter_exchange,
                                           aio_pika.ExchangeType.FANOUT, durable=True)
            queue = await channel.declare_queue(cfg.queue, durable=True, arguments={
                "x-dead-letter-exchange": cfg.dead_letter_exchange})
            exchange = await channel.declare_exchange("events", aio_pika.ExchangeType.TOPIC,
                                                      durable=True)
            await queue.bind(exchange, "#")
        start = time.perf_counter()
        await publish(broker.url, [{"order": i, "customer": i % 5000,
                                    "product": random.choice(WORDS)} for i in range(n)],
                      ids=[f"m-{i}" for i in range(n)])
        took = time.perf_counter() - start
        print(f"published {n:,} with confirms in {took:.1f} s ({n / took:,.0f}/s)")
        events = await EventStore(base / "ingest").open()
        consumer = Ingest(events, cfg)
        start = time.perf_counter()
        task = asyncio.create_task(consumer.run())
        while events.last_id < n:  # ids count up from 1: no duplicates were sent
            await events.wait_newer(events.last_id, 1.0)
        took = time.perf_counter() - start
        left = -1
        for _ in range(100):  # the last acks reach the broker just after the commit
            left = await asyncio.to_thread(broker.queue_depth, cfg.queue)
            if left == 0:
                break
            await asyncio.sleep(0.1)
        stats = await events.stats()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await events.close()
        print(f"ingest, ack after commit: {n:,} events in {took:.2f} s = {n / took:,.0f} "
              f"events/s; stored {stats['events']:,}, duplicates {stats['duplicates']}, "
              f"left in the queue {left}")
    finally:
        await asyncio.to_thread(broker.stop)


def synthetic(i: int, n: int, now: float, span: float) -> DomainEvent:
    rnd = random.Random(i)
    kind = rnd.choice(TYPES)
    body = {"order": i, "customer": rnd.randrange(100_000), "total": rnd.randrange(5, 500),
            "note": " ".join(rnd.choice(WORDS) for _ in range(4))}
    return DomainEvent(message_id=f"e-{i}", time=now - span + span * i / n, type=kind,
                       body=body, source="/shop/orders", routing_key=kind,
                       exchange="events", correlation_id=f"order-{i}", received=now)


async def search(base: Path, n: int) -> None:
    now = time.time()
    span = 6 * 24 * 3600.0
    events = await EventStore(base / "search").open()
    try:
        start = time.perf_counter()
        batch = 10_000
        for first in range(0, n, batch):
            await events.append([synthetic(i, n, now, span) for i in range(first,
                                                                       min(n, first + batch))])
        took = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (base / "search").iterdir())
        print(f"stored {n:,} events in {took:.1f} s ({n / took:,.0f}/s in batches of "
              f"{batch:,}); {size / 1e6:,.0f} MB on disk ({size / n:,.0f} bytes/event)")
        hour = Window(Query(), now - 3600 * 30, now - 3600 * 29)
        cases = [
            ("last 100, no filter", Window(Query()), 100, None),
            ("1 hour window, newest 100", hour, 100, None),
            ("1 hour window, type:order.paid", Window(parse_query("type:order.paid"),
                                                      hour.since, hour.until), 100, None),
            ("1 day, field customer:4711", Window(parse_query("customer:4711"),
                                                  now - 86400, now), 100, None),
            ("6 days, field customer:4711", Window(parse_query("customer:4711"),
                                                   now - span, now), 100, None),
            ("6 days, full text 'declined refund'", Window(parse_query('"declined refund"'),
                                                           now - span, now), 100, None),
            ("1 hour, full text 'declined'", Window(parse_query("declined"),
                                                    hour.since, hour.until), 100, None),
            ("histogram 1 day by hour, type:order.*", Window(parse_query("type:order.*"),
                                                             now - 86400, now), 0, 3600.0),
        ]
        print(f"{'query':45} {'median':>9} {'slowest':>9} {'hits':>6}")
        for name, window, limit, interval in cases:
            times = []
            hits = 0
            for _ in range(20):
                t0 = time.perf_counter()
                if interval is None:
                    hits = len(await events.search(window, limit))
                else:
                    hits = len(await events.histogram(window, interval))
                times.append(time.perf_counter() - t0)
            print(f"{name:45} {statistics.median(times) * 1000:7.1f}ms "
                  f"{max(times) * 1000:7.1f}ms {hits:6}")
    finally:
        await events.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ingest", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        if args.ingest:
            uvloop.run(ingest(Path(tmp), args.ingest))  # kade up's event loop
        if args.events:
            uvloop.run(search(Path(tmp), args.events))


if __name__ == "__main__":
    main()
