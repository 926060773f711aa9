"""Visitors and an observer while a cluster changes: constant load through one router, and
the fewest healthy tasks of an app seen. Both are threads bounded in time whatever happens,
for tests (`test_cluster_drain.py`) and benchmarks (`bench/cluster_drain.py`) alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx


class Load:
    """GETs one after another without pause, by a few clients on keep-alive connections,
    through the router at `url` with the `Host` header `host`. Failures are kept to be
    shown."""

    def __init__(self, url: str, host: str, clients: int = 3, limit: float = 240) -> None:
        self.url = url
        self.host = host
        self.limit = limit
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
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
        deadline = time.monotonic() + self.limit
        with httpx.Client(headers={"Host": self.host}, timeout=10) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    r = client.get(self.url)
                    failure = None if r.status_code == 200 else (
                        f"HTTP {r.status_code}: {r.text[:80]}")
                except httpx.HTTPError as e:
                    failure = f"{type(e).__name__}: {e}"
                with self.lock:
                    if failure is None:
                        self.ok += 1
                    else:
                        self.failures.append(failure)

    def served(self) -> int:
        with self.lock:
            return self.ok


class Lowest:
    """Samples `count` (e.g. an app's healthy tasks, read from the API) every `every`
    seconds: the fewest seen. A sample that fails is kept as an error, not counted."""

    def __init__(self, count: Callable[[], int], every: float = 0.2, limit: float = 240
                 ) -> None:
        self.count = count
        self.every = every
        self.limit = limit
        self.stop = threading.Event()
        self.samples: list[int] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Lowest:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                self.samples.append(self.count())
            except Exception as e:  # noqa: BLE001 - a lost sample is reported, not fatal
                self.errors.append(str(e))
            self.stop.wait(self.every)

    @property
    def lowest(self) -> int:
        return min(self.samples)
