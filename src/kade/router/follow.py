"""Following the control plane: blocking queries for the table, acknowledgements, the disk copy.

The router never depends on the control plane to serve: it starts from its last table on disk,
keeps the table in use when the control plane is away, and retries with backoff. After each
table it applies it acknowledges the revision with the in-flight counts of the servers that
table removed, and again whenever one of those counts reaches 0 (the control plane waits for
that before it stops a task).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from kade.addresses import parse_duration
from kade.router.proxy import Proxy
from kade.router.table import TableError
from kade.router.tls import Certificate, CertStore, remote_certificates

log = logging.getLogger("kade.router")


class Peers(Protocol):
    """The other worker processes (kade.router.workers' pool, which main hands over): fed
    the same table and certificates, and counted in acknowledgements. The follower does not
    own them."""

    def broadcast(self, table: dict[str, Any]) -> None: ...

    def broadcast_tls(self, tls: dict[str, Any]) -> None: ...

    async def wait_applied(self, revision: int) -> None: ...

    def draining(self) -> dict[str, int]: ...

Loaded = tuple[list[Certificate], Certificate | None, list[str]]
TABLE_FILE = "table.json"
TLS_FILE = "tls.json"  # the control plane's certificates and keys: mode 0600
MAX_BACKOFF = 10.0


def save_table(state_dir: Path, data: dict[str, Any], name: str = TABLE_FILE) -> None:
    """Write atomically: a reader (or a crash) sees the old file or the new, never half.
    Only the router's user may read it (0600)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / name
    tmp = state_dir / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # a stale temporary file keeps its old mode
        json.dump(data, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def load_table(state_dir: Path, name: str = TABLE_FILE) -> dict[str, Any] | None:
    path = state_dir / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("ignoring the saved table %s: %s", path, e)
        return None
    return data if isinstance(data, dict) else None


class Follower:
    def __init__(self, proxy: Proxy, api_url: str, state_dir: Path, name: str,
                 wait: str = "60s", token: str | None = None,
                 certs: CertStore | None = None) -> None:
        self.proxy = proxy
        # With an HTTPS entrypoint: the control plane's certificates (`kade/tls/` in KV) are
        # asked for with the table and put in `certs`; without, they are never fetched.
        self.certs = certs
        self.tls_index = 0
        # sent on every call; kept out of reprs, logs and status (only the header carries it)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Several servers (comma-separated): the next one is asked when one does not answer.
        self.api_urls = [u.strip().rstrip("/") for u in api_url.split(",") if u.strip()]
        self._server = 0
        self.state_dir = state_dir
        self.name = name
        self.wait = wait
        self.index = 0  # the revision last seen from the control plane (applied or not)
        self.connected = False
        self.last_error = ""
        self.last_ack: dict[str, Any] | None = None
        self._watch: set[str] = set()  # removed servers to report until reported at 0
        self._ack_needed = asyncio.Event()
        self.peers: Peers | None = None  # other worker processes, fed and counted too
        proxy.on_drained = self._ack_needed.set

    def request_ack(self) -> None:
        self._ack_needed.set()

    def load_saved(self) -> bool:
        """Serve the table saved by the last run, if there is one."""
        data = load_table(self.state_dir)
        if data is None:
            return False
        try:
            table = self.proxy.apply(data)
        except (TableError, ValueError) as e:
            log.warning("ignoring the saved table: %s", e)
            return False
        self.index = table.revision
        log.info("serving the saved table, revision %d", table.revision)
        return True

    def load_saved_tls(self) -> None:
        """The control plane's certificates as last received (when it is away at start)."""
        if self.certs is None:
            return
        data = load_table(self.state_dir, TLS_FILE)
        if data is not None:
            self._use_tls(data, remote_certificates(data.get("certificates")))
            if self.peers is not None:
                self.peers.broadcast_tls(data)

    def _use_tls(self, tls: dict[str, Any], loaded: Loaded) -> None:
        assert self.certs is not None
        certs, default, problems = loaded
        for problem in problems:
            log.error("certificate left out: %s", problem)
        self.certs.replace_remote(certs, default)
        index = tls.get("index")
        self.tls_index = index if isinstance(index, int) else 0
        log.info("%d certificate(s) from the control plane", len(certs))

    async def apply_tls(self, tls: Any) -> None:
        if self.certs is None or not isinstance(tls, dict) or tls.get("index") == self.tls_index:
            return
        # PEM parsing and key files off the loop; the swap on it (handshakes read the store)
        loaded = await asyncio.to_thread(remote_certificates, tls.get("certificates"))
        self._use_tls(tls, loaded)
        if self.peers is not None:
            self.peers.broadcast_tls(tls)
        try:
            await asyncio.to_thread(save_table, self.state_dir, tls, TLS_FILE)
        except OSError as e:
            log.error("cannot save the certificates: %s", e.strerror)

    @property
    def api_url(self) -> str:
        """The server followed now."""
        return self.api_urls[self._server]

    def status(self) -> dict[str, Any]:
        return {"control_plane": {"url": self.api_url, "connected": self.connected,
                                  "last_error": self.last_error, "last_ack": self.last_ack}}

    async def run(self) -> None:
        async with httpx.AsyncClient(headers=self._headers) as client, \
                asyncio.TaskGroup() as tg:
            tg.create_task(self._follow(client))
            tg.create_task(self._acks(client))

    async def _follow(self, client: httpx.AsyncClient) -> None:
        backoff = 0.25
        wait_s = _seconds(self.wait)
        while True:
            try:
                params = {"index": str(self.index), "wait": self.wait}
                if self.certs is not None:
                    params["tlsIndex"] = str(self.tls_index)
                r = await client.get(
                    f"{self.api_url}/v1/router/table",
                    params=params,
                    timeout=httpx.Timeout(wait_s * 1.2 + 10, connect=5),
                )
                r.raise_for_status()
                data = r.json()
            except (httpx.HTTPError, ValueError) as e:
                self.connected = False
                self.last_error = f"{type(e).__name__}: {e}"
                self._server = (self._server + 1) % len(self.api_urls)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if not self.connected:
                self._ack_needed.set()  # tell a (re)started control plane where we are
            if isinstance(data, dict):  # keys never go into the table (saved, shown on /table)
                await self.apply_tls(data.pop("tls", None))
            self.connected = True
            backoff = 0.25
            revision = data.get("revision") if isinstance(data, dict) else None
            if not isinstance(revision, int):
                self.last_error = "the control plane sent a table without revision"
                await asyncio.sleep(MAX_BACKOFF)
                continue
            if revision != self.proxy.table.revision:
                await self.apply(data)
            self.index = revision
            # Also after a wait that brought nothing new: the acknowledgement is the router's
            # heartbeat, and the agent ignores a router it has not heard from for a while.
            self._ack_needed.set()

    async def apply(self, data: dict[str, Any]) -> None:
        before = set(self.proxy.table.servers())
        try:
            table = self.proxy.apply(data)
        except (TableError, ValueError) as e:
            self.last_error = f"table revision {data.get('revision')} rejected: {e}"
            log.error("%s", self.last_error)
            return
        self._watch |= before - set(table.servers())
        self.last_error = ""
        if self.peers is not None:
            self.peers.broadcast(data)
        for err in table.errors:
            log.warning("route left out: %s", err)
        try:
            await asyncio.to_thread(save_table, self.state_dir, data)
        except OSError as e:
            log.error("cannot save the table: %s", e)
        self._ack_needed.set()

    def _inflight(self) -> dict[str, int]:
        draining = self.proxy.draining()
        if self.peers is not None:
            for url, n in self.peers.draining().items():
                draining[url] = draining.get(url, 0) + n
        return {url: draining.get(url, 0) for url in sorted(self._watch | draining.keys())}

    async def _acks(self, client: httpx.AsyncClient) -> None:
        backoff = 0.25
        while True:
            await self._ack_needed.wait()
            self._ack_needed.clear()
            if self.peers is not None:
                # "applied" must hold for every process before the control plane hears it
                await self.peers.wait_applied(self.proxy.table.revision)
            inflight = self._inflight()
            body = {"router": self.name, "revision": self.proxy.table.revision,
                    "inflight": inflight}
            try:
                r = await client.put(f"{self.api_url}/v1/router/ack", json=body,
                                     timeout=httpx.Timeout(10, connect=5))
                r.raise_for_status()
            except httpx.HTTPError as e:
                self.last_error = f"ack: {type(e).__name__}: {e}"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                self._ack_needed.set()
                continue
            backoff = 0.25
            self.last_ack = {**body, "at": time.time()}
            self._watch = {url for url, n in inflight.items() if n > 0}


def _seconds(wait: str) -> float:
    """The blocking query's wait in seconds, for the request's own timeout (60 if unclear:
    the control plane judges the text itself)."""
    try:
        return parse_duration(wait, "wait")
    except ValueError:
        return 60.0
