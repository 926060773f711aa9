"""A process outside kade listens on a port of kade's range: kade neither gives that port to a
task again and again, nor lets a health check that reached the squatter put a task into
routing. Visitors through the router see only the app."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.integration.harness import Kade, wait_for

APP = "/sq/web"
HOST = "sq.localhost"


class Squatter(ThreadingHTTPServer):
    """An HTTP server that is not kade's, answering 200 to anything (what a health check
    would count as a pass), and counting what reached it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        assert isinstance(self.server, Squatter)
        self.server.requests.append(self.path)
        body = b"squatter\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def squatter(kade: Kade) -> Iterator[Squatter]:
    """On the first port of kade's range: the one the planner would assign first."""
    server = Squatter(int(kade.port_range.split("-")[0]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def web(instances: int) -> dict[str, Any]:
    return {"id": APP, "instances": instances, "cpus": 0.01, "mem": 16,
            "container": {"docker": {"image": "kade/site:1"}},
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1,
                              "timeoutSeconds": 2, "gracePeriodSeconds": 10,
                              "maxConsecutiveFailures": 3}],
            "routes": [{"rule": f"Host(`{HOST}`)"}]}


class Load:
    """Requests without pause through the router. Before the app first answers, the router
    has nothing to send to; from then on every answer must be the app's."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.served = threading.Event()
        self.results: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self) -> None:
        deadline = time.monotonic() + 300  # bounded, whatever happens
        with httpx.Client(headers={"Host": HOST}, timeout=10) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    r = client.get(self.url)
                    outcome = "site" if r.status_code == 200 and "kade example site" in r.text \
                        else f"HTTP {r.status_code}: {r.text[:40].strip()}"
                except httpx.HTTPError as e:
                    outcome = f"{type(e).__name__}: {e}"
                with self.lock:
                    if outcome == "site":
                        self.served.set()
                    key = outcome if outcome == "site" or self.served.is_set() else "before"
                    self.results[key] += 1
                if not self.served.is_set():
                    time.sleep(0.05)

    def count(self, outcome: str) -> int:
        with self.lock:
            return self.results[outcome]

    def failures(self) -> Counter[str]:
        with self.lock:
            return Counter({k: v for k, v in self.results.items() if k not in ("site", "before")})


def failures_logged(kade: Kade, port: int) -> list[str]:
    """Task failures in kade up's log naming the squatted port, one line each."""
    pattern = re.compile(rf"task (\S+) of {APP} failed: host port {port}/tcp on 127\.0\.0\.1 "
                         "is in use by another process: the task is placed again on another "
                         "port$")
    return [m.group(1) for text in kade.log.read_text(errors="replace").splitlines()
            if (m := pattern.search(text))]


def test_a_squatted_port_never_reaches_the_router_nor_crash_loops(
    kade: Kade, squatter: Squatter
) -> None:
    port = squatter.server_address[1]
    url = f"http://127.0.0.1:{kade.http_port}/"
    with Load(url) as load:
        kade.deploy(web(2))
        tasks = kade.wait_healthy(APP, 2)
        assert port not in {t["ports"][0] for t in tasks}
        wait_for(lambda: load.count("site") > 100, 60, "traffic served by the app")

        # The port is reported on the node and avoided: more tasks never get it.
        [node] = kade.get("/v1/nodes")["nodes"]
        assert node["portsHeld"] == [port]
        kade.client.post(f"/v1/apps{APP}/scale", {"instances": 4})
        tasks = kade.wait_healthy(APP, 4)
        assert port not in {t["ports"][0] for t in tasks}
        served = load.count("site")
        wait_for(lambda: load.count("site") > served + 100, 60, "traffic after the scale-up")

    assert load.failures() == Counter(), load.failures().most_common(5)
    assert squatter.requests == []  # no health check and no visitor reached it
    # It failed once, with the reason, and was placed on another port: no crash loop.
    assert len(failures_logged(kade, port)) == 1
    failure = kade.app(APP)["lastTaskFailure"]["message"]
    assert failure == (f"host port {port}/tcp on 127.0.0.1 is in use by another process: "
                       "the task is placed again on another port")
