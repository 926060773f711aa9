"""The router as a process of its own, started by `kade up` and left running when it stops.

The router must keep serving while the control plane restarts or is killed, so it runs in
its own session (a Ctrl-C of `kade up` does not reach it) and is found again through its pid
file on the next start instead of being started twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "router.pid"


def running_pid(state_dir: Path) -> int | None:
    """The pid of this data dir's router if it still runs."""
    try:
        pid = int(_pid_file(state_dir).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"kade.router" in cmdline else None


def ensure_router(*, state_dir: Path, http_addr: str, admin_addr: str, api_url: str,
                  name: str, access_log: str | None = None, token_file: Path | None = None,
                  api_cacert: Path | None = None, https_addr: str | None = None,
                  tls_dir: Path | None = None, admin_public: bool = False) -> int:
    """Start the router unless one runs for this data dir; returns its pid."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid = running_pid(state_dir)
    if pid is not None:
        return pid
    cmd = [sys.executable, "-m", "kade.router", "--http-addr", http_addr,
           "--admin-addr", admin_addr, "--api", api_url, "--state-dir", str(state_dir),
           "--name", name]
    if access_log:
        cmd += ["--access-log", access_log]
    if admin_public:
        cmd += ["--admin-public"]
    if https_addr:
        cmd += ["--https-addr", https_addr]
    if tls_dir is not None:
        cmd += ["--tls-dir", str(tls_dir)]
    if token_file is not None:  # a file, never the token itself: argv is public
        cmd += ["--token-file", str(token_file)]
    env = dict(os.environ)
    if api_cacert is not None:
        env["SSL_CERT_FILE"] = str(api_cacert)  # the API's own certificate
    log_fd = os.open(state_dir / "router.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with open(log_fd, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _pid_file(state_dir).write_text(str(proc.pid))
    return proc.pid


def stop_router(state_dir: Path, timeout: float = 15.0) -> bool:
    """SIGTERM the router (it drains in-flight requests) and wait for it to go."""
    pid = running_pid(state_dir)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(state_dir) == pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if running_pid(state_dir) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _pid_file(state_dir).unlink(missing_ok=True)
    return True
