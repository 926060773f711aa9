"""kade's router against Traefik and HAProxy on browser-like traffic, all in one run.

Usage: python bench/router_varied.py [--duration 5] [--rounds 3] [--connections 64]
                                     [--threads 2] [--workers 1,2] [--kinds varied,identical]
                                     [--baseline-src OTHER/src]

Browsers do not repeat one request: each has its own path and query, request id and cookie,
in a head of about 750 bytes. `varied` sends such requests, a different one each time (4096
per wrk thread, in turn); `identical` sends one of them over and over (what wrk or a poller
does, and what the router's repeat memo serves). Every proxy runs as in production: kade
with its metrics and a JSON access log, Traefik (file provider) with Prometheus metrics and
an access log, HAProxy (Debian's, its default threads) with `option httplog` to a file and
the Prometheus exporter; all in front of the same two nginx upstreams, on 127.0.0.1.

Each round runs every target for `--duration` seconds after a 1 s warm-up, in reverse order
every other round, so that load from elsewhere falls on every target alike. Prints req/s and
p99 per target and round, then kade's ratios to Traefik and HAProxy (sums over the rounds).
Everything started here is stopped here.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from router import (  # bench/router.py: the upstreams, Traefik and the saved table
    HOST,
    ROOT,
    VENV_BIN,
    free_port,
    kade_state,
    nginx_conf,
    process,
    traefik_conf,
    wait_http,
)

# One wrk thread's requests. setup() numbers the threads, so that each makes its own.
LUA = r'''
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local reqs, n, i = {}, 4096, 0

local function head(k)
  local c, p = k % 37, (k * 7919 + tid * 104729) % 100000
  local rid = string.format("%08x-%04x-4%03x-a%03x-%06x%06x", p * 2654435 % 2147483647,
                            tid, k % 4096, (k * 13) % 4096, k * 1009 % 16777216, p)
  local session = string.format("%08x%08x%08x%08x", k * 40503 % 2147483647, p * 69069 % 2147483647,
                                (k + p) * 48271 % 2147483647, tid * 16807 + k)
  return "GET /shop/category-" .. c .. "/product-" .. p .. "?q=item" .. k
    .. "&page=" .. (k % 9 + 1) .. "&sort=price&utm_source=newsletter&utm_campaign=w" .. tid
    .. " HTTP/1.1\r\n"
    .. "Host: bench.localhost\r\n"
    .. "Connection: keep-alive\r\n"
    .. "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    .. "Chrome/124.0.0.0 Safari/537.36\r\n"
    .. "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    .. "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    .. "Upgrade-Insecure-Requests: 1\r\n"
    .. "Referer: http://bench.localhost/shop/category-" .. c .. "\r\n"
    .. "Accept-Encoding: gzip, deflate, br\r\n"
    .. "Accept-Language: nl-NL,nl;q=0.9,en-US;q=0.8,en;q=0.7\r\n"
    .. "X-Request-Id: " .. rid .. "\r\n"
    .. "Cookie: session=" .. session .. "; cart=" .. (k % 5) .. "; _ga=GA1.1." .. p
    .. "." .. (1700000000 + k) .. "; consent=analytics%3Dtrue\r\n"
    .. "\r\n"
end

function init(args)
  if args[1] == "identical" then n = 1 end
  for k = 1, n do reqs[k] = head(k) end
end

function request()
  i = i % n + 1
  return reqs[i]
end
'''


def haproxy_conf(prefix: Path, port: int, metrics_port: int, upstreams: list[int]) -> Path:
    """HAProxy as one would run it: HTTP mode, server keep-alive, httplog, XFF added."""
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p}" for i, p in enumerate(upstreams))
    conf = prefix / "haproxy.cfg"
    conf.write_text(f"""global
    log stdout format raw local0
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend web
    bind 127.0.0.1:{port}
    use_backend bench if {{ hdr(host) -i {HOST} }}

frontend metrics
    bind 127.0.0.1:{metrics_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}

backend bench
    balance roundrobin
{servers}
""")
    return conf


def traefik_observed(prefix: Path, port: int, upstreams: list[int]) -> Path:
    """bench/router.py's Traefik set-up plus Prometheus metrics and a buffered access log."""
    static = traefik_conf(prefix, port, upstreams)
    text = static.read_text().replace("entryPoints:\n", f"""entryPoints:
  metrics:
    address: "127.0.0.1:{free_port()}"
""", 1)
    static.write_text(text + f"""metrics:
  prometheus:
    entryPoint: metrics
accessLog:
  filePath: "{prefix / 'traefik-access.log'}"
  bufferingSize: 512
""")
    return static


