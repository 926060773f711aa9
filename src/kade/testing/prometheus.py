"""A real Prometheus (Debian's) on 127.0.0.1 with a free port, for tests and benchmarks:
given samples as OpenMetrics text it builds TSDB blocks with `promtool tsdb
create-blocks-from openmetrics`, starts `prometheus` on them, and answers queries through its
HTTP API — the reference kade's query engine is compared with."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from kade.testing.etcd import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
START_TIMEOUT = 60.0


class PrometheusServer:
    def __init__(self, root: Path) -> None:
        if not Path(PROMETHEUS).exists():
            raise RuntimeError("prometheus is not installed: run scripts/setup.sh (Debian's "
                               "prometheus)")
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def load_openmetrics(self, text: str) -> None:
        """Samples to blocks in the data dir (before `start`)."""
        source = self.root / "samples.om"
        source.write_text(text)
        subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source),
                        str(self.root / "data")], check=True, capture_output=True)

    def start(self, config: str = "global: {}\n") -> None:
        cfg = self.root / "prometheus.yml"
        cfg.write_text(config)
        self.proc = start_ready(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=100y", "--log.level=warn"],
            self.root / "prometheus.log", f"{self.url}/-/ready")

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """An answer of its HTTP API (`data`), or its error as a RuntimeError."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None


def start_ready(command: list[str], log_file: Path, ready_url: str) -> subprocess.Popen[bytes]:
    """Start a server of the Prometheus family (its own session, output to `log_file`) and
    wait until `ready_url` answers 200; RuntimeError if it exits or never does."""
    log = open(log_file, "ab")  # noqa: SIM115 - the child owns it
    try:
        proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{Path(command[0]).name} exited: see {log_file}")
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{Path(command[0]).name} did not become ready: see {log_file}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
