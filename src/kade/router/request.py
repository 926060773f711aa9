"""The request head for the upstream, made from the client's head as it came.

llhttp has already validated the head (one request line, CRLF line ends, header names that
are tokens, values without control characters, at most one Content-Length, a chunked
Transfer-Encoding last): what is left is the proxy's own editing. The client's header lines
are passed on byte for byte; only the lines a proxy must act on are found (one C-level regexp
search over the lowercased block, instead of a Python call per header) and dropped or
replaced: hop-by-hop headers, the framing headers, the forwarding headers of untrusted
clients. A browser's head of a dozen headers thus costs the same few calls as a short one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from kade.router import http as h
from kade.router.exchange import CHUNKED, LENGTH, NO_BODY
from kade.router.http import (
    H_CONNECTION,
    H_FWD,
    H_HOST,
    H_LENGTH,
    H_TE,
    H_UPGRADE,
    H_XFF,
    REQUEST_HEADERS,
    host_and_port,
)

if TYPE_CHECKING:
    from kade.router.exchange import Exchange

def _names_pattern(names: list[bytes]) -> bytes:
    """One alternative per first letter: the regexp engine leaves a line at its first
    character unless a name it looks for starts with it."""
    by_first: dict[bytes, list[bytes]] = {}
    for n in sorted(names, key=len, reverse=True):
        by_first.setdefault(n[:1], []).append(n)
    return b"|".join(re.escape(first) + b"(?:" + b"|".join(re.escape(n[1:]) for n in group)
                     + b")" for first, group in by_first.items())


# The lines of a lowercased head the proxy acts on (http.REQUEST_HEADERS): after the request
# line each LF ends a line (llhttp refuses a bare LF, a CR without LF, space before a colon),
# so `\n` + name + `:` is a header line of that name; the value is what follows its leading
# blanks, up to the line's CR (trailing blanks kept, as llhttp reports it).
_LINES = re.compile(rb"\n(" + _names_pattern(list(REQUEST_HEADERS)) + rb"):[ \t]*([^\r]*)")
_KIND = REQUEST_HEADERS


class Connection:
    """What the head depends on besides the request: the client connection's own facts."""

    __slots__ = ("trusted", "tls", "ip", "forwarded", "forwarded_ws", "may_upgrade")

    def __init__(self, trusted: bool, tls: bool, ip: bytes,
                 may_upgrade: Callable[[], bool]) -> None:
        self.trusted = trusted  # a proxy whose X-Forwarded-* headers are kept
        self.tls = tls
        self.ip = ip
        proto = b"https" if tls else b"http"
        # the X-Forwarded-* that are the same for every request of the connection
        self.forwarded = (b"x-real-ip: " + ip + b"\r\nx-forwarded-proto: " + proto
                          + b"\r\nx-forwarded-for: ")
        self.forwarded_ws = self.forwarded.replace(b": http", b": ws")
        self.may_upgrade = may_upgrade  # llhttp's verdict: Upgrade and Connection: upgrade


def build_head(x: Exchange, head: bytes, conn: Connection) -> int:
    """Fill in `x.head` (the upstream's request head), the framing, the host. `head` is the
    client's head up to its blank line, as llhttp accepted it. Returns 0, or the status
    that refuses the request."""
    verb = x.verb
    if verb == b"CONNECT":
        return 405
    line_end = head.find(b"\r\n")  # the request line ends in the version llhttp accepted
    x.http10 = head[line_end - 8:line_end] == b"HTTP/1.0"
    url = x.url
    authority = None
    if url[:1] != b"/" and not (url == b"*" and verb == b"OPTIONS"):
        # absolute form (RFC 9112 §3.2.2): the URL's authority is the host, for routing and
        # for the upstream's Host header; the upstream gets the origin form
        authority, url = h.absolute_form(url)
        if authority is None:
            return 400
        x.url = url
    if (line_end == len(verb) + len(url) + 10 and authority is None
            and head.startswith(b"HTTP/1.1", line_end - 8)):
        out = []  # the request line as it came: "VERB /url HTTP/1.1"
        pos = 0
    else:
        out = [verb, b" ", url, b" HTTP/1.1"]
        pos = line_end
    host = None
    xff = None
    fwd: list[bytes] | None = None
    conn_values: list[bytes] | None = None
    upgrade_value = b""
    lengths = 0
    trusted = conn.trusted
    low = head.lower()
    for m in _LINES.finditer(low):
        name = m.group(1)
        kind = _KIND[name]
        start = m.start() - 1  # the CR of the line before
        vstart, end = m.span(2)
        if kind == H_HOST:
            if host is not None:
                return 400
            host = head[vstart:end]
            if authority is None:
                continue  # kept as it came
        elif kind == H_LENGTH:
            lengths += 1
            x.length = int(head[vstart:end])  # digits, llhttp checked (one value only)
            continue
        elif kind == H_FWD and trusted:
            fwd = [name] if fwd is None else [*fwd, name]
            continue
        elif kind == H_TE:
            x.body_mode = CHUNKED
        elif kind == H_XFF:
            if trusted:
                value = head[vstart:end]
                xff = value if xff is None else xff + b", " + value
        elif kind == H_CONNECTION:
            value = head[vstart:end]
            conn_values = [value] if conn_values is None else [*conn_values, value]
        elif kind == H_UPGRADE:
            upgrade_value = head[vstart:end]
        # the line is dropped
        out.append(head[pos:start])
        pos = end
    out.append(head[pos:-4])
    if x.body_mode == CHUNKED and lengths:
        return 400  # request smuggling: both framings
    if lengths:
        x.body_mode = LENGTH
    if authority is not None:
        host = authority
        out.append(b"\r\nhost: " + authority)
    if host is None:
        if not x.http10:
            return 400
        host = b""
    x.host_header = host
    x.host, port = host_and_port(host)
    if conn.tls:
        port = h.port_of(host, b"443")
    if conn_values is not None:
        extra = h.connection_tokens(conn_values) - h.CONNECTION_KEEP
        if extra:
            out = [h.drop_named(b"".join(out), extra)]
    forwarded = conn.forwarded
    if upgrade_value and conn.may_upgrade():
        x.upgrade = True
        x.keep_alive = False  # the connection becomes a tunnel or closes
        out += (b"\r\nconnection: Upgrade\r\nupgrade: ", upgrade_value)
        if upgrade_value.lower() == b"websocket":
            forwarded = conn.forwarded_ws
    if fwd is None:
        out += (b"\r\n", forwarded, conn.ip if xff is None else xff + b", " + conn.ip,
                b"\r\nx-forwarded-host: ", host, b"\r\nx-forwarded-port: ", port, b"\r\n")
    else:
        out += (b"\r\n", h.trusted_forwarded(set(fwd), forwarded, conn.ip, xff, host, port))
    if x.body_mode == CHUNKED:
        out.append(b"transfer-encoding: chunked\r\n")
    out.append(b"\r\n")
    x.head = b"".join(out)
    if x.body_mode == NO_BODY:
        x.req_done = True
    return 0
