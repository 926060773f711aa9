"""A real RabbitMQ (Debian's rabbitmq-server) for tests: its own node name, ports and data
dir, so tests and brokers of other kades on the machine do not meet. Stopped (and its
process group killed) at teardown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.integration.harness import free_port, wait_for

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class Broker:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"kadetest-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        b = self.base
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(b),
            "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"), "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(b / "pid"), "RABBITMQ_LOGS": str(b / "rabbit.log"),
        }

    def start(self) -> Broker:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text("")
        with open(self.base / "out.log", "ab") as out:
            self.proc = subprocess.Popen([str(SERVER)], env=self.env(), stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._answers, 60, f"RabbitMQ on port {self.port} ({self.base}/rabbit.log)")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"rabbitmq-server exited with {self.proc.returncode}")

        async def connect() -> bool:
            connection = await aio_pika.connect(self.url, timeout=2)
            await connection.close()
            return True

        try:
            return asyncio.run(connect())
        except Exception:  # noqa: BLE001 - not yet
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        self.proc = None

    def queue_depth(self, name: str) -> int:
        async def depth() -> int:
            connection = await aio_pika.connect(self.url)
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue(name, passive=True)
                return int(queue.declaration_result.message_count or 0)

        return asyncio.run(depth())


async def publish(url: str, messages: Sequence[dict[str, Any] | bytes], *,
                  exchange: str = "events", routing_key: str = "order.paid",
                  ids: Sequence[str | None] | None = None) -> None:
    """Publish with publisher confirms: each returns once the broker has it (persistent)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC,
                                            durable=True)
        pending = []
        for i, m in enumerate(messages):
            body = m if isinstance(m, bytes) else __import__("json").dumps(m).encode()
            mid = ids[i] if ids is not None else f"msg-{i}"
            pending.append(ex.publish(aio_pika.Message(
                body, message_id=mid, type=routing_key, app_id="/shop/web",
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=routing_key))
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "rabbitmq")
    try:
        yield b.start()
    finally:
        b.stop()
