"""The node's collector on real tasks: a container burning CPU and an endpoint with its own
metrics are collected into the store, written back by /metrics' exposition, which
`promtool check metrics` accepts."""

from __future__ import annotations

import asyncio
import http.server
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kade.metrics.collector import Collector, Target
from kade.metrics.exposition import write
from kade.metrics.promql import instant_query
from kade.metrics.series import Matcher
from kade.metrics.tsdb import TSDB
from kade.metrics.values import Vector
from kade.testing.prometheus import PROMTOOL

pytestmark = pytest.mark.docker
LABEL = f"kade.test=collector-{uuid.uuid4().hex[:8]}"
APP_METRICS = """# HELP shop_orders_total Orders taken.
# TYPE shop_orders_total counter
shop_orders_total{kind="web",task="inner"} 42
# HELP shop_latency_seconds Time to answer.
# TYPE shop_latency_seconds histogram
shop_latency_seconds_bucket{le="0.1"} 3
shop_latency_seconds_bucket{le="+Inf"} 5
shop_latency_seconds_sum 1.5
shop_latency_seconds_count 5
"""


@pytest.fixture
def busy() -> Iterator[int]:
    cid = subprocess.run(["docker", "run", "-d", "--rm", "--label", LABEL, "--memory", "64m",
                          "kade/busybox", "sh", "-c", "while true; do :; done"],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid],
                                 check=True, capture_output=True, text=True).stdout)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


@pytest.fixture
def endpoint() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            body = APP_METRICS.encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_tasks_and_endpoints_are_collected_and_exposed(tmp_path: Path, busy: int,
                                                             endpoint: str) -> None:
    db = TSDB(tmp_path).open()
    labels = {"app": "/shop/web", "task": "shop_web.1", "node": "n1", "version": "v1"}
    targets = [Target(labels, pid=busy, scrape_url=f"{endpoint}/metrics"),
               Target({**labels, "task": "shop_web.2"}, pid=busy,
                      scrape_url=f"{endpoint}/nowhere")]
    collector = Collector(db, lambda: targets, node="n1")
    await collector.collect()
    await asyncio.sleep(1.0)
    await collector.collect()

    cpu = instant_query(db, 'kade_task_cpu_seconds_total{task="shop_web.1"}',
                        int(collector.clock() * 1000))
    assert isinstance(cpu, Vector) and cpu.samples[0].value > 0
    [limit] = db.select([Matcher.of("__name__", "=", "kade_task_memory_limit_bytes"),
                         Matcher.of("task", "=", "shop_web.1")], 0, 2**62)
    assert limit.values[-1] == 64 * 1024 * 1024
    [orders] = db.select([Matcher.of("__name__", "=", "shop_orders_total")], 0, 2**62)
    assert dict(orders.labels) == {"__name__": "shop_orders_total", "kind": "web",
                                   "exported_task": "inner", **labels}
    ups = {dict(s.labels)["task"]: s.values[-1]
           for s in db.select([Matcher.of("__name__", "=", "up")], 0, 2**62)}
    assert ups == {"shop_web.1": 1.0, "shop_web.2": 0.0}

    text = write(db.latest(0), collector.metadata())
    assert "# TYPE shop_latency_seconds histogram" in text
    assert "# TYPE kade_task_cpu_seconds_total counter" in text
    check = await asyncio.to_thread(subprocess.run, [PROMTOOL, "check", "metrics"],
                                    input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    db.close()
