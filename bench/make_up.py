"""`make up` until the example site answers 200 through the router, on a machine where it ran.

Usage: python bench/make_up.py [--runs 3]

Runs `make up` in the repository (set-up checks, then `kade up` with the example apps and
KV keys) on ports and a data dir of its own (KADE_* variables), and times from the start
of `make` to the first `200` of `GET /` with `Host: www.localhost` through the router. The
first run brings everything into place and is not counted; before each next run kade is
stopped with its tasks and router (`kade down --stop-tasks`: after a mere Ctrl-C the router
and the tasks keep serving the site, and there is nothing to measure), so the run sets up,
starts kade, and starts and health-checks the example apps anew. Everything started is
removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTTP, API = "127.0.0.1:18380", "127.0.0.1:18370"


def env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "KADE_DATA_DIR": str(data_dir), "KADE_API_ADDR": API,
            "KADE_ADDR": API, "KADE_HTTP_ADDR": HTTP, "KADE_DNS_ADDR": "127.0.0.1:18360",
            "KADE_ROUTER_ADMIN_ADDR": "127.0.0.1:18381", "KADE_NODE": "make-up-bench",
            "KADE_PORTS": "26000-26199"}


def site_ok() -> bool:
    req = urllib.request.Request(f"http://{HTTP}/", headers={"Host": "www.localhost"})
    try:
        with urllib.request.urlopen(req, timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def one_run(data_dir: Path) -> tuple[float, subprocess.Popen[bytes]]:
    start = time.monotonic()
    proc = subprocess.Popen(["make", "up"], cwd=ROOT, env=env(data_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while not site_ok():
        if proc.poll() is not None:
            raise RuntimeError(f"make up exited with {proc.returncode}")
        if time.monotonic() - start > 120:
            raise RuntimeError("the site did not answer within 120 s")
        time.sleep(0.02)
    return time.monotonic() - start, proc


def stop(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    subprocess.run([str(ROOT / ".venv/bin/kade"), "down", "--stop-tasks"],
                   env=env(data_dir), check=True, stdout=subprocess.DEVNULL)
    proc.wait(60)
    while site_ok():  # the router is gone once it has finished its requests
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="kade-make-up-"))
    times = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        took, proc = one_run(data_dir)
        print(f"first run (not counted): {took:.2f} s", flush=True)
        for _ in range(args.runs):
            stop(proc, data_dir)
            took, proc = one_run(data_dir)
            times.append(took)
            print(f"make up -> first 200 from the site: {took:.2f} s", flush=True)
        stop(proc, data_dir)
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for line in subprocess.run(
                ["docker", "ps", "-aq", "--filter", "label=kade.node=make-up-bench"],
                capture_output=True, text=True).stdout.split():
            subprocess.run(["docker", "rm", "-f", line], capture_output=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f}; runs: "
          f"{', '.join(f'{t:.2f}' for t in times)} s")


if __name__ == "__main__":
    main()
