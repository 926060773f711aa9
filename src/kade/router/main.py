"""The router process: the proxy, its admin listener and the control-plane follower."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

from kade.addresses import is_loopback, split_addr
from kade.router.accesslog import AccessLog
from kade.router.admin import serve_admin
from kade.router.follow import Follower
from kade.router.proxy import Proxy, ProxyConfig
from kade.router.tls import CertStore
from kade.router.workers import WorkerPool

log = logging.getLogger("kade.router")


def check_admin_addr(addr: str, public: bool, *, flags: tuple[str, str] = (
        "--admin-addr", "--admin-public")) -> None:
    """The admin endpoint shows the whole table (every app's servers) and the metrics: it is
    served on a loopback address only, unless `public` says otherwise. ValueError if not."""
    host, _ = split_addr(addr, "127.0.0.1")
    if not public and not is_loopback(host):
        raise ValueError(f"{flags[0]} {addr}: not a loopback address; the admin endpoint "
                         f"shows the routing table and metrics to whoever reaches it: give "
                         f"{flags[1]} to serve it there anyway")


def read_token(path: Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The control plane's token: from `path` (which only its owner may read), else from the
    environment's KADE_TOKEN, else None (no Authorization header is sent). Never from the
    command line, where every local user sees it. ValueError naming the problem."""
    if path is None:
        token = (os.environ if environ is None else environ).get("KADE_TOKEN", "").strip()
        return token or None
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--token-file {path}: cannot be read: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    if st.st_mode & 0o077:
        raise ValueError(f"--token-file {path}: mode {stat.S_IMODE(st.st_mode):04o} lets "
                         f"others read it; it must be 0600 (chmod 600 {path})")
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"--token-file {path}: must hold one token (no spaces)")
    return text


async def run_router(
    *,
    http_addr: str,
    admin_addr: str,
    api_url: str,
    state_dir: Path,
    name: str,
    config: ProxyConfig | None = None,
    access_log: str | None = None,
    grace: float = 10.0,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    workers: int = 1,
    token: str | None = None,
    admin_public: bool = False,
    https_addr: str | None = None,
    certs: CertStore | None = None,
) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT), then drain for at most `grace` s.

    With `workers` > 1, that many processes share the HTTP address (see kade.router.workers).
    `token` is sent to the control plane as `Authorization: Bearer`. With `https_addr`, an
    HTTPS entrypoint serves `certs` (plus the control plane's certificates) chosen by SNI.
    """
    check_admin_addr(admin_addr, admin_public)
    config = config or ProxyConfig()
    if https_addr is not None:  # other worker processes redirect to it too
        config = replace(config, https_port=split_addr(https_addr, "0.0.0.0")[1])
    proxy = Proxy(config, AccessLog(access_log) if access_log else None)
    if https_addr is not None and certs is None:
        certs = CertStore()
    follower = Follower(proxy, api_url, state_dir, name, token=token,
                        certs=certs if https_addr is not None else None)
    follower.load_saved()
    pool: WorkerPool | None = None
    if workers > 1:
        pool = WorkerPool(workers, http_addr, config, access_log, grace, follower.request_ack,
                          https_addr=https_addr,
                          cert_files=[(c.source, c.key_path) for c in certs.files]
                          if certs is not None else [])
        pool.table = proxy.table.data
        follower.peers = pool
    follower.load_saved_tls()  # after the pool exists: its workers get them too
    host, port = split_addr(http_addr, "0.0.0.0")
    await proxy.listen(host, port, shared=pool is not None)
    if https_addr is not None and certs is not None:
        shost, sport = split_addr(https_addr, "0.0.0.0")
        await proxy.listen(shost, sport, shared=pool is not None, tls=certs.server_context())
        if not len(certs):
            log.warning("https on %s has no certificate yet: handshakes fail until the "
                        "control plane sends one (kade/tls/<name>/cert and key in KV)",
                        https_addr)
    ahost, aport = split_addr(admin_addr, "127.0.0.1")

    def status() -> dict[str, Any]:
        return {**follower.status(), "workers": workers}

    def metrics() -> str:
        if pool is None:
            return proxy.metrics_text()
        return proxy.metrics_text(pool.stats(), pool.gauges())

    admin = await serve_admin(proxy, ahost, aport, status, metrics)
    log.info("router %s: http on %s%s, admin on %s, control plane %s", name, http_addr,
             f", https on {https_addr}" if https_addr else "", admin_addr, api_url)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(proxy.maintain()), tg.create_task(follower.run())]
            if pool is not None:
                tasks.append(tg.create_task(pool.run()))
            await stop.wait()
            log.info("router %s: stopping, draining for at most %.0f s", name, grace)
            admin.close()
            if pool is not None:
                await asyncio.gather(proxy.shutdown(grace), pool.stop(grace))
            else:
                await proxy.shutdown(grace)
            for task in tasks:
                task.cancel()
    finally:
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
