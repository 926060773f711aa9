"""A kade cluster of processes on this machine for end-to-end tests: `kade server`s and
`kade agent`s, each with its own data dir, node name, ports and host-port range (the same
isolation as harness.Kade, which these build on)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tests.integration.harness import Kade, wait_for


class KadeServer(Kade):
    """`kade server`: the API and the control loops, no node of its own; on etcd when given
    its endpoints (each test cluster under a key prefix of its own), else on SQLite."""

    def __init__(self, data_dir: Path, *, etcd: list[str] | None = None, prefix: str = "",
                 extra: list[str] | None = None) -> None:
        super().__init__(data_dir, extra=extra)
        self.name = f"server-{self.node[5:]}"
        self.etcd = etcd or []
        self.prefix = prefix

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    @property
    def node_token_file(self) -> Path:
        return self.data_dir / "node.token"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kade", "server", "--data-dir", str(self.data_dir),
                "--api-addr", self.addr, "--name", self.name, "--ports", self.port_range,
                *(["--etcd", ",".join(self.etcd), "--etcd-prefix", self.prefix, "--leader-ttl",
                   "2"] if self.etcd else []), *self.extra]

    def start(self) -> KadeServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._answers, 30, f"kade server API on {self.addr} (log: {self.log})")
        self.token = (self.data_dir / "management.token").read_text().strip()
        self.client.close()
        from kade.client import Client

        self.client = Client(self.addr, timeout=10, token=self.token)
        return self

    def node_names(self) -> list[str]:
        return [n["name"] for n in self.get("/v1/nodes")["nodes"]]

    def leader(self) -> str | None:
        """The name of the server that leads, as this one sees it."""
        found = self.get("/v1/servers")["servers"]
        return next((str(s["name"]) for s in found if s["leader"]), None)


class KadeAgent(Kade):
    """`kade agent` following `servers`; its API is theirs (`self.server`)."""

    def __init__(self, data_dir: Path, servers: list[KadeServer], *, driver: str = "docker",
                 extra: list[str] | None = None) -> None:
        super().__init__(data_dir, driver=driver, extra=extra)
        self.servers = servers
        self.server = servers[0]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kade", "agent",
                "--servers", ",".join(s.url for s in self.servers),
                "--token-file", str(self.servers[0].node_token_file),
                "--data-dir", str(self.data_dir), "--node", self.node, "--driver", self.driver,
                "--ports", self.port_range, "--publish-ip", "127.0.0.1",
                "--http-addr", f"127.0.0.1:{self.http_port}",
                "--router-admin-addr", f"127.0.0.1:{self.router_admin_port}",
                "--dns-addr", f"127.0.0.1:{self.dns_port}", *self.extra]

    def start(self) -> KadeAgent:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)

        def joined() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"kade agent exited with {self.proc.returncode}:\n"
                                     f"{self.logs()}")
            return self.node in self.server.node_names()

        wait_for(joined, 30, f"agent {self.node} in the server's nodes (log: {self.log})")
        wait_for(lambda: "kade agent" in self.logs(), 30, f"agent {self.node} up")
        self.token = self.server.token
        return self


@contextlib.contextmanager
def server_and_agents(root: Path, *, names: Sequence[str] = ("a", "b"), driver: str = "exec",
                      server_extra: list[str] | None = None,
                      agent_extra: Callable[[str], list[str]] = lambda name: [],
                      ) -> Iterator[tuple[KadeServer, list[KadeAgent]]]:
    """A `kade server` on SQLite (under `root`) with an agent per name (`agent_extra(name)`
    its own flags); the agents, their tasks and the server stopped afterwards."""
    server = KadeServer(root / "server", extra=server_extra)
    agents: list[KadeAgent] = []
    try:
        server.start()
        for name in names:
            agents.append(KadeAgent(root / name, [server], driver=driver,
                                    extra=agent_extra(name)).start())
        yield server, agents
    finally:
        for agent in agents:
            agent.cleanup()
        server.cleanup()
