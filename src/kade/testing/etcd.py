"""Real etcd members on this machine: a cluster of them on 127.0.0.1 with free ports and data
dirs under one folder, for tests (`tests/etcd.py`'s fixtures) and the one-machine demo cluster
(`make cluster`). Members can be killed, paused and restarted (two of three killed: quorum
lost).

Members run with short heartbeats and elections (a new leader within a second), and accept
transactions of up to 2,048 operations.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
MEMBERS = 3
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdCluster:
    def __init__(self, root: Path, size: int = MEMBERS) -> None:
        if not Path(ETCD).exists():
            raise RuntimeError("etcd is not installed: run scripts/setup.sh (Debian's "
                               "etcd-server)")
        self.root = root
        self.names = [f"m{i}" for i in range(size)]
        self.client_ports = [free_port() for _ in self.names]
        self.peer_ports = [free_port() for _ in self.names]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self.paused: set[int] = set()
        self.cluster_token = f"kade-test-{uuid.uuid4().hex[:8]}"

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    def _command(self, i: int) -> list[str]:
        peers = ",".join(f"{n}=http://127.0.0.1:{p}"
                         for n, p in zip(self.names, self.peer_ports, strict=True))
        client, peer = f"http://127.0.0.1:{self.client_ports[i]}", \
            f"http://127.0.0.1:{self.peer_ports[i]}"
        return [
            ETCD, "--name", self.names[i], "--data-dir", str(self.root / self.names[i]),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", peers, "--initial-cluster-state", "new",
            "--initial-cluster-token", self.cluster_token,
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--max-txn-ops", "2048", "--logger", "zap", "--log-level", "error",
        ]

    def start(self) -> None:
        for i in range(len(self.names)):
            self._spawn(i)
        self.wait_healthy()

    def _spawn(self, i: int) -> None:
        log = open(self.root / f"{self.names[i]}.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            self.procs[i] = subprocess.Popen(self._command(i), stdout=log, stderr=log,
                                             start_new_session=True)
        finally:
            log.close()

    def running(self, i: int) -> bool:
        proc = self.procs[i]
        return proc is not None and proc.poll() is None

    def kill(self, *members: int) -> None:
        """SIGKILL the members (their data stays: restart() brings them back)."""
        for i in members:
            proc = self.procs[i]
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            self.procs[i] = None
            self.paused.discard(i)

    def pause(self, *members: int) -> None:
        """SIGSTOP the members: alive, their connections open, answering nothing."""
        for i in members:
            proc = self.procs[i]
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGSTOP)
                self.paused.add(i)

    def restart(self, *members: int) -> None:
        for i in members:
            if not self.running(i):
                self._spawn(i)

    def heal(self) -> None:
        """Every member running, and a leader elected."""
        for i in sorted(self.paused):
            proc = self.procs[i]
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        self.paused.clear()
        stopped = [i for i in range(len(self.names)) if not self.running(i)]
        self.restart(*stopped)
        self.wait_healthy()

    def status(self, i: int) -> dict[str, object] | None:
        request = urllib.request.Request(
            f"{self.endpoints[i]}/v3/maintenance/status", data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                doc: dict[str, object] = json.loads(response.read())
                return doc
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def has_leader(self, i: int) -> bool:
        doc = self.status(i)
        return doc is not None and str(doc.get("leader", "0")) != "0"

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.running(i) and self.has_leader(i) for i in range(len(self.names))):
                return
            time.sleep(0.05)
        logs = "\n".join((self.root / f"{n}.log").read_text(errors="replace")[-1500:]
                         for n in self.names if (self.root / f"{n}.log").exists())
        raise RuntimeError(f"etcd did not become healthy in {timeout} s:\n{logs}")

    def wait_revision(self, revision: int, timeout: float = START_TIMEOUT) -> None:
        """Wait until every running member has applied `revision` (so any one of them can
        answer a read of it alone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            revs = []
            for i in range(len(self.names)):
                if not self.running(i):
                    continue
                request = urllib.request.Request(
                    f"{self.endpoints[i]}/v3/kv/range",
                    data=b'{"key": "AA==", "serializable": true}', method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=1) as response:
                        revs.append(int(json.loads(response.read())["header"]["revision"]))
                except (OSError, ValueError, KeyError):
                    revs.append(0)
            if revs and min(revs) >= revision:
                return
            time.sleep(0.02)
        raise RuntimeError(f"etcd members did not apply revision {revision} in {timeout} s")

    def wait_until(self, check: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until no member running has a leader (`check="no-leader"`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = [i for i in range(len(self.names)) if self.running(i)]
            if check == "no-leader" and not any(self.has_leader(i) for i in up):
                return
            time.sleep(0.05)
        raise RuntimeError(f"etcd did not reach {check!r} in {timeout} s")

    def stop(self) -> None:
        self.kill(*range(len(self.names)))
