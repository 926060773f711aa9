"""CPU cost of the router's data path per request, without sockets: one process per source
tree, so that two versions compare free of the network noise of a shared machine.

Usage: python bench/router_datapath.py [--requests 200000] [--rounds 5] [OTHER/src ...]

Drives a real `Proxy` with a one-route table: a client connection's `data_received` gets a
request, the pooled upstream connection's `data_received` gets the answer, each writing into
a transport that only counts bytes. Two kinds of request: the same bytes each time (as from
wrk or a poller: the repeat memo serves them) and a different path each time (parsed in
full). Prints µs per request, the best of the rounds, for this tree and each one given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import asyncio, json, sys, time
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

async def main(n, rounds):
    proxy = Proxy(ProxyConfig())
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
    out = {}
    for kind in ("same", "varying"):
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            for i in range(n):
                client.data_received(same if kind == "same" else varying[i])
                up.data_received(answer)
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        out[kind] = best
    assert client.transport.sent > 0 and not client.queue
    print(json.dumps(out))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
'''


def measure(src: Path, requests: int, rounds: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(requests), str(rounds)], env=env,
                         capture_output=True, text=True, check=True, timeout=600).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("others", nargs="*", type=Path, help="other kade src/ trees")
    args = ap.parse_args()
    trees = [ROOT / "src", *(p.resolve() for p in args.others)]
    print(f"µs per request (best of {args.rounds} rounds of {args.requests:,})")
    for src in trees:
        r = measure(src, args.requests, args.rounds)
        print(f"{str(src):<40} same bytes {r['same']:6.2f}   varying path {r['varying']:6.2f}",
              flush=True)


if __name__ == "__main__":
    main()
