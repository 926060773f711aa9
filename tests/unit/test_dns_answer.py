"""DNS answers from a catalog: names, types, filters, negative answers and truncation."""

from __future__ import annotations

import random

from dnslib import EDNS0, QTYPE, RCODE, DNSRecord  # type: ignore[import-untyped]

from kade.catalog import Catalog, build_catalog
from kade.dns import answer, pack_for_udp, udp_limit
from kade.model import Node, Task, TaskStatus
from kade.spec import parse_app


def catalog(healthy: int = 3, sick: int = 1) -> Catalog:
    app = parse_app({"id": "/shop/web", "cmd": "x", "healthChecks": [{"path": "/health"}],
                     "labels": {"kade.service.tags": "v1"},
                     "portDefinitions": [{"name": "http"}]}).app
    nodes = [Node(name="n1", address="10.0.0.1", cpus=1, mem=1),
             Node(name="n2", address="10.0.0.2", cpus=1, mem=1)]
    tasks, statuses = [], []
    for i in range(healthy + sick):
        node = nodes[i % 2]
        tid = f"shop_web.{i}"
        tasks.append(Task(id=tid, app_id=app.id, version="v", spec_hash="h", node=node.name,
                          host=node.address, host_ports=[31000 + i], created_at=0))
        statuses.append(TaskStatus(task_id=tid, app_id=app.id, node=node.name, state="running",
                                   health="healthy" if i < healthy else "unhealthy",
                                   updated_at=0))
    return build_catalog([app], tasks, statuses, nodes, index=42)


def ask(name: str, qtype: str = "A", cat: Catalog | None = None,
        domain: str = "consul") -> DNSRecord:
    request = DNSRecord.question(name, qtype)
    # Through the wire format and back, as a client would see it.
    reply = answer(request, cat or catalog(), domain, rng=random.Random(1))
    return DNSRecord.parse(reply.pack())


def values(reply: DNSRecord, section: str = "rr") -> list[str]:
    return [str(rr.rdata) for rr in getattr(reply, section)]


def test_a_records_of_passing_endpoints_with_ttl_0() -> None:
    reply = ask("web-shop.service.consul")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
    assert sorted(values(reply)) == ["10.0.0.1", "10.0.0.2"]  # one per address
    assert all(rr.ttl == 0 for rr in reply.rr)


def test_names_are_case_insensitive_and_the_question_case_is_kept() -> None:
    reply = ask("WEB-Shop.Service.CONSUL")
    assert sorted(values(reply)) == ["10.0.0.1", "10.0.0.2"]
    assert str(reply.rr[0].rname) == "WEB-Shop.Service.CONSUL."


def test_srv_records_point_at_nodes_with_addresses_in_additional() -> None:
    reply = ask("web-shop.service.consul", "SRV")
    srv = sorted((rr.rdata.port, str(rr.rdata.target)) for rr in reply.rr)
    assert srv == [(31000, "n1.node.dc1.consul."), (31001, "n2.node.dc1.consul."),
                   (31002, "n1.node.dc1.consul.")]  # 31003 is unhealthy
    extra = {str(rr.rname): str(rr.rdata) for rr in reply.ar}
    assert extra == {"n1.node.dc1.consul.": "10.0.0.1", "n2.node.dc1.consul.": "10.0.0.2"}
    rfc = ask("_web-shop._tcp.service.consul", "SRV")
    assert len(rfc.rr) == 3


def test_srv_target_is_an_addr_name_when_the_task_is_not_at_its_node_address() -> None:
    app = parse_app({"id": "/api", "cmd": "x"}).app
    cat = build_catalog(
        [app], [Task(id="t", app_id="/api", version="v", spec_hash="h", node="n1",
                     host="192.168.1.5", host_ports=[8080], created_at=0)],
        [TaskStatus(task_id="t", app_id="/api", node="n1", state="running", updated_at=0)],
        [Node(name="n1", address="10.0.0.1", cpus=1, mem=1)])
    reply = ask("api.service.consul", "SRV", cat)
    target = str(reply.rr[0].rdata.target)
    assert target == "c0a80105.addr.dc1.consul."
    assert values(ask(target, "A", cat)) == ["192.168.1.5"]


def test_tag_filter_and_rfc2782_tag_form() -> None:
    assert len(ask("v1.web-shop.service.consul").rr) == 2
    assert len(ask("http.web-shop.service.consul", "SRV").rr) == 3
    assert len(ask("_web-shop._http.service.consul", "SRV").rr) == 3
    nope = ask("v2.web-shop.service.consul")
    assert nope.header.rcode == RCODE.NXDOMAIN


def test_node_names_and_the_optional_datacenter_label() -> None:
    assert values(ask("n2.node.consul")) == ["10.0.0.2"]
    assert values(ask("N2.node.dc1.consul")) == ["10.0.0.2"]
    assert sorted(values(ask("web-shop.service.dc1.consul"))) == ["10.0.0.1", "10.0.0.2"]


def test_unknown_names_are_nxdomain_with_an_soa() -> None:
    for name in ("nope.service.consul", "n9.node.consul", "what.consul", "a.b.c.service.consul"):
        reply = ask(name)
        assert reply.header.rcode == RCODE.NXDOMAIN, name
        assert reply.rr == []
        assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]
        assert reply.auth[0].rdata.times[0] == 42  # the serial is the catalog's index


def test_a_service_without_passing_endpoints_is_nxdomain() -> None:
    reply = ask("web-shop.service.consul", cat=catalog(healthy=0, sick=2))
    assert reply.header.rcode == RCODE.NXDOMAIN


def test_a_known_name_without_records_of_the_type_is_an_empty_noerror() -> None:
    for qtype in ("AAAA", "TXT", "MX"):
        reply = ask("web-shop.service.consul", qtype)
        assert reply.header.rcode == RCODE.NOERROR, qtype
        assert reply.rr == []
        assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]


def test_other_domains_are_refused_and_the_domain_is_configurable() -> None:
    assert ask("example.com").header.rcode == RCODE.REFUSED
    reply = ask("web-shop.service.kade.internal", domain="kade.internal.")
    assert sorted(values(reply)) == ["10.0.0.1", "10.0.0.2"]
    assert QTYPE[ask("consul", "SOA").rr[0].rtype] == "SOA"


def test_endpoint_order_is_shuffled() -> None:
    cat = catalog(healthy=8, sick=0)
    request = DNSRecord.question("web-shop.service.consul", "SRV")
    orders = {
        tuple(rr.rdata.port for rr in answer(request, cat, rng=random.Random(seed)).rr)
        for seed in range(10)
    }
    assert len(orders) > 1


def test_big_answers_are_truncated_over_udp_unless_edns_allows_more() -> None:
    cat = catalog(healthy=40, sick=0)
    request = DNSRecord.question("web-shop.service.consul", "SRV")
    reply = answer(request, cat)
    full = reply.pack()
    assert len(full) > 512
    assert udp_limit(request) == 512
    data = pack_for_udp(answer(request, cat), udp_limit(request))
    cut = DNSRecord.parse(data)
    assert len(data) <= 512 and cut.header.tc == 1
    assert 0 < len(cut.rr) < 40
    big = DNSRecord.question("web-shop.service.consul", "SRV")
    big.add_ar(EDNS0(udp_len=4096))
    assert udp_limit(big) == 4096
    whole = DNSRecord.parse(pack_for_udp(answer(big, cat), udp_limit(big)))
    assert whole.header.tc == 0 and len(whole.rr) == 40
