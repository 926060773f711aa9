"""A real Alertmanager (Debian's) on 127.0.0.1 with a free port, no cluster gossip, routing
everything to one webhook: the receiver kade's alerts reach in the tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kade.testing.etcd import free_port
from kade.testing.prometheus import start_ready, stop

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
START_TIMEOUT = 60.0


class AlertmanagerServer:
    def __init__(self, root: Path, webhook: str, group_wait: str = "1s") -> None:
        if not Path(ALERTMANAGER).exists():
            raise RuntimeError("alertmanager is not installed: run scripts/setup.sh (Debian's "
                               "prometheus-alertmanager)")
        self.root = root
        self.port = free_port()
        self.webhook = webhook
        self.group_wait = group_wait
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "alertmanager.yml"
        cfg.write_text(f"""
route:
  receiver: hook
  group_by: [alertname]
  group_wait: {self.group_wait}
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs: [{{url: "{self.webhook}", send_resolved: true}}]
""")
        self.proc = start_ready(
            [ALERTMANAGER, f"--config.file={cfg}", f"--storage.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=warn"],
            self.root / "alertmanager.log", f"{self.url}/-/ready")

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None
