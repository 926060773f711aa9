"""DNS answers from a catalog snapshot (`answer`, pure) and the UDP/TCP server."""

from kade.dns.answer import answer, pack_for_udp, udp_limit
from kade.dns.server import DnsServer

__all__ = ["DnsServer", "answer", "pack_for_udp", "udp_limit"]
