"""What `make up` shows: the example RabbitMQ and order publisher run as command apps, and kade
consumes the broker it finds in its own catalog."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Kade, wait_for

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "examples" / "apps"


@pytest.fixture
def example_kade(monkeypatch: pytest.MonkeyPatch) -> Iterator[Kade]:
    # as `make up` runs it: the env's bin first on PATH, where the publisher finds its Python
    monkeypatch.setenv("PATH", f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    # The broker (as `nobody` when tests run as root) uses absolute paths into its sandbox:
    # every directory above kade's data dir must let it pass, as /var/lib does; pytest's
    # tmp_path is under a directory only its owner may enter.
    base = Path(tempfile.mkdtemp(prefix="kade-events-"))
    base.chmod(0o711)
    k = Kade(base / "kade", driver="exec", extra=[
        "--events-amqp", "amqp://guest:guest@broker-shop.service.consul/",
        "--deploy", str(APPS / "broker.yaml"), "--deploy", str(APPS / "orders.yaml")])
    try:
        yield k.start()
    finally:
        k.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_the_example_broker_and_publisher_feed_domain_events(example_kade: Kade) -> None:
    kade = example_kade
    kade.wait_healthy("/shop/broker", 1, timeout=90)  # 4-9 s to start, 30 s grace
    wait_for(lambda: kade.get("/v1/domain-events/stats")["broker"]["connected"], 60,
             "kade consuming from the example broker")

    def orders() -> list[dict[str, object]]:
        return list(kade.get("/v1/domain-events", q="type:order.* source:/shop/orders",
                             since="10m")["events"])

    found = wait_for(lambda: len(orders()) >= 3 and orders(), 60, "order events")
    assert {e["type"] for e in found} <= {"order.created", "order.paid", "order.shipped"}
    paid = next(e for e in found if e["type"] == "order.paid")
    assert isinstance(paid["body"], dict) and "customer" in paid["body"]
    assert paid["correlationId"] == f"order-{paid['body']['order']}"
