"""Extra worker processes: more cores for the data path, one router for the control plane.

One Python process serves on one core. With `--workers N` the router process starts N-1
children that listen on the same address (SO_REUSEPORT: the kernel spreads connections over
the processes). Only the parent follows the control plane: it hands each table to the
children over a socket pair (one JSON line per message) and acknowledges a revision once every
child has applied it, with the in-flight counts of all processes added up. Children report
their stats once a second for /metrics. A child that dies is started again; a child whose
parent dies drains and exits. With an HTTPS entrypoint the children serve it too: they load
the same certificate files, and the parent hands them the control plane's certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kade.router.metrics import Stats
from kade.router.proxy import Proxy, ProxyConfig
from kade.router.tls import CertStore, load_files, remote_certificates

log = logging.getLogger("kade.router")

MAX_MESSAGE = 256 * 1024 * 1024  # a table is one line
APPLY_TIMEOUT = 30.0  # generous: a child may still be starting


def stats_to_wire(stats: list[Stats]) -> list[list[Any]]:
    return [[s.router, s.service, s.codes, s.buckets, s.total_seconds, s.count] for s in stats]


def stats_from_wire(items: list[list[Any]]) -> list[Stats]:
    out = []
    for router, service, codes, buckets, total, count in items:
        st = Stats(router, service)
        st.codes, st.buckets, st.total_seconds, st.count = codes, buckets, total, count
        out.append(st)
    return out


class _Child:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.applied = -1
        self.draining: dict[str, int] = {}
        self.stats: list[Stats] = []
        self.gauges: dict[str, Any] = {}


class WorkerPool:
    """The parent's side: starts, feeds, watches and stops the child workers."""

    def __init__(self, count: int, http_addr: str, config: ProxyConfig,
                 access_log: str | None, grace: float, on_change: Callable[[], None],
                 https_addr: str | None = None,
                 cert_files: list[tuple[str, str]] | None = None) -> None:
        self.children = [_Child(i) for i in range(1, count)]
        self.https_addr = https_addr
        self.cert_files = cert_files or []
        self.tls: dict[str, Any] | None = None
        self.http_addr = http_addr
        self.config = config
        self.access_log = access_log
        self.grace = grace
        self.on_change = on_change
        self.table: dict[str, Any] | None = None
        self._applied = asyncio.Event()
        self._stopping = False

    # -- what the follower and the admin listener ask ------------------------------------------

    def broadcast(self, table: dict[str, Any]) -> None:
        self.table = table
        for child in self.children:
            self._send(child, {"table": table})

    def broadcast_tls(self, tls: dict[str, Any]) -> None:
        self.tls = tls
        for child in self.children:
            self._send(child, {"tls": tls})

    async def wait_applied(self, revision: int) -> None:
        """Until every running child applied `revision`; a child that cannot is restarted."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(APPLY_TIMEOUT):
                while not all(c.applied == revision for c in self.children if c.writer):
                    self._applied.clear()
                    await self._applied.wait()
        for child in self.children:
            if child.writer is not None and child.applied != revision and child.proc:
                log.error("worker %d did not apply revision %d: restarting it",
                          child.index, revision)
                child.proc.kill()

    def draining(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for child in self.children:
            for url, n in child.draining.items():
                total[url] = total.get(url, 0) + n
        return total

    def stats(self) -> list[Stats]:
        return [st for child in self.children for st in child.stats]

    def gauges(self) -> list[dict[str, Any]]:
        return [child.gauges for child in self.children if child.gauges]

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for child in self.children:
                tg.create_task(self._supervise(child))

    async def _supervise(self, child: _Child) -> None:
        backoff = 0.5
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._run_child(child)
            finally:
                child.writer = None
                child.draining = {}
                child.stats = []
                child.gauges = {}
                self._applied.set()
                self.on_change()  # its in-flight requests are gone with it
            if self._stopping:
                return
            log.error("worker %d exited (code %s); starting it again", child.index,
                      child.proc.returncode if child.proc else None)
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 10)
            await asyncio.sleep(backoff)

    async def _run_child(self, child: _Child) -> None:
        parent_end, child_end = socket.socketpair()
        try:
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kade.router.workers", "--http-addr", self.http_addr,
                "--control-fd", str(child_end.fileno()),
                "--config", json.dumps(asdict(self.config)), "--grace", str(self.grace),
                *(["--access-log", self.access_log] if self.access_log else []),
                *self._tls_args(),
                pass_fds=[child_end.fileno()],
            )
        finally:
            child_end.close()
        reader, writer = await asyncio.open_connection(sock=parent_end, limit=MAX_MESSAGE)
        child.writer = writer
        child.applied = -1
        if self.tls is not None:
            self._send(child, {"tls": self.tls})
        if self.table is not None:
            self._send(child, {"table": self.table})
        try:
            while line := await reader.readline():
                self._received(child, json.loads(line))
        except (ConnectionError, ValueError) as e:
            log.error("worker %d: %s", child.index, e)
        finally:
            writer.close()
            proc = child.proc
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    def _tls_args(self) -> list[str]:
        if self.https_addr is None:
            return []
        args = ["--https-addr", self.https_addr]
        for cert, key in self.cert_files:
            args += ["--tls-cert", cert, "--tls-key", key]
        return args

    def _received(self, child: _Child, msg: dict[str, Any]) -> None:
        if "applied" in msg:
            child.applied = int(msg["applied"])
            self._applied.set()
        if "draining" in msg:
            changed = msg["draining"] != child.draining
            child.draining = msg["draining"]
            if changed:
                self.on_change()
        if "stats" in msg:
            child.stats = stats_from_wire(msg["stats"])
            child.gauges = msg.get("gauges", {})

    def _send(self, child: _Child, msg: dict[str, Any]) -> None:
        if child.writer is not None and not child.writer.is_closing():
            child.writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    async def stop(self, grace: float) -> None:
        """SIGTERM every child (they drain like the parent) and wait for them."""
        self._stopping = True
        procs = [c.proc for c in self.children if c.proc and c.proc.returncode is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), grace + 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# -- the child's side ----------------------------------------------------------------------------


async def run_worker(http_addr: str, control_fd: int, config: ProxyConfig,
                     access_log: str | None, grace: float, https_addr: str | None = None,
                     certs: CertStore | None = None) -> None:
    from kade.addresses import split_addr
    from kade.router.accesslog import AccessLog

    proxy = Proxy(config, AccessLog(access_log) if access_log else None)
    sock = socket.socket(fileno=control_fd)
    reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_MESSAGE)

    def send(msg: dict[str, Any]) -> None:
        if not writer.is_closing():
            writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    proxy.on_drained = lambda: send({"draining": proxy.draining()})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def follow_parent() -> None:
        listening = False
        while line := await reader.readline():
            msg = json.loads(line)
            if "tls" in msg and certs is not None:
                loaded = await asyncio.to_thread(remote_certificates,
                                                 msg["tls"].get("certificates"))
                certs.replace_remote(loaded[0], loaded[1])
            if "table" in msg:
                table = proxy.apply(msg["table"])
                send({"applied": table.revision, "draining": proxy.draining()})
                if not listening:  # serve only once there is a table
                    host, port = split_addr(http_addr, "0.0.0.0")
                    await proxy.listen(host, port, shared=True)
                    if https_addr is not None and certs is not None:
                        shost, sport = split_addr(https_addr, "0.0.0.0")
                        await proxy.listen(shost, sport, shared=True,
                                           tls=certs.server_context())
                    listening = True
        stop.set()  # the parent is gone

    async def report() -> None:
        while True:
            await asyncio.sleep(1)
            g = proxy.gauges()
            send({"stats": stats_to_wire([*proxy.stats.values(), proxy.unrouted]),
                  "draining": proxy.draining(),
                  "gauges": {"client_connections": g.client_connections,
                             "idle_upstream": g.idle_upstream,
                             "inflight": [[s, u, n] for (s, u), n in g.inflight.items()]}})

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(proxy.maintain()), tg.create_task(follow_parent()),
                 tg.create_task(report())]
        await stop.wait()
        await proxy.shutdown(grace)
        for task in tasks:
            task.cancel()
    writer.close()


def main() -> None:
    import argparse

    import uvloop

    p = argparse.ArgumentParser(prog="python -m kade.router.workers")
    p.add_argument("--http-addr", required=True)
    p.add_argument("--control-fd", type=int, required=True)
    p.add_argument("--config", default="{}")
    p.add_argument("--access-log", default=None)
    p.add_argument("--grace", type=float, default=10.0)
    p.add_argument("--https-addr", default=None)
    p.add_argument("--tls-cert", action="append", default=[], type=Path)
    p.add_argument("--tls-key", action="append", default=[], type=Path)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format=f"%(asctime)s %(levelname)s worker {os.getpid()}: %(message)s")
    config = ProxyConfig(**json.loads(args.config))
    certs = None
    if args.https_addr is not None:
        certs = CertStore(load_files(c, k) for c, k in zip(args.tls_cert, args.tls_key,
                                                            strict=True))
    uvloop.run(run_worker(args.http_addr, args.control_fd, config, args.access_log,
                          args.grace, args.https_addr, certs))


if __name__ == "__main__":
    main()
