"""CPU cost of the router's data path per request, without sockets: one process per source
tree, so that two versions compare free of the network noise of a shared machine.

Usage: python bench/router_datapath.py [--requests 200000] [--rounds 5] [--access-log]
                                       [--profile] [OTHER/src ...]

Drives a real `Proxy` with a one-route table: a client connection's `data_received` gets a
request, the pooled upstream connection's `data_received` gets the answer, each writing into
a transport that only counts bytes. Three kinds of request: the same bytes each time (as from
wrk or a poller: the repeat memo serves them), a different path each time (parsed in full),
and browser-like heads (~750 bytes: user agent, accept headers, a referer, a request id and
a cookie, each request with its own path, query, id and cookie). With --access-log the
proxy writes its JSON access log (to /dev/null). Prints µs per request, the best of the
rounds, in CPU time (what other work on a shared machine disturbs least), for this tree
and each one given; --profile prints instead where the time of the
browser-like requests goes (cProfile, this tree only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import asyncio, cProfile, json, os, pstats, sys, time
from kade.router.accesslog import AccessLog
from kade.router.proxy import Proxy, ProxyConfig
from kade.router.upstream import UpstreamConnection

class Transport:
    def __init__(self): self.sent = 0
    def write(self, data): self.sent += len(data)
    def writelines(self, items): self.sent += sum(len(i) for i in items)
    def is_closing(self): return False
    def pause_reading(self): pass
    def resume_reading(self): pass
    def close(self): raise AssertionError("closed")
    def abort(self): raise AssertionError("aborted")
    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

BROWSER = (b"GET /shop/category-%d/product-%d?q=item%d&page=%d&sort=price&utm_source=newsletter"
           b" HTTP/1.1\r\nHost: bench.localhost\r\nConnection: keep-alive\r\n"
           b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           b"Chrome/124.0.0.0 Safari/537.36\r\n"
           b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
           b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
           b"Upgrade-Insecure-Requests: 1\r\nReferer: http://bench.localhost/shop/category-%d\r\n"
           b"Accept-Encoding: gzip, deflate, br\r\n"
           b"Accept-Language: nl-NL,nl;q=0.9,en-US;q=0.8,en;q=0.7\r\n"
           b"X-Request-Id: %08x-0001-4%03x-a%03x-%012x\r\n"
           b"Cookie: session=%032x; cart=%d; _ga=GA1.1.%d.%d; consent=analytics%%3Dtrue\r\n\r\n")

async def main(n, rounds, access_log, profile):
    proxy = Proxy(ProxyConfig(), AccessLog(os.devnull) if access_log else None)
    proxy.apply({"revision": 1,
                 "routers": [{"name": "b", "rule": "Host(`bench.localhost`)", "service": "b"}],
                 "services": {"b": {"servers": [{"url": "http://127.0.0.1:9", "task": "t"}]}}})
    server = proxy.servers["http://127.0.0.1:9"]
    up = UpstreamConnection(server)
    up.connection_made(Transport())
    server.idle.append(up)
    from kade.router.client import ClientConnection
    client = ClientConnection(proxy)
    client.connection_made(Transport())
    answer = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 30 Nov 2026 14:00:00 GMT\r\n"
              b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive"
              b"\r\n\r\nHello, world\n")
    same = b"GET / HTTP/1.1\r\nHost: bench.localhost\r\nUser-Agent: wrk\r\n\r\n"
    varying = [b"GET /p%d HTTP/1.1\r\nHost: bench.localhost\r\nUser-Agent: wrk\r\n\r\n" % i
               for i in range(n)]
    browser = [BROWSER % (i % 37, i * 7919 % 100000, i, i % 9 + 1, i % 37, i * 2654435 % 2**32,
                          i % 4096, i * 13 % 4096, i, i * 40503 * 2**64 + i, i % 5, i,
                          1700000000 + i) for i in range(n)]
    kinds = {"same": [same] * n, "varying": varying, "browser": browser}

    def run(requests):
        for data in requests:
            client.data_received(data)
            up.data_received(answer)

    if profile:
        run(browser)  # warm
        cProfile.runctx("run(browser)", globals(), locals(), os.environ["PROFILE_OUT"])
        pstats.Stats(os.environ["PROFILE_OUT"]).sort_stats("tottime").print_stats(25)
        return
    out = {}
    for kind, requests in kinds.items():
        best = float("inf")
        for _ in range(rounds):
            t0 = time.process_time()
            run(requests)
            best = min(best, (time.process_time() - t0) / n * 1e6)
        out[kind] = best
    assert client.transport.sent > 0 and not client.queue
    print(json.dumps(out))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1"))
'''


def measure(src: Path, requests: int, rounds: int, access_log: bool) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(requests), str(rounds),
                          str(int(access_log)), "0"], env=env,
                         capture_output=True, text=True, check=True, timeout=600).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--access-log", action="store_true", help="with the JSON access log on")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the browser-like requests of this tree instead")
    ap.add_argument("others", nargs="*", type=Path, help="other kade src/ trees")
    args = ap.parse_args()
    if args.profile:
        with tempfile.NamedTemporaryFile(suffix=".prof") as f:
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PROFILE_OUT": f.name}
            subprocess.run([sys.executable, "-c", CHILD, str(args.requests), "1",
                            str(int(args.access_log)), "1"], env=env, check=True, timeout=600)
        return
    trees = [ROOT / "src", *(p.resolve() for p in args.others)]
    print(f"CPU µs per request (best of {args.rounds} rounds of {args.requests:,}), access log "
          f"{'on' if args.access_log else 'off'}")
    for src in trees:
        r = measure(src, args.requests, args.rounds, args.access_log)
        print(f"{str(src):<40} same bytes {r['same']:6.2f}   varying path {r['varying']:6.2f}"
              f"   browser-like {r['browser']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
