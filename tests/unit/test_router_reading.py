"""How a client connection reads requests, driven through a real `Proxy`, client and upstream
connection objects over transports that keep what is written: what the app receives and
what the client is answered must not depend on how the bytes are split into reads, and
anything llhttp refuses never reaches the app. (Checks for any change to how heads are
read: a faster path must pass them unchanged.)"""

from __future__ import annotations

from typing import Any

import pytest
from httptools import HttpRequestParser

from kade.router.client import ClientConnection
from kade.router.proxy import Proxy, ProxyConfig
from kade.router.upstream import UpstreamConnection

URL = "http://127.0.0.1:9"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Wire:
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, items: list[bytes]) -> None:
        for item in items:
            self.data += item

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def serve(reads: list[bytes], config: ProxyConfig | None = None) -> tuple[bytes, bytes, bool]:
    """Feed `reads` to a client connection; the app answers each request once it has all
    of it. Returns (what the app got, what the client got, whether the client was closed)."""
    proxy = Proxy(config or ProxyConfig())
    proxy.apply({"revision": 1,
                 "routers": [{"name": "web", "rule": "PathPrefix(`/`)", "service": "web"}],
                 "services": {"web": {"servers": [{"url": URL, "task": "t"}]}}})
    server = proxy.servers[URL]
    up = UpstreamConnection(server)
    up_wire = Wire()
    up.connection_made(up_wire)
    server.idle.append(up)
    client = ClientConnection(proxy)
    wire = Wire()
    client.connection_made(wire)
    for data in reads:
        client.data_received(data)
        while up.x is not None and up.x.req_done and not wire.closed:
            up.data_received(ANSWER)
    return bytes(up_wire.data), bytes(wire.data), wire.closed


class Requests:
    """What the app got, request by request: (url, headers, body), the body de-chunked (how
    a body is cut into chunks follows the reads)."""

    def __init__(self, data: bytes) -> None:
        self.got: list[tuple[bytes, list[tuple[bytes, bytes]], bytes]] = []
        HttpRequestParser(self).feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.got.append((url, [], b""))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.got[-1][1].append((name, value))

    def on_body(self, body: bytes) -> None:
        url, headers, got = self.got[-1]
        self.got[-1] = (url, headers, got + body)


def received(reads: list[bytes]) -> tuple[list[Any], bytes, bool]:
    app, answers, closed = serve(reads)
    return Requests(app).got, answers, closed


def splits(stream: bytes) -> list[list[bytes]]:
    """`stream` whole, cut in two at every place, and byte by byte."""
    out = [[stream]]
    out += [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    out.append([stream[i:i + 1] for i in range(len(stream))])
    return out


GET = b"GET /a?b=1 HTTP/1.1\r\nHost: www.localhost\r\nUser-Agent: t\r\nCookie: c=1\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: www.localhost\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (b"POST /c HTTP/1.1\r\nHost: www.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"6\r\nhe\r\n\r\n\r\n3;x=y\r\nabc\r\n0\r\nTrailer-A: 1\r\n\r\n")
EMPTY_CHUNKED = (b"PUT /e HTTP/1.1\r\nHost: www.localhost\r\nTransfer-Encoding: chunked"
                 b"\r\n\r\n0\r\n\r\n")
