"""A webhook receiver on 127.0.0.1 for tests: the JSON bodies it was sent, in order (the
`hook` fixture of conftest.py)."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any


class Hook:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                size = int(self.headers.get("Content-Length", "0"))
                hook.bodies.append(json.loads(self.rfile.read(size)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def statuses(self, alertname: str) -> list[str]:
        """The statuses this alert was sent with, in order (Alertmanager's webhook body)."""
        return [a["status"] for b in self.bodies for a in b["alerts"]
                if a["labels"]["alertname"] == alertname]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

