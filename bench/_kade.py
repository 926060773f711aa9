"""Shared parts of the core benchmarks: a real `kade up`, and clocks on two event streams.

The benchmarks run kade through the integration harness (`tests/integration/harness.py`):
its own data dir, ports, node name and host-port range, and a cleanup that removes exactly
the containers and router it started. Moments are read from event streams rather than by
polling, so a figure is not rounded up to a polling interval:

- kade's `/v1/events` (server-sent events), stamped with `time.time()` as each line arrives;
- Docker's own event stream, which carries the engine's timestamp (`timeNano`).
Both are wall-clock times of the same machine, so they can be subtracted.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.harness import Kade, free_port, wait_for  # noqa: E402

__all__ = ["ROOT", "Kade", "free_port", "wait_for", "Stamped", "Follower", "kade_events",
           "docker_events", "running_kade", "site_app", "summary", "rss_kib"]

HEALTH = {"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 1,
          "timeoutSeconds": 2, "gracePeriodSeconds": 10, "maxConsecutiveFailures": 3}


def site_app(app_id: str, instances: int, cpus: float = 0.1, **extra: Any) -> dict[str, Any]:
    """An app of `kade/site:1` (busybox httpd on $PORT0) with an HTTP check on /health.

    `cpus` becomes a hard CPU quota (Docker's NanoCpus), which also throttles runc's own
    start-up inside the container: with 0.01 a start takes ~1 s longer than with 0.1.
    """
    return {"id": app_id, "instances": instances, "cpus": cpus, "mem": 16,
            "container": {"docker": {"image": "kade/site:1"}}, "healthChecks": [HEALTH],
            **extra}


@dataclass(frozen=True)
class Stamped:
    at: float  # wall-clock seconds
    name: str  # SSE event name, or Docker's action
    data: dict[str, Any]


@dataclass
class Follower:
    """Reads a line-based event stream from a child process in a thread; keeps every event."""

    proc: subprocess.Popen[str]
    parse: Callable[[Iterator[str]], Iterator[Stamped]]
    events: list[Stamped] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def start(self) -> Follower:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for event in self.parse(self._lines()):
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def _lines(self) -> Iterator[str]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.connected.set()
            yield line.rstrip("\n")

    def wait(self, match: Callable[[Stamped], bool], timeout: float, what: str) -> Stamped:
        """The first event (already seen or still to come) for which `match` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if match(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no event: {what}")
                self._cond.wait(left)

    def since(self, at: float) -> list[Stamped]:
        with self._cond:
            return [e for e in self.events if e.at >= at]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)


def _parse_sse(lines: Iterator[str]) -> Iterator[Stamped]:
    name, data = "message", ""
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and data:
            yield Stamped(time.time(), name, json.loads(data))
            name, data = "message", ""


def _parse_docker(lines: Iterator[str]) -> Iterator[Stamped]:
    for line in lines:
        if line.strip():
            event = json.loads(line)
            yield Stamped(event["timeNano"] / 1e9, event.get("Action", ""), event)


def kade_events(kade: Kade) -> Follower:
    """Follow kade's `/v1/events` from now on; returns once the stream is open."""
    proc = subprocess.Popen(["curl", "-sN", "-H", f"Authorization: Bearer {kade.token}",
                             f"http://{kade.addr}/v1/events"],
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    follower = Follower(proc, _parse_sse).start()
    if not follower.connected.wait(10):
        follower.close()
        raise RuntimeError("kade's event stream did not open")
    return follower


def docker_events(since: float, *filters: str) -> Follower:
    """Docker's container events from `since` (replayed, so nothing is missed at the start)."""
    cmd = ["docker", "events", "--since", str(int(since) - 1), "--format", "{{json .}}",
           "--filter", "type=container"]
    for f in filters:
        cmd += ["--filter", f]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
    return Follower(proc, _parse_docker).start()


@contextlib.contextmanager
def running_kade(name: str, **options: Any) -> Iterator[Kade]:
    """A `kade up` in a temporary data dir (`options` as the harness's `Kade` takes them, e.g.
    `driver="exec"`); everything it started is removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=f"kade-bench-{name}-"))
    kade = Kade(tmp / "kade", **options)
    try:
        yield kade.start()
    finally:
        kade.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def summary(values: list[float]) -> str:
    """`median 1.23 s (min 1.10, max 1.40; runs 1.23 1.10 1.40)`."""
    runs = " ".join(f"{v:.2f}" for v in values)
    return (f"median {statistics.median(values):.2f} s (min {min(values):.2f}, "
            f"max {max(values):.2f}; runs {runs})")


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