@contextmanager
def logging_process(cmd: list[str], out: Path) -> Iterator[None]:
    """A process whose standard output is its log (HAProxy's `log stdout`)."""
    with open(out, "ab") as f, _popen(cmd, f):
        yield


@contextmanager
def _popen(cmd: list[str], stdout: IO[bytes]) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wrk(port: int, kind: str, duration: int, args: argparse.Namespace,
        script: Path) -> dict[str, float]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
           "-s", str(script), f"http://127.0.0.1:{port}/", "--", kind]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    result = {"rps": float(rps.group(1)), "non2xx": float(non2xx.group(1)) if non2xx else 0.0}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        result[f"p{pct}"] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    if errors:
        print(f"    wrk: {errors.group(0)}")
    return result


def ratio(runs: list[dict[str, float]], base: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in runs) / sum(r[key] for r in base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", default="1", help="kade router processes, one target each")
    ap.add_argument("--kinds", default="varied,identical")
    ap.add_argument("--baseline-src", type=Path, default=None,
                    help="another kade source tree (its src/) to measure alongside")
    args = ap.parse_args()
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    kinds = args.kinds.split(",")
    with tempfile.TemporaryDirectory(prefix="kade-bench-varied-") as tmp, ExitStack() as stack:
        prefix = Path(tmp)
        script = prefix / "browser.lua"
        script.write_text(LUA)
        upstreams = [free_port(), free_port()]
        stack.enter_context(process([nginx, "-p", str(prefix), "-c",
                                     str(nginx_conf(prefix, upstreams))]))
        targets: list[tuple[str, int]] = [("direct (nginx)", upstreams[0])]
        state = kade_state(prefix, upstreams)
        trees = [("kade", ROOT / "src")]
        if args.baseline_src is not None:
            trees.append(("baseline", args.baseline_src.resolve()))
        for label, src in trees:
            env = {**os.environ, "PYTHONPATH": str(src)}
            for workers in (int(w) for w in args.workers.split(",")):
                port = free_port()
                stack.enter_context(process(
                    [sys.executable, "-m", "kade.router", "--http-addr", f"127.0.0.1:{port}",
                     "--admin-addr", f"127.0.0.1:{free_port()}",
                     "--api", f"http://127.0.0.1:{free_port()}", "--state-dir", str(state),
                     "--log-level", "ERROR", "--workers", str(workers),
                     "--access-log", str(prefix / f"{label}-{workers}-access.log")], env=env))
                targets.append((f"{label} {workers}w", port))
        traefik_port, haproxy_port = free_port(), free_port()
        stack.enter_context(process(
            [str(VENV_BIN / "traefik"),
             f"--configFile={traefik_observed(prefix, traefik_port, upstreams)}"]))
        targets.append(("traefik", traefik_port))
        stack.enter_context(logging_process(
            [haproxy, "-db", "-f", str(haproxy_conf(prefix, haproxy_port, free_port(),
                                                      upstreams))],
            prefix / "haproxy-access.log"))
        targets.append(("haproxy", haproxy_port))
        for _, port in targets:
            wait_http(port)
        load = os.getloadavg()
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, "
              f"{args.rounds} rounds; {os.cpu_count()} CPUs; load average before "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
        results = {(kind, name): [] for kind in kinds for name, _ in targets}
        for i in range(args.rounds):
            for kind in kinds:
                for name, port in targets if i % 2 == 0 else targets[::-1]:
                    wrk(port, kind, 1, args, script)  # warm-up
                    r = wrk(port, kind, args.duration, args, script)
                    results[kind, name].append(r)
                    extra = f"  ({int(r['non2xx'])} non-2xx)" if r["non2xx"] else ""
                    print(f"round {i + 1} {kind:<9} {name:<15} {r['rps']:>9,.0f} req/s   "
                          f"p50 {r['p50']:6.2f} ms   p99 {r['p99']:6.2f} ms{extra}",
                          flush=True)
        load = os.getloadavg()
        print(f"load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        for kind in kinds:
            for name, _ in targets:
                if not name.startswith(("kade", "baseline")):
                    continue
                runs = results[kind, name]
                parts = []
                for other in ("traefik", "haproxy"):
                    base = results[kind, other]
                    parts.append(f"{ratio(runs, base, 'rps'):.2f}x {other} req/s "
                                 f"(p99 {ratio(runs, base, 'p99'):.2f}x)")
                print(f"{kind:<9} {name:<12} " + ", ".join(parts))
        logs = sorted(p.name for p in prefix.glob("*access.log") if p.stat().st_size)
        print("access logs written: " + ", ".join(logs))


if __name__ == "__main__":
    main()
