"""A zone drained under load on a real cluster: how long it takes, failed requests, the fewest
healthy tasks seen.

Usage: python bench/cluster_drain.py [--instances 6] [--clients 4] [--max-parallel 1]
                                     [--zone 1a] [--rounds 1]

Starts a `kade server` (SQLite) and three `kade agent`s (Docker driver) in zones 1a, 1b and
1c on this machine, deploys `--instances` × `kade/site:1` spread over the zones
(`["az", "GROUP_BY"]`, HTTP check on /health every second, minimumHealthCapacity 1), and
loads the router of an agent outside the drained zone with `--clients` keep-alive clients
sending GETs one after another. Then `POST /v1/nodes/drain {"attr": "az=<zone>"}`; the
drain's duration runs from that request until `GET /v1/nodes/drain?attr=...` says complete.
The API is sampled every 0.2 s for the app's healthy tasks. Each round deploys the app
afresh and removes it at the end, then makes the zone eligible again.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _kade import wait_for
from tests.integration.cluster import KadeAgent, KadeServer
from tests.integration.traffic import Load, Lowest

APP = "/bench/drain"
HOST = "drain.localhost"
ZONES = ("1a", "1b", "1c")


def app(instances: int) -> dict[str, Any]:
    return {"id": APP, "instances": instances, "cpus": 0.01, "mem": 16,
            "container": {"docker": {"image": "kade/site:1"}},
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1,
                              "timeoutSeconds": 2, "gracePeriodSeconds": 10,
                              "maxConsecutiveFailures": 3}],
            "routes": [{"rule": f"Host(`{HOST}`)"}],
            "constraints": [["az", "GROUP_BY"]],
            "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0.5},
            "taskKillGracePeriodSeconds": 5}


def healthy(server: KadeServer) -> list[dict[str, Any]]:
    return [t for t in server.app(APP)["tasks"]
            if t["desired"] == "run" and t["state"] == "TASK_RUNNING" and t["healthy"]]


def one_round(server: KadeServer, agents: dict[str, KadeAgent], args: argparse.Namespace
              ) -> dict[str, Any]:
    zone_nodes = {agents[args.zone].node}
    via = next(a for z, a in agents.items() if z != args.zone)
    url = f"http://127.0.0.1:{via.http_port}/"
    server.deploy(app(args.instances))
    wait_for(lambda: len(healthy(server)) == args.instances, 180, "every task healthy")
    on_zone = sum(1 for t in healthy(server) if t["node"] in zone_nodes)
    wait_for(lambda: httpx.get(url, headers={"Host": HOST}, timeout=2).status_code == 200,
             60, "the route")
    with Load(url, HOST, clients=args.clients, limit=600) as load, \
            Lowest(lambda: len(healthy(server)), limit=600) as seen:
        wait_for(lambda: load.served() > 50, 30, "traffic")
        start = time.monotonic()
        server.client.post("/v1/nodes/drain", {"attr": f"az={args.zone}", "deadline": "10m",
                                               "maxParallel": args.max_parallel})
        wait_for(lambda: server.get("/v1/nodes/drain", attr=f"az={args.zone}")["complete"],
                 600, "the zone drained")
        duration = time.monotonic() - start
        wait_for(lambda: len(healthy(server)) == args.instances, 120, "every task healthy")
        served = load.served()
        wait_for(lambda: load.served() > served + 50, 30, "traffic after the drain")
    return {"moved": on_zone, "seconds": duration, "served": load.served(),
            "failed": len(load.failures), "failures": load.failures[:3],
            "lowest": seen.lowest, "samples": len(seen.samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=6)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-parallel", type=int, default=1)
    parser.add_argument("--zone", choices=ZONES, default="1a")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        server = KadeServer(Path(tmp) / "server")
        agents: dict[str, KadeAgent] = {}
        try:
            server.start()
            for zone in ZONES:
                agents[zone] = KadeAgent(Path(tmp) / zone, [server],
                                         extra=["--attr", f"az={zone}"]).start()
            for i in range(args.rounds):
                r = one_round(server, agents, args)
                print(f"round {i + 1}: zone {args.zone} drained in {r['seconds']:.1f} s, "
                      f"{r['moved']} task(s) moved (maxParallel {args.max_parallel}); "
                      f"{r['served']} requests through {args.clients} clients, "
                      f"{r['failed']} failed{' ' + str(r['failures']) if r['failed'] else ''}; "
                      f"fewest healthy seen "
                      f"{r['lowest']}/{args.instances} ({r['samples']} samples)")
                # the next round starts afresh: no app, every node eligible
                server.client.delete(f"/v1/apps/{APP.strip('/')}")
                wait_for(lambda: not any(a.containers() for a in agents.values()), 120,
                         "the app's containers gone")
                server.client.request("DELETE", f"/v1/nodes/{agents[args.zone].node}/drain",
                                      params={"eligible": "true"})
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            for agent in agents.values():
                agent.cleanup()
            server.cleanup()


if __name__ == "__main__":
    main()
