"""What capturing a task's output costs kade: CPU of the `kade up` process per 10k lines/s.

One task writes numbered lines (~90 bytes, in bursts every 100 ms) at a target rate; after a
warm-up, the `kade up` process's user+sys CPU time (from /proc/<pid>/stat) is read over a
fixed window, and the lines stored in that window are counted from the numbers of the last
stored line at both ends. Printed per rate: lines/s stored, kade's CPU in % of one core, and
that CPU per 10k lines/s. A first run with a task that writes nothing gives kade's own idle
cost, for comparison. Goal (issue 10): < 15% of one core per 10k lines/s.

    .venv/bin/python bench/logs_capture.py [--driver docker|exec] [--window 20]
                                           [--rates 10000,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _kade import Kade, wait_for  # noqa: E402

from kade.logs.record import LogQuery  # noqa: E402
from kade.logs.store import LogStore  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
WARMUP = 5.0  # seconds of output before the window: the capture is in its steady state


def writer(rate: int) -> str:
    """A shell command writing `rate` numbered lines a second, in 10 bursts."""
    if rate == 0:
        return "exec sleep 100000"
    burst = rate // 10
    line = ("2026-11-30T21:00:00Z INFO GET /api/orders/%d 200 12ms user=4711 "
            "request-id=abcdef0123 n=%d\\n")
    return ("awk 'BEGIN { n = 0; while (1) { for (i = 0; i < " + str(burst) + "; i++) { n++; "
            "printf \"" + line + "\", n % 977, n }; fflush(); system(\"sleep 0.1\") } }'")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


async def last_number(kade: Kade, app_id: str) -> int:
    store = await LogStore(kade.data_dir).open()
    try:
        got = await store.query(LogQuery(app=app_id, tail=1))
    finally:
        await store.close()
    return int(got[-1].line.rsplit("n=", 1)[1]) if got else 0


def measure(kade: Kade, driver: str, rate: int, window: float) -> tuple[float, float]:
    """(lines/s stored, kade's CPU in % of one core) while one task writes `rate` lines/s."""
    app_id = f"/bench/logs{rate}"
    app: dict[str, object] = {"id": app_id, "cmd": writer(rate), "cpus": 0.5, "mem": 64}
    if driver == "docker":
        app["container"] = {"docker": {"image": "kade/busybox:latest"}}
    kade.deploy(app)
    wait_for(lambda: kade.running_tasks(app_id), 60, f"{app_id} running")
    time.sleep(WARMUP)
    assert kade.proc is not None
    pid = kade.proc.pid
    n0, c0, t0 = asyncio.run(last_number(kade, app_id)), cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    n1, c1, t1 = asyncio.run(last_number(kade, app_id)), cpu_seconds(pid), time.monotonic()
    kade.client.request("DELETE", "/v1/apps/" + app_id.strip("/"))
    wait_for(lambda: not kade.get("/v1/apps")["apps"], 60, f"{app_id} gone")
    return (n1 - n0) / (t1 - t0), 100 * (c1 - c0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--driver", choices=["docker", "exec"], default="docker")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--rates", default="10000,1000")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="kade-bench-logs-"))
    # no router: it has nothing to route here, and its acknowledgements to the API would
    # add a base load that varies more than the figure measured
    kade = Kade(tmp / "kade", driver=args.driver, extra=["--no-router"])
    try:
        kade.start()
        print(f"driver {args.driver}, window {args.window:g} s, load {os.getloadavg()[0]:.2f}")
        _, idle = measure(kade, args.driver, 0, args.window)
        print(f"  idle (a task writing nothing): kade {idle:.1f}% of one core")
        for rate in rates:
            got, cpu = measure(kade, args.driver, rate, args.window)
            per_10k = cpu * 10_000 / got if got else float("nan")
            over = (cpu - idle) * 10_000 / got if got else float("nan")
            print(f"  {rate:>6} lines/s asked: {got:8.0f} lines/s stored, kade {cpu:5.1f}% "
                  f"of one core, {per_10k:5.1f}% per 10k lines/s ({over:5.1f}% over idle)")
    finally:
        kade.cleanup()
        for pid in kade.task_pids():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
