"""`make cluster`: a kade cluster on this one machine, in the foreground.

Three etcd members, three `kade server`s on them, and three `kade agent`s in zones 1a, 1b and
1c (node attribute `az`), each with its own ports, DNS, router and host-port range; then the
example apps, spread over the zones. Ctrl-C stops it all: agents, their tasks and routers,
servers, etcd. Everything lives under --dir (default /tmp/kade-cluster), made afresh.

    .venv/bin/python scripts/cluster.py [--dir DIR] [--driver auto|docker|exec]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kade.auth.tokens import write_secret_file
from kade.cli.router_proc import stop_router
from kade.testing.etcd import EtcdCluster

ROOT = Path(__file__).resolve().parents[1]
ZONES = ("1a", "1b", "1c")


def kade(*args: str) -> list[str]:
    return [sys.executable, "-m", "kade", *args]


def wait_ping(url: str, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}; its log ({log}):\n"
                     f"{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{what} did not answer {url} in 60 s (log: {log})")


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/kade-cluster"))
    parser.add_argument("--driver", default="auto")
    args = parser.parse_args()
    root: Path = args.dir
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)

    etcd = EtcdCluster(root / "etcd")
    servers: list[subprocess.Popen[bytes]] = []
    agents: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        (root / "etcd").mkdir()
        etcd.start()
        print(f"etcd: {', '.join(etcd.endpoints)}", flush=True)
        urls = [f"http://127.0.0.1:{7401 + i}" for i in range(3)]
        for i, url in enumerate(urls):
            data = root / f"server{i + 1}"
            data.mkdir()
            extra = ["--seed-kv", str(ROOT / "examples/config.yaml")] if i == 0 else []
            proc = start(kade("server", "--name", f"s{i + 1}", "--data-dir", str(data),
                              "--api-addr", url.removeprefix("http://"),
                              "--etcd", ",".join(etcd.endpoints), *extra),
                         data / "server.log")
            servers.append(proc)
            wait_ping(url + "/ping", f"server s{i + 1}", proc, data / "server.log")
        token = (root / "server1" / "management.token").read_text().strip()
        env = {**os.environ, "KADE_ADDR": "127.0.0.1:7401", "KADE_TOKEN": token}
        for i, zone in enumerate(ZONES):
            name = f"n{i + 1}"
            data = root / name
            data.mkdir()
            # each agent with a token bound to its node: it reports for that node only
            made = subprocess.run(kade("token", "create", "--role", "node", "--node", name,
                                       "--description", f"agent {name}"),
                                  env=env, check=True, capture_output=True, text=True)
            token_file = data / "node.token"
            write_secret_file(token_file, made.stdout.strip())
            low = 31000 + 300 * i
            proc = start(kade("agent", "--servers", ",".join(urls), "--token-file",
                              str(token_file), "--node", name, "--attr", f"az={zone}",
                              "--data-dir", str(data), "--driver", args.driver,
                              "--ports", f"{low}-{low + 299}",
                              "--dns-addr", f"127.0.0.1:{8601 + i}",
                              "--http-addr", f"127.0.0.1:{8091 + i}",
                              "--router-admin-addr", f"127.0.0.1:{8191 + i}",
                              "--listen", f"127.0.0.1:{8291 + i}"),
                         data / "agent.log")
            agents.append((name, data, proc))
        for i, (name, data, proc) in enumerate(agents):
            wait_ping(f"http://127.0.0.1:{8191 + i}/ping", f"agent {name}", proc,
                      data / "agent.log")
        for app in ("site.json", "api.yaml", "worker.yaml"):  # once every node has joined
            subprocess.run(kade("deploy", "-f", str(ROOT / "examples/apps" / app)), env=env,
                           check=False)
        print(f"""
kade cluster is up (logs and state in {root}; Ctrl-C stops it all)
  servers   {' '.join(urls)}
  nodes     n1 az=1a, n2 az=1b, n3 az=1c
  routers   http://127.0.0.1:8091  :8092  :8093   (e.g. curl -H 'Host: www.localhost' ...)
  DNS       127.0.0.1:8601  :8602  :8603
  logs      kade logs /site  (servers ask each node's listener: 127.0.0.1:8291  :8292  :8293)
  metrics   kade top; kade alerts  (the same listeners; the leading server evaluates rules)

  export KADE_ADDR=127.0.0.1:7401 KADE_TOKEN={token}
  kade nodes
  kade apps
  kade node drain n1 --deadline 5m
""", flush=True)
        while not stopping and all(p.poll() is None for p in servers):
            time.sleep(0.5)
    finally:
        print("stopping the cluster...", flush=True)
        for _, _, proc in agents:
            proc.terminate()
        for _, data, proc in agents:
            proc.wait(30)
            stop_router(data / "router")
        for name, _, _ in agents:
            ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=kade.node={name}"],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        _kill_task_processes([name for name, _, _ in agents])
        for proc in servers:
            proc.terminate()
        for proc in servers:
            proc.wait(30)
        etcd.stop()


def _kill_task_processes(nodes: list[str]) -> None:
    """Command apps of the demo's nodes (they carry KADE_NODE in their environment)."""
    wanted = {f"KADE_NODE={n}".encode() for n in nodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if env & wanted:
            with contextlib.suppress(OSError):
                os.killpg(int(proc.name), signal.SIGKILL)


if __name__ == "__main__":
    main()