STREAMS = {
    "one GET": GET,
    "pipelined": GET + POST + CHUNKED + EMPTY_CHUNKED + GET.replace(b"/a", b"/z"),
    "blank lines between requests": b"\r\n" + GET + b"\r\n\r\n" + POST + b"\r\n" + GET,
    "a body that looks like a head": (
        b"POST /p HTTP/1.1\r\nHost: www.localhost\r\nContent-Length: 39\r\n\r\n"
        b"GET /x HTTP/1.1\r\nHost: evil\r\n\r\n12345678" + GET),
    "a chunk that looks like a head": (
        b"POST /c HTTP/1.1\r\nHost: www.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1f\r\nGET /x HTTP/1.1\r\nHost: evil\r\n\r\n\r\n0\r\n\r\n" + GET),
    "HTTP/1.0 and odd spacing": (b"GET /old HTTP/1.0\r\nHost:  www.localhost \t\r\n"
                                 b"Connection: keep-alive\r\n\r\n" + GET),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_how_the_bytes_are_split_into_reads_changes_nothing(name: str) -> None:
    stream = STREAMS[name]
    expected = received([stream])
    assert expected[1].count(b"HTTP/1.1 200 OK") == len(expected[0]) >= 1
    for reads in splits(stream):
        assert received(reads) == expected, reads


def test_what_the_app_gets() -> None:
    got, answers, closed = received([STREAMS["pipelined"]])
    assert answers.count(b"HTTP/1.1 200 OK") == 5 and not closed
    assert [(url, body) for url, _, body in got] == [
        (b"/a?b=1", b""), (b"/p", b"hello"), (b"/c", b"he\r\n\r\nabc"), (b"/e", b""),
        (b"/z?b=1", b"")]
    forwarded = [(b"x-real-ip", b"127.0.0.1"), (b"x-forwarded-proto", b"http"),
                 (b"x-forwarded-for", b"127.0.0.1"), (b"x-forwarded-host", b"www.localhost"),
                 (b"x-forwarded-port", b"80")]
    assert got[0][1] == [(b"Host", b"www.localhost"), (b"User-Agent", b"t"),
                         (b"Cookie", b"c=1"), *forwarded]
    assert got[1][1] == [(b"Host", b"www.localhost"), (b"Content-Length", b"5"), *forwarded]
    # a chunked body is passed on as chunks of what came, its trailers left out
    assert got[2][1] == [(b"Host", b"www.localhost"), *forwarded,
                         (b"transfer-encoding", b"chunked")]


def test_a_body_that_looks_like_a_request_stays_a_body() -> None:
    app, answers, _ = serve([STREAMS["a body that looks like a head"]])
    assert answers.count(b"HTTP/1.1 200 OK") == 2
    assert b"Host: evil" in app and app.count(b"x-real-ip") == 2  # two requests, not three


@pytest.mark.parametrize(("request_bytes", "served"), [
    (b"GET / HTTP/1.1\nHost: a\n\n", 0),  # bare LF line ends
    (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 0),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 0),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 0),  # a folded line
    (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0),  # space before the colon
    (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 0),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nxx", 0),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\nHost: b\n\n", 1),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\n\n", 1),
])
def test_what_llhttp_refuses_is_refused_however_it_is_split(request_bytes: bytes,
                                                            served: int) -> None:
    for reads in splits(request_bytes):
        got, answer, closed = received(reads)
        assert closed, reads
        # what came before the fault may have gone on; nothing of it or after it does
        assert [url for url, _, _ in got] == [b"/"] * served, reads
        if not served:
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (reads, answer)


def test_a_head_too_large_is_refused() -> None:
    config = ProxyConfig(max_header_bytes=1024, max_url_bytes=256)
    big = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * 2000 + b"\r\n\r\n"
    for reads in ([big], [big[:900], big[900:]], [big[i:i + 100] for i in range(0, 2100, 100)]):
        app, answer, closed = serve(reads, config)
        assert answer.startswith(b"HTTP/1.1 431 ") and closed and app == b""


def test_trailers_are_bounded() -> None:
    config = ProxyConfig(max_header_bytes=1024)
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
    trailers = [b"T%d: %s\r\n" % (i, b"v" * 100) for i in range(30)]
    app, answer, closed = serve([head, *trailers, b"\r\n"], config)
    assert answer.startswith(b"HTTP/1.1 400 ") and closed
    app, answer, closed = serve([head, *trailers[:5], b"\r\n"], config)
    assert answer.startswith(b"HTTP/1.1 200 ") and not closed
