"""HTTP/1.1 details of the proxy: header classes, head rewriting, short error answers.

Response heads are rewritten as raw bytes (a few C-level regexp and search calls) instead of
header by header: the data path pays per response, not per header.
"""

from __future__ import annotations

import re
from functools import cache

# What the request side does with a header (by lowercase name); others pass unchanged.
H_HOST, H_CONNECTION, H_DROP, H_LENGTH, H_TE, H_UPGRADE, H_XFF, H_EXPECT, H_FWD = range(1, 10)
REQUEST_HEADERS: dict[bytes, int] = {
    b"host": H_HOST,
    b"connection": H_CONNECTION,
    b"keep-alive": H_DROP,
    b"proxy-connection": H_DROP,
    b"proxy-authenticate": H_DROP,
    b"proxy-authorization": H_DROP,
    b"te": H_DROP,
    b"trailer": H_DROP,
    b"transfer-encoding": H_TE,
    b"content-length": H_LENGTH,
    b"upgrade": H_UPGRADE,
    b"x-forwarded-for": H_XFF,
    # what a proxy in front says about the client: kept only from a trusted proxy
    # (--trusted-proxies), dropped from anyone else, as Traefik's forwardedHeaders do
    b"x-forwarded-proto": H_FWD,
    b"x-forwarded-host": H_FWD,
    b"x-forwarded-port": H_FWD,
    b"x-forwarded-server": H_FWD,
    b"x-forwarded-prefix": H_FWD,
    b"x-forwarded-uri": H_FWD,
    b"x-forwarded-method": H_FWD,
    b"x-forwarded-ssl": H_FWD,
    b"x-real-ip": H_FWD,
    b"forwarded": H_FWD,
}
CONNECTION_KEEP = frozenset({b"keep-alive", b"close", b"upgrade", b""})
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})

_HOP = rb"connection|keep-alive|proxy-connection|proxy-authenticate|proxy-authorization" \
       rb"|te|trailer|transfer-encoding|upgrade"
_HOP_NO_UPGRADE = rb"keep-alive|proxy-connection|proxy-authenticate|proxy-authorization" \
                  rb"|te|trailer|transfer-encoding"
# matched against the lowercased head (same offsets as the head): case-sensitive is faster
_HOP_LINE = re.compile(rb"\r\n(" + _HOP + rb")[ \t]*:([^\r\n]*)")
_HOP_LINE_UPGRADE = re.compile(rb"\r\n(" + _HOP_NO_UPGRADE + rb")[ \t]*:([^\r\n]*)")


def connection_tokens(values: list[bytes]) -> set[bytes]:
    return {t.strip().lower() for v in values for t in v.split(b",")}


def _drop_named(head: bytes, names: set[bytes]) -> bytes:
    """Remove the headers a Connection header names (rare: a slow path is fine)."""
    alt = b"|".join(re.escape(n) for n in sorted(names))
    return re.sub(rb"\r\n(?:" + alt + rb")[ \t]*:[^\r\n]*", b"", head, flags=re.IGNORECASE)


def rewrite_response_head(head: bytes, upgrade: bool = False) -> tuple[bytes, bool, bool]:
    """`head` (status line and headers, no final blank line) without hop-by-hop headers.

    Returns (head, has Content-Length, has Transfer-Encoding). With `upgrade` (a 101 answer)
    Connection and Upgrade stay.
    """
    low = head.lower()
    has_length = low.find(b"\r\ncontent-length:") >= 0
    has_te = low.find(b"\r\ntransfer-encoding:") >= 0
    pattern = _HOP_LINE_UPGRADE if upgrade else _HOP_LINE
    m = pattern.search(low)
    if m is None:
        return head, has_length, has_te
    parts: list[bytes] = []
    named: set[bytes] = set()
    pos = 0
    while m is not None:
        start, end = m.span()
        if m.group(1) == b"connection" and m.group(2).strip() not in CONNECTION_KEEP:
            named |= connection_tokens([m.group(2)]) - CONNECTION_KEEP
        parts.append(head[pos:start])
        pos = end
        m = pattern.search(low, end)
    parts.append(head[pos:])
    head = b"".join(parts)
    if named:
        head = _drop_named(head, named)
    return head, has_length, has_te


_REWRITTEN: dict[bytes, tuple[bytes, bool, bool]] = {}


def response_head(head: bytes) -> tuple[bytes, bool, bool]:
    """rewrite_response_head, with HTTP/1.1 as the version, memoized: an app's responses
    repeat their heads (only Date changes, once a second), and a dict lookup is cheaper."""
    found = _REWRITTEN.get(head)
    if found is None:
        new, has_length, has_te = rewrite_response_head(head)
        if not new.startswith(b"HTTP/1.1"):
            new = b"HTTP/1.1" + new[8:]
        found = (new, has_length, has_te)
        if len(head) <= 1024:
            if len(_REWRITTEN) >= 1024:
                _REWRITTEN.clear()
            _REWRITTEN[head] = found
    return found


# head → (client head with its blank line, status, content length, upstream keep-alive)
FastHead = tuple[bytes, int, int, bool]
_FAST: dict[bytes, FastHead] = {}


