"""DNS answers from a catalog snapshot, as Consul's DNS interface gives them. Pure.

Names (case-insensitive; the datacenter label is optional, as in Consul):
    <service>.service[.<dc>].<domain>           A/AAAA of passing endpoints, SRV with ports
    <tag>.<service>.service[.<dc>].<domain>     the same, only endpoints carrying the tag
    _<service>._<tag|tcp>.service[.<dc>].<domain>   RFC 2782 SRV form (`_tcp`: any tag)
    <node>.node[.<dc>].<domain>                 the node's address
    <hex ip>.addr[.<dc>].<domain>               SRV targets of endpoints not at their node's address

Only passing endpoints are answered; a service without any is NXDOMAIN, as in Consul. TTLs are
0: the catalog changes the moment a task does, and clients must not hold on to old answers.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence

from dnslib import (  # type: ignore[import-untyped]
    AAAA,
    EDNS0,
    QTYPE,
    RCODE,
    RR,
    SOA,
    SRV,
    A,
    DNSRecord,
)

from kade.catalog.model import Catalog, Instance

UDP_LIMIT = 512  # without EDNS0 (RFC 1035)
MAX_UDP_LIMIT = 4096
TTL = 0


def answer(
    request: DNSRecord, catalog: Catalog, domain: str = "consul", *,
    rng: random.Random | None = None,
) -> DNSRecord:
    """The response to `request`. `rng` shuffles endpoints (seed it to make tests exact)."""
    reply = request.reply(ra=0, aa=1)
    if _edns(request) is not None:
        reply.add_ar(EDNS0(udp_len=MAX_UDP_LIMIT))
    if request.header.opcode != 0:
        reply.header.rcode = RCODE.NOTIMP
        return reply
    if len(request.questions) != 1:
        reply.header.rcode = RCODE.FORMERR
        return reply
    q = request.q
    domain = domain.strip(".").lower()
    labels = [str(x, "ascii", "replace").lower() if isinstance(x, bytes) else str(x).lower()
              for x in q.qname.label]
    dom = domain.split(".")
    if labels[len(labels) - len(dom):] != dom:
        reply.header.rcode = RCODE.REFUSED  # not ours, and kade does not recurse
        return reply
    labels = labels[: len(labels) - len(dom)]
    ctx = _Context(reply, catalog, domain, q.qname, q.qtype, rng or random.Random())
    if labels and labels[-1] == catalog.datacenter.lower() and len(labels) > 1:
        labels = labels[:-1]
    if not labels:
        ctx.apex()
    elif labels[-1] == "service" and len(labels) in (2, 3):
        ctx.service(labels[:-1])
    elif labels[-1] == "node" and len(labels) >= 2:
        ctx.node(".".join(labels[:-1]))
    elif labels[-1] == "addr" and len(labels) == 2:
        ctx.addr(labels[0])
    else:
        ctx.nxdomain()
    return reply


class _Context:
    def __init__(self, reply: DNSRecord, catalog: Catalog, domain: str, qname: object,
                 qtype: int, rng: random.Random) -> None:
        self.reply = reply
        self.catalog = catalog
        self.domain = domain
        self.qname = qname
        self.qtype = qtype
        self.rng = rng

    # -- name kinds -------------------------------------------------------------------

    def apex(self) -> None:
        if self.qtype in (QTYPE.SOA, QTYPE.ANY):
            self.reply.add_answer(self._soa())
        else:
            self.reply.add_auth(self._soa())

    def service(self, parts: list[str]) -> None:
        tag: str | None = None
        if len(parts) == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
            name, tag = parts[0][1:], parts[1][1:]
            if tag in ("tcp", "udp"):
                tag = None
        elif len(parts) == 2:
            tag, name = parts
        else:
            name = parts[0]
        found = self.catalog.find_service(name)
        if found is None:
            return self.nxdomain()
        instances = self.catalog.instances(found, tags=[tag] if tag else [], passing=True)
        if not instances:
            return self.nxdomain()
        self.rng.shuffle(instances)
        if self.qtype == QTYPE.SRV:
            self._srv(instances)
        elif self.qtype in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY):
            seen: set[str] = set()
            for inst in instances:
                if inst.address not in seen:
                    seen.add(inst.address)
                    self._address(self.qname, inst.address, self.reply.add_answer)
        self._empty_check()

    def node(self, name: str) -> None:
        node = self.catalog.find_node(name)
        if node is None:
            return self.nxdomain()
        if self.qtype in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY):
            self._address(self.qname, node.address, self.reply.add_answer)
        self._empty_check()

    def addr(self, text: str) -> None:
        try:
            raw = bytes.fromhex(text)
            ip = str(ipaddress.ip_address(raw))
        except ValueError:
            return self.nxdomain()
        if self.qtype in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY):
            self._address(self.qname, ip, self.reply.add_answer)
        self._empty_check()

    def nxdomain(self) -> None:
        self.reply.header.rcode = RCODE.NXDOMAIN
        self.reply.add_auth(self._soa())

    # -- records ----------------------------------------------------------------------

    def _srv(self, instances: Sequence[Instance]) -> None:
        dc = self.catalog.datacenter.lower()
        added: set[str] = set()
        for inst in instances:
            if inst.port == 0:
                continue  # a task without ports has nothing to put in an SRV record
            node = self.catalog.nodes.get(inst.node)
            if node is not None and node.address == inst.address:
                target = f"{inst.node.lower()}.node.{dc}.{self.domain}."
            else:
                target = f"{_hex(inst.address)}.addr.{dc}.{self.domain}."
            self.reply.add_answer(RR(self.qname, QTYPE.SRV, ttl=TTL,
                                     rdata=SRV(1, 1, inst.port, target)))
            if target not in added:
                added.add(target)
                self._address(target, inst.address, self.reply.add_ar, any_family=True)

    def _address(self, owner: object, address: str, add: object, *,
                 any_family: bool = False) -> None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return  # not an IP address: nothing to answer with
        if ip.version == 4 and (any_family or self.qtype in (QTYPE.A, QTYPE.ANY)):
            add(RR(owner, QTYPE.A, ttl=TTL, rdata=A(str(ip))))  # type: ignore[operator]
        elif ip.version == 6 and (any_family or self.qtype in (QTYPE.AAAA, QTYPE.ANY)):
            add(RR(owner, QTYPE.AAAA, ttl=TTL, rdata=AAAA(str(ip))))  # type: ignore[operator]

    def _empty_check(self) -> None:
        """A known name without records of the asked type: NOERROR, SOA in authority."""
        if not self.reply.rr:
            self.reply.add_auth(self._soa())

    def _soa(self) -> RR:
        zone = f"{self.domain}."
        times = (max(self.catalog.index, 1), 3600, 600, 86400, TTL)
        return RR(zone, QTYPE.SOA, ttl=TTL,
                  rdata=SOA(f"ns.{zone}", f"hostmaster.{zone}", times))


def _hex(address: str) -> str:
    return ipaddress.ip_address(address).packed.hex()


def _edns(request: DNSRecord) -> int | None:
    """The UDP payload size a client advertised with EDNS0, if it did."""
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return int(rr.rclass)
    return None


def udp_limit(request: DNSRecord) -> int:
    size = _edns(request)
    if size is None:
        return UDP_LIMIT
    return max(UDP_LIMIT, min(size, MAX_UDP_LIMIT))


def pack_for_udp(reply: DNSRecord, limit: int) -> bytes:
    """Pack `reply`; past `limit` bytes drop records from the end and set the TC flag,
    so the client asks again over TCP (and meanwhile has what fitted)."""
    data: bytes = reply.pack()
    if len(data) <= limit:
        return data
    reply.header.tc = 1
    opt = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    reply.ar = list(opt)
    while True:
        data = reply.pack()
        if len(data) <= limit or not (reply.rr or reply.auth):
            return data
        if reply.rr:
            reply.rr.pop()
        else:
            reply.auth.pop()
