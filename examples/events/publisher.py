"""An example publisher of domain events: a shop's orders, over RabbitMQ with aio-pika.

Each event is a persistent message on the topic exchange `events`, routing key = type,
with a message id (kade drops a redelivered copy by it), the publisher's `app_id`, a
correlation id per order and a timestamp; the body is JSON. Publisher confirms: a publish
returns once the broker has the message. The broker's host:port is read from the file named
on the command line (rendered by kade from its catalog) each time a connection is made.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import random
import sys
import uuid
from pathlib import Path

import aio_pika

CUSTOMERS = [4711, 4712, 5120, 6001, 7777]
PRODUCTS = ["domain .nl", "hosting basic", "hosting pro", "ssl certificate", "email 10 GB"]


def broker_url(path: Path) -> str | None:
    lines = path.read_text().split() if path.exists() else []
    return f"amqp://guest:guest@{lines[0]}/" if lines else None


def events() -> itertools.chain[tuple[str, dict[str, object]]]:
    """order.created → order.paid → order.shipped, for ever more orders."""
    def order(n: int) -> list[tuple[str, dict[str, object]]]:
        body = {"order": n, "customer": random.choice(CUSTOMERS),
                "product": random.choice(PRODUCTS),
                "total": round(random.uniform(5, 250), 2)}
        return [("order.created", body), ("order.paid", {**body, "method": "ideal"}),
                ("order.shipped", {"order": n, "customer": body["customer"]})]

    return itertools.chain.from_iterable(order(n) for n in itertools.count(1000))


async def main(address_file: Path) -> None:
    stream = events()
    while True:
        url = broker_url(address_file)
        if url is None:
            await asyncio.sleep(1)  # the broker is not healthy yet
            continue
        try:
            connection = await aio_pika.connect(url, timeout=5)
        except Exception as e:  # noqa: BLE001 - starting up: try again
            print(f"cannot connect to {url}: {e}", flush=True)
            await asyncio.sleep(2)
            continue
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange("events", aio_pika.ExchangeType.TOPIC,
                                                      durable=True)
            print(f"publishing order events to {url}", flush=True)
            try:
                for kind, body in stream:
                    await exchange.publish(aio_pika.Message(
                        json.dumps(body).encode(), content_type="application/json",
                        message_id=str(uuid.uuid4()), type=kind, app_id="/shop/orders",
                        correlation_id=f"order-{body['order']}",
                        timestamp=dt.datetime.now(dt.UTC),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=kind)
                    await asyncio.sleep(0.5)
            except Exception as e:  # noqa: BLE001 - the broker went away: reconnect
                print(f"publishing failed: {e}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "etc/broker")))
