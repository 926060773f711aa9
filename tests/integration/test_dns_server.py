"""The DNS server on 127.0.0.1, asked by dnspython, answering from a live catalog view."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from kade import model
from kade.catalog import CatalogView
from kade.dns import DnsServer
from kade.model import Node, Task, TaskStatus
from kade.spec import parse_app
from kade.store import SqliteStore

pytestmark = pytest.mark.timeout(60)


class Setup:
    def __init__(self, store: SqliteStore, view: CatalogView, server: DnsServer) -> None:
        self.store, self.view, self.server = store, view, server

    def resolver(self) -> dns.resolver.Resolver:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.server.port
        r.lifetime = 5
        r.cache = None
        return r

    async def add(self, app_id: str, tasks: int, *, health: str = "healthy",
                  first_port: int = 31000, node: str = "n1", host: str = "127.0.0.1") -> None:
        app = parse_app({"id": app_id, "cmd": "x", "healthChecks": [{"path": "/"}],
                         "portDefinitions": [{"name": "http"}]}).app
        await self.store.put(model.app_key(app_id), app.model_dump_json(by_alias=True).encode())
        prefix = model.task_id_prefix(app_id)
        for i in range(tasks):
            tid = f"{prefix}.{i}"
            await self.store.put(model.task_key(tid), Task(
                id=tid, app_id=app_id, version="v", spec_hash="h", node=node, host=host,
                host_ports=[first_port + i], created_at=0).dump())
            await self.set_health(app_id, tid, health, node)

    async def set_health(self, app_id: str, task_id: str, health: str, node: str = "n1") -> None:
        await self.store.put(model.status_key(task_id), TaskStatus(
            task_id=task_id, app_id=app_id, node=node, state="running",
            health=health, updated_at=0).dump())  # type: ignore[arg-type]

    async def settle(self) -> None:
        """Wait until the view has applied every write so far."""
        assert await self.view.sync(timeout=10)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    store = SqliteStore(tmp_path / "data")
    await store.put(model.node_key("n1"),
                    Node(name="n1", address="127.0.0.1", cpus=1, mem=1).dump())
    try:
        view = CatalogView(store)
        async with view.running(), DnsServer(view, "127.0.0.1:0") as server:
            yield Setup(store, view, server)
    finally:
        await store.close()


def query(name: str, rdtype: str) -> dns.message.Message:
    return dns.message.make_query(name, rdtype)


async def test_a_and_srv_through_a_resolver(setup: Setup) -> None:
    await setup.add("/shop/web", 3)
    await setup.settle()
    r = setup.resolver()
    a = await asyncio.to_thread(r.resolve, "web-shop.service.consul", "A")
    assert [x.address for x in a] == ["127.0.0.1"]
    assert a.rrset is not None and a.rrset.ttl == 0
    srv = await asyncio.to_thread(r.resolve, "_web-shop._tcp.service.consul", "SRV")
    assert sorted(x.port for x in srv) == [31000, 31001, 31002]
    assert {str(x.target) for x in srv} == {"n1.node.dc1.consul."}
    node = await asyncio.to_thread(r.resolve, "n1.node.consul", "A")
    assert [x.address for x in node] == ["127.0.0.1"]


async def test_answers_follow_health_changes(setup: Setup) -> None:
    await setup.add("/shop/web", 2)
    await setup.settle()
    port = setup.server.port
    q = query("web-shop.service.consul", "SRV")
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)
    assert len(reply.answer[0]) == 2
    await setup.set_health("/shop/web", "shop_web.0", "unhealthy")
    await setup.settle()
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)
    assert [rd.port for rd in reply.answer[0]] == [31001]
    await setup.set_health("/shop/web", "shop_web.1", "unhealthy")
    await setup.settle()
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)
    assert reply.rcode() == dns.rcode.NXDOMAIN


async def test_unknown_names_and_missing_types(setup: Setup) -> None:
    await setup.add("/shop/web", 1)
    await setup.settle()
    port = setup.server.port
    nx = await dns.asyncquery.udp(query("nope.service.consul", "A"), "127.0.0.1", port=port,
                                  timeout=5)
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.authority[0].rdtype == dns.rdatatype.SOA
    empty = await dns.asyncquery.tcp(query("web-shop.service.consul", "AAAA"), "127.0.0.1",
                                     port=port, timeout=5)
    assert empty.rcode() == dns.rcode.NOERROR and empty.answer == []
    assert empty.authority[0].rdtype == dns.rdatatype.SOA
    mixed = await dns.asyncquery.udp(query("Web-SHOP.Service.Consul", "A"), "127.0.0.1",
                                     port=port, timeout=5)
    assert mixed.rcode() == dns.rcode.NOERROR and len(mixed.answer) == 1


async def test_a_big_answer_is_truncated_over_udp_and_whole_over_tcp(setup: Setup) -> None:
    await setup.add("/big", 60)
    await setup.settle()
    port = setup.server.port
    q = query("big.service.consul", "SRV")
    cut = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5, ignore_trailing=True)
    assert cut.flags & dns.flags.TC
    whole = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=5)
    assert not whole.flags & dns.flags.TC
    assert len(whole.answer[0]) == 60
    # A stub resolver sees the TC flag and asks again over TCP by itself.
    answer = await asyncio.to_thread(setup.resolver().resolve, "big.service.consul", "SRV")
    assert len(answer) == 60


async def test_several_queries_on_one_tcp_connection_and_garbage_is_ignored(
    setup: Setup,
) -> None:
    await setup.add("/shop/web", 1)
    await setup.settle()
    port = setup.server.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for _ in range(3):
            await asyncio.to_thread(dns.query.send_tcp, sock, query("n1.node.consul", "A"))
            reply, _ = await asyncio.to_thread(dns.query.receive_tcp, sock)
            assert reply.answer[0][0].address == "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(b"\x00\x01garbage", ("127.0.0.1", port))
        # The server stays up and keeps answering.
        reply = await dns.asyncquery.udp(query("n1.node.consul", "A"), "127.0.0.1", port=port,
                                         timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR
