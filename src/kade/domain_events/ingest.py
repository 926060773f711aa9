"""Consuming domain events from RabbitMQ: ack only after the durable commit.

The seed stack's Logstash acked a message when it entered its pipeline, and lost events when
it crashed before storing them. Here a batch of messages is stored in one SQLite transaction
(synchronous=FULL) and only then acked, with one `multiple` ack per channel. A crash before
the ack makes the broker deliver them again; their message ids make the second copy a
duplicate, dropped. A message that is not an event (not JSON, no type, too large) is
rejected without requeue: the queue's dead-letter exchange, declared by kade, moves it to
`kade.domain-events.dead` where it can be inspected, and it is counted.

The connection is aio-pika's robust connection: it reconnects by itself and restores the
channel, queue, bindings and consumer. A broker named as `NAME.service.DOMAIN` is found in
kade's own catalog (a broker that kade runs as an app), and followed when it moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from kade.domain_events.config import IngestConfig, redact
from kade.domain_events.record import DomainEvent, Malformed, make_event, parse_body
from kade.domain_events.store import EventStore

log = logging.getLogger("kade.domain_events")

Resolve = Callable[[str], str | None]  # service name → "host:port" of a healthy instance
RETRY_SECONDS = 2.0
_LINGER_STEP = 0.005  # seconds between looks for more messages of a batch


def service_of(url: str, domain: str) -> str | None:
    """`amqp://u:p@broker-events.service.consul/` → `broker-events` (domain `consul`)."""
    host = urlsplit(url).hostname or ""
    suffix = f".service.{domain}"
    return host[: -len(suffix)] if host.endswith(suffix) else None


def with_address(url: str, address: str) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{userinfo}@{address}" if userinfo else address).geturl()


def to_event(message: AbstractIncomingMessage, received: float) -> DomainEvent:
    """The message as a domain event; Malformed says why it is not one."""
    return make_event(
        body=parse_body(message.body), received=received, message_id=message.message_id,
        time=message.timestamp, type=message.type, source=message.app_id,
        routing_key=message.routing_key, exchange=message.exchange,
        correlation_id=message.correlation_id, headers=dict(message.headers or {}))


class Ingest:
    def __init__(self, events: EventStore, config: IngestConfig, *,
                 resolve: Resolve | None = None, domain: str = "consul",
                 clock: Callable[[], float] = time.time) -> None:
        self.events = events
        self.config = config
        self.resolve = resolve
        self.domain = domain
        self.clock = clock
        self.consuming = False  # the queue and its consumer are set up
        self.dead_lettered = 0
        self._connection: AbstractRobustConnection | None = None
        self._poke = asyncio.Event()
        self._messages: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    def state(self) -> dict[str, Any]:
        return {"url": redact(self.config.url), "connected": self.connected,
                "consuming": self.consuming,
                "queue": self.config.queue, "deadLetterQueue": self.config.dead_letter_queue}

    @property
    def connected(self) -> bool:
        """Consuming now: set up, and the connection is not between reconnects."""
        return self.consuming and self._connection is not None and \
            self._connection.connected.is_set() and \
            not self._connection.is_closed

    def endpoints_changed(self) -> None:
        """The catalog changed: a broker found there may have moved."""
        self._poke.set()

    def _url(self) -> str | None:
        name = service_of(self.config.url, self.domain)
        if name is None or self.resolve is None:
            return self.config.url
        address = self.resolve(name)
        return None if address is None else with_address(self.config.url, address)

    async def run(self) -> None:
        """Consume until cancelled."""
        waiting_logged = False
        while True:
            url = self._url()
            if url is None:
                if not waiting_logged:
                    log.info("domain events: waiting for %s in the catalog",
                             redact(self.config.url))
                    waiting_logged = True
                self._poke.clear()
                await self._poke.wait()
                continue
            waiting_logged = False
            try:
                connection = await aio_pika.connect_robust(url, timeout=10,
                                                           reconnect_interval=RETRY_SECONDS)
            except Exception as e:  # noqa: BLE001 - a broker not there yet: retry
                log.warning("domain events: cannot connect to %s: %s", redact(url), e)
                await self._pause()
                continue
            self._connection = connection
            try:
                await self._consume(connection, url)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - declare or store failed: retry whole
                log.error("domain events: consuming from %s failed: %s", redact(url), e)
                await self._pause()
            finally:
                self.consuming = False
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.close())

    async def _pause(self) -> None:
        self._poke.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._poke.wait(), RETRY_SECONDS)

    async def _consume(self, connection: AbstractRobustConnection, url: str) -> None:
        cfg = self.config
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=cfg.prefetch)
        dlx = await channel.declare_exchange(cfg.dead_letter_exchange,
                                             aio_pika.ExchangeType.FANOUT, durable=True)
        dead = await channel.declare_queue(cfg.dead_letter_queue, durable=True)
        await dead.bind(dlx)
        queue = await channel.declare_queue(
            cfg.queue, durable=True, arguments={"x-dead-letter-exchange": cfg.dead_letter_exchange})
        for binding in cfg.bindings:
            exchange = await channel.declare_exchange(
                binding.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            for key in binding.routing_keys:
                await queue.bind(exchange, key)
        self._messages = asyncio.Queue()
        # (the queue needs no bound of its own: prefetch bounds what is unacked)
        await queue.consume(self._messages.put, no_ack=False)
        self.consuming = True
        log.info("domain events: consuming %s from %s", cfg.queue, redact(url))
        self._poke.clear()
        while True:
            batch = await self._next_batch()
            if batch is None:  # the catalog moved the broker
                if self._url() != url:
                    log.info("domain events: the broker moved, reconnecting")
                    return
                self._poke.clear()
                continue
            await self._store(batch)

    async def _next_batch(self) -> list[AbstractIncomingMessage] | None:
        """The next messages, up to a batch; None when poked before any came."""
        get = asyncio.ensure_future(self._messages.get())
        poke = asyncio.ensure_future(self._poke.wait())
        try:
            done, _ = await asyncio.wait({get, poke}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            poke.cancel()
            if not get.done():
                get.cancel()
        if get not in done:
            return None
        batch = [get.result()]
        # The rest of the batch: what has come, then what comes within the linger, looked at
        # every few milliseconds (a wait per message would cost more than the message).
        steps = max(1, round(self.config.linger / _LINGER_STEP))
        for step in range(steps + 1):
            while len(batch) < self.config.batch and not self._messages.empty():
                batch.append(self._messages.get_nowait())
            if len(batch) >= self.config.batch or step == steps:
                break
            await asyncio.sleep(_LINGER_STEP)
        return batch

    async def _store(self, batch: list[AbstractIncomingMessage]) -> None:
        now = self.clock()
        good: list[tuple[AbstractIncomingMessage, DomainEvent]] = []
        bad: list[tuple[AbstractIncomingMessage, str]] = []
        for message in batch:
            try:
                good.append((message, to_event(message, now)))
            except Malformed as e:
                bad.append((message, str(e)))
        try:
            await self.events.append([e for _, e in good], dead_lettered=len(bad))
        except Exception as e:  # noqa: BLE001 - not stored: the broker keeps them
            log.error("domain events: storing %d failed, they stay in the queue: %s",
                      len(good), e)
            for message in batch:
                await _settle(message.nack(requeue=True))
            await asyncio.sleep(RETRY_SECONDS)
            return
        for message, why in bad:
            log.warning("domain events: dead-lettered a message (routing key %r, message id "
                        "%r): %s", message.routing_key, message.message_id, why)
            await _settle(message.reject(requeue=False))
        self.dead_lettered += len(bad)
        last: dict[int, AbstractIncomingMessage] = {}
        for message, _ in good:  # the last stored message of each channel
            last[id(_channel(message))] = message
        for message in last.values():
            await _settle(message.ack(multiple=True))


def _channel(message: AbstractIncomingMessage) -> Any:
    try:
        return message.channel
    except Exception:  # noqa: BLE001 - closed: its acks fail, the broker redelivers
        return None


async def _settle(call: Any) -> None:
    """An ack/nack/reject; one on a channel that closed meanwhile is moot (the broker
    redelivers what was not acked, and the copy is dropped as a duplicate)."""
    try:
        await call
    except Exception as e:  # noqa: BLE001
        log.debug("domain events: settling a message failed (it will be redelivered): %s", e)
