"""Domain events through a real `kade up`: 10k published with confirms survive a `kill -9`
of kade exactly once; the API posts, searches, shows and follows them with its tokens; the
CLI prints them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Kade, wait_for
from tests.integration.rabbitmq import Broker, broker, publish

__all__ = ["broker"]

N = 10_000


def stats(kade: Kade) -> dict[str, Any]:
    return dict(kade.get("/v1/domain-events/stats"))


@pytest.fixture
def kade_events(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade", driver="exec")
    try:
        yield k.start()
    finally:
        k.cleanup()


def test_kill_9_mid_stream_keeps_every_event_exactly_once(tmp_path: Path,
                                                          broker: Broker) -> None:
    kade = Kade(tmp_path / "kade", driver="exec", extra=["--events-amqp", broker.url])
    try:
        kade.start()
        wait_for(lambda: stats(kade)["broker"]["connected"], 30, "the consumer")
        published: list[BaseException] = []

        def publisher() -> None:
            try:
                asyncio.run(publish(broker.url, [{"order": i, "customer": i % 100}
                                                 for i in range(N)]))
            except BaseException as e:  # noqa: BLE001 - reported by the test
                published.append(e)

        thread = threading.Thread(target=publisher)
        thread.start()
        wait_for(lambda: stats(kade)["events"] >= 1000, 60, "the first 1000 events stored")
        kade.kill9()  # mid-stream: some stored and not yet acked, some not yet consumed
        kade.start()
        thread.join(120)
        assert not thread.is_alive() and not published, published
        wait_for(lambda: stats(kade)["events"] == N, 120, f"all {N} events stored")
        assert broker.queue_depth("kade.domain-events") == 0
        assert stats(kade)["events"] == N  # and not one more
        one = kade.get("/v1/domain-events", q="messageId:msg-4321", since="1h")["events"]
        assert [e["body"] for e in one] == [{"order": 4321, "customer": 21}]
        assert len(kade.get("/v1/domain-events", q="customer:42", since="1h",
                            limit=1000)["events"]) == N // 100
    finally:
        kade.cleanup()


def test_post_needs_a_deploy_token_and_good_events(kade_events: Kade) -> None:
    kade = kade_events
    url = f"http://{kade.addr}/v1/domain-events"

    def token(**body: Any) -> dict[str, str]:
        made = httpx.post(f"http://{kade.addr}/v1/tokens", headers=kade.auth, json=body)
        assert made.status_code == 201, made.text
        return {"Authorization": f"Bearer {made.json()['token']}"}

    event = {"type": "order.paid", "source": "/shop/web", "messageId": "o-1",
             "body": {"customer": 4711, "total": 12.5}}
    assert httpx.post(url, json=event).status_code == 401
    reader = token(role="read")
    refused = httpx.post(url, json=event, headers=reader)
    assert refused.status_code == 403 and "needs a deploy token" in refused.json()["message"]
    shop = token(role="deploy", apps=["/shop/*"])
    other = httpx.post(url, json={**event, "source": "/billing/api"}, headers=shop)
    assert other.status_code == 403 and "source /billing/api" in other.json()["message"]
    made = httpx.post(url, json=event, headers=shop)
    assert made.status_code == 201 and made.json() == {"stored": 1, "duplicates": 0}
    again = httpx.post(url, json=[event], headers=kade.auth)
    assert again.status_code == 200 and again.json() == {"stored": 0, "duplicates": 1}

    for body, message in [
        ({"type": "x"}, "body: is required"),
        ([{"type": "x", "body": {}}, {"body": {}}], "1.type: is required"),
        ({"type": "x", "body": {}, "time": "soon"}, "time: 'soon' is not an ISO 8601 time"),
        ({"type": "x", "body": {}, "colour": 1}, "colour: is not a field of an event"),
        ([], "the list of events is empty"),
        ([{"type": "x", "body": i} for i in range(1001)], "1001 events, at most 1000"),
    ]:
        bad = httpx.post(url, json=body, headers=kade.auth)
        assert bad.status_code == 400 and message in bad.json()["message"], bad.text
    not_json = httpx.post(url, content=b"{", headers={**kade.auth,
                                                      "Content-Type": "application/json"})
    assert not_json.status_code == 400 and "body: is not JSON" in not_json.json()["message"]
    assert stats(kade)["events"] == 1  # nothing of the rejected requests was stored

    got = httpx.get(url, params={"q": "customer:4711", "since": "1h"}, headers=reader)
    assert got.status_code == 200 and got.json()["events"][0]["messageId"] == "o-1"
    bad_q = httpx.get(url, params={"since": "yesterday"}, headers=reader)
    assert bad_q.status_code == 400 and "since: 'yesterday'" in bad_q.json()["message"]
    huge = httpx.get(f"{url}/{2**64}", headers=reader)  # ids are SQLite rowids
    assert huge.status_code == 400 and "event_id" in huge.json()["message"], huge.text


def _cli(kade: Kade, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**kade.cli_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "kade", "domain-events", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_search_show_around_histogram_and_follow(kade_events: Kade) -> None:
    kade = kade_events
    url = f"http://{kade.addr}/v1/domain-events"
    now = time.time()
    events = [{"type": "order.paid" if i % 2 else "order.shipped", "source": "/shop/web",
               "messageId": f"e-{i}", "time": now - 600 + i * 10,
               "body": {"order": i, "customer": 4711 if i < 10 else 1, "note": f"parcel {i}"}}
              for i in range(40)]
    assert httpx.post(url, json=events, headers=kade.auth).json()["stored"] == 40

    found = _cli(kade, "search", "order.paid customer:4711", "--since", "1h", "--json")
    assert found.returncode == 0, found.stderr
    orders = [json.loads(line)["body"]["order"] for line in found.stdout.splitlines()]
    assert orders == [1, 3, 5, 7, 9]  # oldest first
    typed = _cli(kade, "search", "--type", "order.ship*", "--since", "1h", "-n", "3")
    assert typed.returncode == 0 and len(typed.stdout.splitlines()) == 3
    assert all("order.shipped" in line for line in typed.stdout.splitlines())

    hist = httpx.get(url, params={"since": str(now - 600), "until": str(now - 200),
                                  "interval": "100s", "limit": 0}, headers=kade.auth).json()
    assert [b["count"] for b in hist["histogram"]] == [10, 10, 10, 10]

    middle = httpx.get(url, params={"q": "order:20", "since": "1h"},
                       headers=kade.auth).json()["events"][0]
    shown = _cli(kade, "show", str(middle["id"]), "--around", "2", "--json")
    data = json.loads(shown.stdout)
    assert [e["body"]["order"] for e in data["before"] + [data["event"]] + data["after"]] == \
        [18, 19, 20, 21, 22]
    missing = _cli(kade, "show", "999999")
    assert missing.returncode == 1 and "domain event 999999: not found" in missing.stderr

    env = {**kade.cli_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    tail = subprocess.Popen([sys.executable, "-m", "kade", "domain-events", "tail",
                             "--type", "order.paid", "-n", "1", "--json"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert tail.stdout is not None
        first = json.loads(tail.stdout.readline())
        assert first["body"]["order"] == 39
        httpx.post(url, headers=kade.auth, json=[
            {"type": "order.shipped", "messageId": "late-1", "body": {"order": 100}},
            {"type": "order.paid", "messageId": "late-2", "body": {"order": 101}}])
        assert json.loads(tail.stdout.readline())["body"]["order"] == 101
        assert kade.stop() == 0  # an open follow does not hold kade up: its stream ends
        assert tail.wait(20) == 0
    finally:
        if tail.poll() is None:
            tail.terminate()
            tail.wait(10)
        if tail.stdout is not None:
            tail.stdout.close()
