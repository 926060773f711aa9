"""How long a `kade` command takes, start to exit, against a running kade (hyperfine-like).

Usage: python bench/cli_startup.py [--runs 30] [--warmup 3] [--src DIR ...]

Against a fresh `kade up` holding one app of two tasks and one KV key, each command runs
`--runs` times after `--warmup` runs, one after another, as a new process each time (as a
person or a script runs it): the figure is from `fork` to exit, as `time` would show it.
Two anchors put the figures in scale: `python -c pass` (the interpreter alone) and
`kade --help` (the command-line parser, no request). `--src` runs the commands with another
checkout's `src/` first on `PYTHONPATH` too (e.g. the commit before a change), in the same
rounds, so a loaded machine slows both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _kade import ROOT, Kade, site_app
from e2e_propagation import kade_up

PYTHON = sys.executable
KEY = "bench/cli/greeting"


def commands() -> dict[str, list[str]]:
    kade = [PYTHON, "-m", "kade"]  # what the `kade` script runs, in any checkout
    return {
        "python -c pass": [PYTHON, "-c", "pass"],
        "kade --help": [*kade, "--help"],
        "kade apps": [*kade, "apps"],
        "kade tasks": [*kade, "tasks"],
        "kade kv get": [*kade, "kv", "get", KEY],
    }


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock seconds from fork to exit, and the CPU seconds (user + system) the
    process used: on a busy machine the second says what the first cannot."""
    with open(os.devnull, "wb") as null, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=null, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{argv[-1]} failed: {err.read().decode()[-500:]}")
    return took, usage.ru_utime + usage.ru_stime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--src", action="append", default=[], type=Path,
                        help="another checkout's src/ to measure in the same rounds")
    args = parser.parse_args()
    sources = {"this": ROOT / "src", **{str(p): p for p in args.src}}
    with kade_up("cli") as kade:
        prepare(kade)
        base = {**kade.cli_env, "HOME": os.environ.get("HOME", "/root")}
        envs = {name: {**base, "PYTHONPATH": str(src)} for name, src in sources.items()}
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.warmup):
            for env in envs.values():
                for argv in commands().values():
                    run(argv, env)
        for _ in range(args.runs):  # round-robin: a busy moment hits every command alike
            for source, env in envs.items():
                for name, argv in commands().items():
                    times.setdefault((source, name), []).append(run(argv, env))
    load = os.getloadavg()
    print(f"{args.runs} runs each after {args.warmup} warm-up runs, load average "
          f"{load[0]:.1f} / {load[1]:.1f}; {os.cpu_count()} cores; Python "
          f"{sys.version.split()[0]}")
    for source in sources:
        print(f"src: {sources[source]}")
        for name in commands():
            ms = [t * 1e3 for t, _ in times[(source, name)]]
            cpu = [c * 1e3 for _, c in times[(source, name)]]
            print(f"  {name:16s} median {statistics.median(ms):6.1f} ms  p90 "
                  f"{pct(ms, 0.9):6.1f} ms  min {min(ms):6.1f}  max {max(ms):6.1f}  "
                  f"(CPU median {statistics.median(cpu):5.1f} ms)")


def prepare(kade: Kade) -> None:
    """Something to list: one app of two tasks, one key."""
    assert kade.client.request("PUT", f"/v1/kv/{KEY}", content=b"hello") is True
    kade.deploy(site_app("/bench/cli", 2))
    kade.wait_healthy("/bench/cli", 2)


if __name__ == "__main__":
    main()
