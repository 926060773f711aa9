"""What a session cookie costs the front door: a request signed in by the web interface's
cookie reads the session and then its token (two store reads), one by a token reads the
token only.

Usage: python bench/ui_signin.py [--requests 1000] [--rounds 3]

A real `kade up`; `GET /v1/info` (the cheapest authenticated endpoint) `--requests` times over
one keep-alive connection with the management token, then with a session cookie of it,
alternating for `--rounds` rounds. Prints the median and p99 of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from _kade import running_kade


def latencies(client: httpx.Client, headers: dict[str, str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        client.get("/v1/info", headers=headers).raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with running_kade("ui-signin") as kade:
        base = f"http://{kade.addr}"
        signed = httpx.post(f"{base}/ui/login", data={"token": kade.token},
                            headers={"Origin": base})
        cookie = {"Cookie": signed.headers["set-cookie"].split(";")[0]}
        with httpx.Client(base_url=base, timeout=10) as client:
            latencies(client, kade.auth, 100)  # warm-up
            for round_ in range(1, args.rounds + 1):
                for name, headers in (("token", kade.auth), ("cookie", cookie)):
                    ms = latencies(client, headers, args.requests)
                    p99 = ms[int(len(ms) * 0.99) - 1]
                    print(f"round {round_} {name:6} GET /v1/info x{args.requests}: "
                          f"median {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
