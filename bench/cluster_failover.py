"""How fast a cluster heals: a leader server killed, a node lost.

    .venv/bin/python bench/cluster_failover.py [--rounds 3] [--leader-ttl 3] [--node-ttl 10]

Each round starts a cluster on this machine — 3 etcd members, 2 `kade server`s, 2 `kade
agent`s (exec driver) — and an app of 2 command tasks with a COMMAND health check, then:

- **leader failover**: `kill -9` of the leading server, and at once a scale-up sent to the
  other one; prints the time until the other server leads (`/v1/servers`) and until the new
  task is placed (the new leader's scheduler wrote it);
- **node lost**: `kill -9` of one agent and of its task; prints the time until the node shows
  `down` and until its task's replacement is healthy on the other node.

Times are read by polling the API every 20 ms (so they are up to 20 ms late). They follow the
settings: a dead leader is noticed when its lease ends (`--leader-ttl`), a lost node when its
agent's lease ends (`--node-ttl`), plus the app's unreachableStrategy.inactiveAfterSeconds (0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.cluster import KadeAgent, KadeServer  # noqa: E402

from kade.testing.etcd import EtcdCluster  # noqa: E402

APP: dict[str, Any] = {
    "id": "/bench/heal", "instances": 2, "cpus": 0.01, "mem": 16, "portDefinitions": [],
    "cmd": "exec sleep 3600", "constraints": [["hostname", "UNIQUE"]],
    "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                      "intervalSeconds": 1, "gracePeriodSeconds": 5}]}


def until(check: Callable[[], bool], timeout: float = 120) -> float:
    """Seconds until `check` holds (polled every 20 ms)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - a server going away answers errors meanwhile
            pass
        time.sleep(0.02)
    raise TimeoutError("the cluster did not get there")


def healthy(server: KadeServer) -> dict[str, str]:
    app = server.app(APP["id"])
    return {t["id"]: t["node"] for t in app["tasks"] if t["desired"] == "run"
            and t["state"] == "TASK_RUNNING" and t["healthy"]}


def one_round(root: Path, etcd: EtcdCluster, leader_ttl: float, node_ttl: float
              ) -> tuple[float, float, float, float]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    servers = [KadeServer(root / f"s{i}", etcd=etcd.endpoints, prefix=prefix,
                          extra=["--leader-ttl", str(leader_ttl)]) for i in range(2)]
    agents: list[KadeAgent] = []
    try:
        for server in servers:
            server.start()
        extra = ["--node-ttl", str(node_ttl), "--attr", "az=1a"]
        # a third agent: the lost node's task needs a node without one (UNIQUE)
        for name in ("a", "b", "c"):
            agents.append(KadeAgent(root / name, servers, driver="exec", extra=extra).start())
        first, second = servers
        second.deploy(APP)
        until(lambda: len(healthy(second)) == 2)

        first.kill9()
        second.client.post("/v1/apps/bench/heal/scale", {"instances": 3})
        leads = until(lambda: second.leader() == second.name)
        placed = until(lambda: len([t for t in second.app(APP["id"])["tasks"]
                                    if t["desired"] == "run"]) == 3) + leads
        until(lambda: len(healthy(second)) == 3)
        second.client.post("/v1/apps/bench/heal/scale", {"instances": 2})  # a node to spare
        until(lambda: len(healthy(second)) == 2 and len(second.app(APP["id"])["tasks"]) == 2)

        victim = next(a for a in agents if a.node in healthy(second).values())
        lost = {t for t, n in healthy(second).items() if n == victim.node}
        victim.kill9()
        for pid in victim.task_pids():
            os.killpg(pid, signal.SIGKILL)

        def status() -> str:
            return str(next(n for n in second.get("/v1/nodes")["nodes"]
                            if n["name"] == victim.node)["status"])
        down = until(lambda: status() == "down")
        replaced = until(lambda: len(healthy(second)) == 2 and not lost & set(healthy(second)))
        return leads, placed, down, down + replaced
    finally:
        for agent in agents:
            agent.cleanup()
            for pid in agent.task_pids():
                os.killpg(pid, signal.SIGKILL)
        for server in servers:
            server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--leader-ttl", type=float, default=3.0)
    parser.add_argument("--node-ttl", type=float, default=10.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kade-bench-failover-"))
    etcd = EtcdCluster(root / "etcd")
    (root / "etcd").mkdir()
    results: list[tuple[float, float, float, float]] = []
    try:
        etcd.start()
        for i in range(args.rounds):
            results.append(one_round(root / f"r{i}", etcd, args.leader_ttl, args.node_ttl))
            leads, placed, down, replaced = results[-1]
            print(f"round {i + 1}: new leader {leads:.2f} s, task placed {placed:.2f} s; "
                  f"node down {down:.2f} s, replacement healthy {replaced:.2f} s", flush=True)
    finally:
        etcd.stop()
        shutil.rmtree(root, ignore_errors=True)
    names = ("new leader", "task placed by it", "node seen down", "replacement healthy")
    print(f"\n{args.rounds} rounds, leader TTL {args.leader_ttl:g} s, node TTL "
          f"{args.node_ttl:g} s; load average {os.getloadavg()[0]:.1f}")
    for k, name in enumerate(names):
        values = [r[k] for r in results]
        print(f"  {name:22s} median {statistics.median(values):.2f} s "
              f"(min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
