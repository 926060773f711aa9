"""Configuration figures with a real container: from a KV write to the new file in the task.

Usage: python bench/config_propagation.py [--changes 50] [--instances 1] [--poll-ms 1]
                                          [--size BYTES]

Against a fresh `kade up`, an app of `kade/site:1` runs busybox httpd on /www, where a
template (`{{ key "bench/config/value" }}`, changeMode noop, no wait) is rendered to
/www/value.txt. Each change `PUT`s a new value to `/v1/kv/bench/config/value`, then every
instance's /value.txt is fetched over HTTP without pause (plus `--poll-ms`) until it serves
the new value: the figure is the time from just before the PUT until then (the PUT itself,
one durable store write, included). Any answer that is neither the old value nor the new one
(an empty or half-written file, or a response cut short because the file shrank while httpd
sent it) is counted as torn.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from _kade import Kade
from e2e_propagation import kade_up

APP = "/bench/cfg"
KEY = "bench/config/value"


def cfg_app(instances: int) -> dict[str, Any]:
    return {
        "id": APP, "instances": instances, "cpus": 0.1, "mem": 16,
        "container": {"docker": {"image": "kade/site:1"}},
        "cmd": "exec httpd -f -p $PORT0 -h /www",
        "healthChecks": [{"protocol": "TCP", "intervalSeconds": 1}],
        "templates": [{"destination": "/www/value.txt", "source": f'{{{{ key "{KEY}" }}}}',
                       "changeMode": "noop"}],
    }


def put(api: httpx.Client, kade: Kade, value: str) -> None:
    r = api.put(f"http://{kade.addr}/v1/kv/{KEY}", content=value.encode())
    if r.status_code != 200 or r.json() is not True:
        raise RuntimeError(f"PUT {KEY}: {r.status_code} {r.text}")


@dataclass
class Tally:
    """What the readers saw over all changes."""

    reads: int = 0
    read_seconds: float = 0.0
    first_read_new: int = 0  # instances that served the new value on the first read
    torn: list[str] = field(default_factory=list)


def one_change(api: httpx.Client, kade: Kade, urls: list[str], old: str, new: str,
               poll: float, tally: Tally) -> tuple[float, list[float]]:
    """PUT `new`; the PUT's duration, and per instance the time until it served `new`."""
    start = time.time()
    put(api, kade, new)
    put_done = time.time()
    seen: dict[str, float] = {}
    first = True
    deadline = time.monotonic() + 30
    while len(seen) < len(urls):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{new!r} did not arrive in 30 s at {set(urls) - set(seen)}")
        for url in urls:
            if url in seen:
                continue
            tally.reads += 1
            t0 = time.perf_counter()
            try:
                body = api.get(url).text
            except httpx.RemoteProtocolError:
                # httpd sent the length it saw, then read a file truncated meanwhile.
                tally.torn.append("<response cut short>")
                continue
            finally:
                tally.read_seconds += time.perf_counter() - t0
            if body == new:
                seen[url] = time.time()
                tally.first_read_new += first
            elif body != old:
                tally.torn.append(body)
        first = False
        if poll:
            time.sleep(poll)
    return put_done - start, [at - start for at in seen.values()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, seconds: list[float]) -> str:
    ms = [v * 1e3 for v in seconds]
    return (f"  {name:34s} p50 {statistics.median(ms):6.1f} ms  p99 {pct(ms, 0.99):6.1f} ms"
            f"  min {min(ms):5.1f}  max {max(ms):6.1f}  (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--poll-ms", type=float, default=1.0, help="pause between polls")
    parser.add_argument("--pause-ms", type=float, default=100.0, help="pause between changes")
    parser.add_argument("--size", type=int, default=0,
                        help="pad values to about this many bytes, alternately longer and "
                             "shorter (a bigger write is a wider window for a torn read)")
    args = parser.parse_args()
    puts: list[float] = []
    first: list[float] = []
    last: list[float] = []
    tally = Tally()
    with kade_up("config") as kade, httpx.Client(timeout=5, headers=kade.auth) as api:
        old = "initial"
        put(api, kade, old)
        kade.deploy(cfg_app(args.instances))
        tasks = kade.wait_healthy(APP, args.instances)
        urls = [f"http://127.0.0.1:{t['ports'][0]}/value.txt" for t in tasks]
        for url in urls:
            if api.get(url).text != old:
                raise RuntimeError(f"{url} does not serve the initial value")
        for i in range(args.changes):
            new = f"{i}-{uuid.uuid4().hex}"
            new += "x" * max(0, args.size // (1 + i % 2) - len(new))
            put_s, arrived = one_change(api, kade, urls, old, new, args.poll_ms / 1e3, tally)
            puts.append(put_s)
            first.append(min(arrived))
            last.append(max(arrived))
            old = new
            time.sleep(args.pause_ms / 1e3)
        containers = {t["containerId"] for t in kade.wait_healthy(APP, args.instances)}
        restarted = containers != {t["containerId"] for t in tasks}
    print(f"{args.changes} changes of one key, {args.instances} instance(s), "
          f"polled every {args.poll_ms:g} ms:")
    print(line("PUT /v1/kv (durable write)", puts))
    print(line("PUT start -> file served (first)", first))
    if args.instances > 1:
        print(line("PUT start -> file served (all)", last))
    torn = tally.torn
    print(f"  reads: {tally.reads}, {tally.read_seconds / tally.reads * 1e3:.1f} ms each; the "
          f"new value on the first read after the PUT returned: {tally.first_read_new} of "
          f"{args.changes * args.instances}")
    print(f"  torn reads (neither old nor new): {len(torn)} (empty: "
          f"{sum(1 for b in torn if not b)}, cut short: {torn.count('<response cut short>')}, "
          f"other: {sum(1 for b in torn if b and b[0] != '<')}, e.g. "
          f"{[b[:40] + ('...' if len(b) > 40 else '') for b in torn if b and b[0] != '<'][:2]}); "
          f"containers restarted: {restarted}")

if __name__ == "__main__":
    main()
