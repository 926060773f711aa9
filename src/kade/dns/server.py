"""The DNS server: answers on UDP and TCP from the catalog view's current snapshot.

Each query reads `view.catalog` once; the view swaps snapshots whole, so an answer is never
made of two states of the catalog and no query waits on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from types import TracebackType
from typing import Protocol, cast

from dnslib import RCODE, DNSError, DNSRecord  # type: ignore[import-untyped]

from kade.addresses import split_addr
from kade.catalog.model import Catalog
from kade.dns.answer import answer, pack_for_udp, udp_limit

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 10.0  # seconds a client may keep an idle TCP connection open


class HasCatalog(Protocol):
    @property
    def catalog(self) -> Catalog: ...


class DnsServer:
    """`async with DnsServer(view, "127.0.0.1:8600"):` serves until the block ends.

    With port 0 one free port is picked for both UDP and TCP (see `port`)."""

    def __init__(self, catalog_view: HasCatalog, addr: str = "127.0.0.1:8600",
                 domain: str = "consul") -> None:
        self.view = catalog_view
        self.host, self.port = split_addr(addr, "127.0.0.1")
        self.domain = domain.strip(".").lower()
        self._rng = random.Random()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    def respond(self, data: bytes) -> tuple[DNSRecord, DNSRecord] | None:
        """(request, reply) for a query; None for what is not DNS (left unanswered)."""
        try:
            request = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, struct.error):
            return None
        try:
            return request, answer(request, self.view.catalog, self.domain, rng=self._rng)
        except Exception:
            log.exception("dns: failed to answer %s", request.q.qname)
            reply = request.reply(ra=0, aa=1)
            reply.header.rcode = RCODE.SERVFAIL
            return request, reply

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            # IPPROTO_TCP given explicitly: asyncio turns Nagle off only on such sockets.
            sock = socket.socket(_family(self.host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            port = sock.getsockname()[1]
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(self.host, port))
            except OSError:
                sock.close()
                if self.port != 0 or attempt == 19:
                    raise
                continue  # the UDP side of a picked port was taken: pick another
            self._udp = transport
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=sock)
            self.port = port
            return

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._conns):
                task.cancel()
            for task in list(self._conns):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:  # a client may send several queries on one connection (RFC 7766)
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    head = await reader.readexactly(2)
                    data = await reader.readexactly(struct.unpack("!H", head)[0])
                result = self.respond(data)
                if result is None:
                    break
                packed = result[1].pack()
                writer.write(struct.pack("!H", len(packed)) + packed)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        result = self.server.respond(data)
        if result is None or self.transport is None:
            return
        request, reply = result
        self.transport.sendto(pack_for_udp(reply, udp_limit(request)), addr)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