def fast_head(head: bytes) -> FastHead | None:
    """What to send for a response head seen before, and how long its body is: such a
    response need not go through the parser again. Responses of an app repeat their heads
    (only Date changes, once a second)."""
    return _FAST.get(head)


def remember_head(head: bytes, client_head: bytes, status: int, keep_alive: bool) -> None:
    """Called once the parser accepted `head`: a plain sized answer is remembered."""
    if len(head) > 2048 or not head.startswith(b"HTTP/1.1 "):
        return
    low = head.lower()
    at = low.find(b"\r\ncontent-length:")
    if at < 0:
        return
    end = low.find(b"\r\n", at + 17)
    value = low[at + 17:] if end < 0 else low[at + 17:end]
    if not value.strip().isdigit():
        return
    if len(_FAST) >= 1024:
        _FAST.clear()
    _FAST[head] = (client_head + b"\r\n\r\n", status, int(value), keep_alive)


REASONS = {
    308: "Permanent Redirect",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    499: "Client Closed Request",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_BODIES = {404: b"404 page not found\n", 503: b"no available server\n"}


@cache
def error_response(status: int, close: bool, head_only: bool = False) -> bytes:
    """A short plain-text answer the proxy gives itself (Traefik's wording where it has one)."""
    reason = REASONS.get(status, "Error")
    body = _BODIES.get(status, f"{status} {reason}\n".encode())
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: text/plain; charset=utf-8",
        f"content-length: {len(body)}",
    ]
    if close:
        lines.append("connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head if head_only else head + body


def redirect_response(location: bytes, close: bool, head_only: bool = False) -> bytes:
    """308 to `location` (the method and body are kept, unlike 301/302)."""
    body = b"Permanent Redirect\n"
    head = (b"HTTP/1.1 308 Permanent Redirect\r\nlocation: " + location
            + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            % len(body) + (b"connection: close\r\n" if close else b"") + b"\r\n")
    return head if head_only else head + body


_HOSTS: dict[bytes, tuple[str, bytes]] = {}


def host_and_port(value: bytes) -> tuple[str, bytes]:
    """Host header → (host for matching, port for X-Forwarded-Port), cached: hosts repeat."""
    found = _HOSTS.get(value)
    if found is None:
        if len(_HOSTS) > 4096:
            _HOSTS.clear()
        found = _HOSTS[value] = (host_of(value), port_of(value))
    return found


def host_of(value: bytes) -> str:
    """The Host header → lowercase host name without port or trailing dot."""
    host = value.decode("latin-1").strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    colon = host.rfind(":")
    if colon >= 0 and host.count(":") == 1:
        host = host[:colon]
    return host.rstrip(".")


def port_of(value: bytes, default: bytes = b"80") -> bytes:
    """The port of a Host header value, or `default`."""
    if value.startswith(b"["):
        end = value.find(b"]:")
        return value[end + 2:].strip() if end > 0 else default
    colon = value.rfind(b":")
    return value[colon + 1:].strip() if colon >= 0 and value.count(b":") == 1 else default


def absolute_form(url: bytes) -> tuple[bytes | None, bytes]:
    """`http://host:port/path?q` → (b"host:port", b"/path?q"); (None, b"") when the URL is not
    an absolute http(s) URL with a non-empty authority without user info."""
    scheme, sep, rest = url.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return None, b""
    end = len(rest)
    for delim in (b"/", b"?", b"#"):
        at = rest.find(delim)
        if 0 <= at < end:
            end = at
    authority, path = rest[:end], rest[end:].partition(b"#")[0]
    if not authority or b"@" in authority:
        return None, b""
    if path[:1] != b"/":
        path = b"/" + path
    return authority, path


def without(out: list[bytes], names: set[bytes]) -> list[bytes]:
    """`out` minus the headers a Connection header names (each header is 4 items)."""
    kept = out[:4]
    for i in range(4, len(out), 4):
        if out[i].lower() not in names:
            kept += out[i:i + 4]
    return kept


def trusted_forwarded(given: set[bytes], forwarded: bytes, ip: bytes, xff: bytes | None,
                      host: bytes, port: bytes) -> bytes:
    """The X-Forwarded-* lines for a trusted proxy's request (`given`: the names it set): its
    own values stay, the missing ones are set as for any client (`forwarded` holds the
    connection's proto), and X-Forwarded-For gets the proxy's address `ip` appended."""
    proto = forwarded.split(b"x-forwarded-proto: ", 1)[1].split(b"\r\n", 1)[0]
    out = []
    if b"x-real-ip" not in given:
        out.append(b"x-real-ip: " + ip + b"\r\n")
    if b"x-forwarded-proto" not in given:
        out.append(b"x-forwarded-proto: " + proto + b"\r\n")
    out.append(b"x-forwarded-for: " + (ip if xff is None else xff + b", " + ip) + b"\r\n")
    if b"x-forwarded-host" not in given:
        out.append(b"x-forwarded-host: " + host + b"\r\n")
    if b"x-forwarded-port" not in given:
        out.append(b"x-forwarded-port: " + port + b"\r\n")
    return b"".join(out)
