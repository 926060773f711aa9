"""Requests/s and latency of kade's router against Traefik, on the same upstreams and load.

Usage: python bench/router.py [--duration 10] [--connections 64] [--threads 2] [--rounds 1]
                              [--workers 1,2] [--baseline-src OTHER/src]

Starts two upstreams (nginx, 13-byte body, on 127.0.0.1 high ports, its own temp prefix),
then runs wrk against: one upstream directly, kade's router (`python -m kade.router`, from a
saved table, its control plane absent; once per --workers value) and Traefik (file provider,
same route). With --baseline-src, kade from that source tree (e.g. an earlier commit's
checkout) runs too, in the same rounds, to compare versions under the same load. Prints
req/s, p50 and p99 for each and the kade/Traefik ratios. Everything started here is stopped
here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HOST = "bench.localhost"
BODY = "Hello, world\n"  # 13 bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, host: str = HOST, deadline: float = 20.0) -> None:
    """Until a GET through `port` answers 200 (bounded)."""
    end = time.monotonic() + deadline
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(request)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers 200 on port {port}")


@contextmanager
def process(cmd: list[str], **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, **kw)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def nginx_conf(prefix: Path, ports: list[int]) -> Path:
    servers = "\n".join(
        f"""    server {{
        listen 127.0.0.1:{port} reuseport;
        keepalive_requests 1000000;
        location / {{ return 200 "{BODY.strip()}\\n"; }}
    }}""" for port in ports)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/plain;
{servers}
}}
""")
    return conf


def traefik_conf(prefix: Path, port: int, upstreams: list[int]) -> Path:
    dynamic = prefix / "dynamic.yml"
    servers = "\n".join(f'          - url: "http://127.0.0.1:{p}"' for p in upstreams)
    dynamic.write_text(f"""http:
  routers:
    bench:
      rule: "Host(`{HOST}`)"
      service: bench
      entryPoints: [web]
  services:
    bench:
      loadBalancer:
        servers:
{servers}
""")
    static = prefix / "traefik.yml"
    static.write_text(f"""entryPoints:
  web:
    address: "127.0.0.1:{port}"
providers:
  file:
    filename: "{dynamic}"
log:
  level: ERROR
""")
    return static


def kade_state(prefix: Path, upstreams: list[int]) -> Path:
    state = prefix / "kade-router"
    state.mkdir()
    table = {
        "revision": 1,
        "routers": [{"name": "bench", "rule": f"Host(`{HOST}`)", "priority": 0,
                     "service": "bench", "app": "/bench"}],
        "services": {"bench": {"strategy": "round-robin", "servers": [
            {"url": f"http://127.0.0.1:{p}", "task": f"bench.{i}"}
            for i, p in enumerate(upstreams)]}},
    }
    (state / "table.json").write_text(json.dumps(table))
    return state


def wrk(port: int, args: argparse.Namespace) -> dict[str, float]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
           "--latency", "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    result = {"rps": rps, "non2xx": float(non2xx.group(1)) if non2xx else 0.0}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        value = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        result[f"p{pct}"] = value
    if errors:
        print(f"    wrk: {errors.group(0)}")
    return result


def show(name: str, r: dict[str, float]) -> None:
    extra = f"  ({int(r['non2xx'])} non-2xx)" if r["non2xx"] else ""
    print(f"{name:<18} {r['rps']:>10,.0f} req/s   p50 {r['p50']:7.2f} ms   "
          f"p99 {r['p99']:7.2f} ms{extra}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workers", default="1,2", help="kade router processes, one run each")
    ap.add_argument("--baseline-src", type=Path, default=None,
                    help="another kade source tree (its src/) to measure alongside")
    args = ap.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    traefik = str(VENV_BIN / "traefik")
    worker_counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="kade-bench-router-") as tmp, ExitStack() as stack:
        prefix = Path(tmp)
        upstreams = [free_port(), free_port()]
        traefik_port = free_port()
        conf = nginx_conf(prefix, upstreams)
        stack.enter_context(process([nginx, "-p", str(prefix), "-c", str(conf)]))
        targets: list[tuple[str, int]] = [("direct (nginx)", upstreams[0])]
        state = kade_state(prefix, upstreams)
        trees = [("kade", ROOT / "src")]
        if args.baseline_src is not None:
            trees.append(("baseline", args.baseline_src.resolve()))
        for label, src in trees:
            env = {**os.environ, "PYTHONPATH": str(src)}
            for workers in worker_counts:
                port = free_port()
                stack.enter_context(process(
                    [sys.executable, "-m", "kade.router", "--http-addr", f"127.0.0.1:{port}",
                     "--admin-addr", f"127.0.0.1:{free_port()}",
                     "--api", f"http://127.0.0.1:{free_port()}", "--state-dir", str(state),
                     "--log-level", "ERROR", "--workers", str(workers)], env=env))
                targets.append((f"{label} {workers} worker{'s' if workers > 1 else ''}", port))
        stack.enter_context(process(
            [traefik, f"--configFile={traefik_conf(prefix, traefik_port, upstreams)}"]))
        targets.append(("traefik", traefik_port))
        for _, port in targets:
            wait_http(port)
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, "
              f"{len(BODY)}-byte body, 2 nginx upstreams", flush=True)
        results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in targets}
        for i in range(args.rounds):
            # every other round in reverse order: load from elsewhere that comes and goes
            # falls on every target alike
            for name, port in targets if i % 2 == 0 else targets[::-1]:
                wrk(port, argparse.Namespace(**{**vars(args), "duration": 2}))  # warm-up
                r = wrk(port, args)
                results[name].append(r)
                show(name, r)
        base = results["traefik"]
        for name, runs in results.items():
            if not name.startswith(("kade", "baseline")):
                continue
            rps_ratio = sum(r["rps"] for r in runs) / sum(r["rps"] for r in base)
            p99_ratio = sum(r["p99"] for r in runs) / sum(r["p99"] for r in base)
            print(f"{name} / traefik: {rps_ratio:.2f}x req/s, p99 {p99_ratio:.2f}x "
                  f"(lower is better)")


if __name__ == "__main__":
    main()
