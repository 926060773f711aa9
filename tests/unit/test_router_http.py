"""HTTP details of the proxy: hop-by-hop headers, Host parsing, its own short answers."""

from __future__ import annotations

import pytest

from kade.router.http import (
    absolute_form,
    error_response,
    host_and_port,
    redirect_response,
    response_head,
    rewrite_response_head,
)
from kade.router.metrics import Gauges, Stats, render
from kade.router.proxy import parse_networks

HEAD = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 13\r\nConnection: keep-alive")


def test_hop_by_hop_headers_are_removed() -> None:
    head = (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
            b"Keep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\n"
            b"Upgrade: h2c\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\nTEXT: kept")
    new, has_length, has_te = rewrite_response_head(head)
    assert new == b"HTTP/1.1 200 OK\r\nX-Kept: yes\r\nTEXT: kept"
    assert (has_length, has_te) == (False, True)


def test_header_names_in_any_case() -> None:
    new, has_length, _ = rewrite_response_head(b"HTTP/1.1 200 OK\r\nCONNECTION: Close\r\n"
                                               b"content-LENGTH: 0")
    assert new == b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 0"
    assert has_length


def test_an_upgrade_answer_keeps_connection_and_upgrade() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade"
    assert rewrite_response_head(head, upgrade=True)[0] == head


def test_response_head_says_http11_and_is_memoized() -> None:
    old = HEAD.replace(b"HTTP/1.1", b"HTTP/1.0")
    first = response_head(old)
    assert first[0].startswith(b"HTTP/1.1 200 OK\r\nServer: nginx")
    assert b"Connection" not in first[0]
    assert response_head(old) is first


@pytest.mark.parametrize(("value", "host", "port"), [
    (b"www.localhost", "www.localhost", b"80"),
    (b"WWW.Localhost:8080", "www.localhost", b"8080"),
    (b"www.localhost.", "www.localhost", b"80"),
    (b"[::1]:8443", "::1", b"8443"),
    (b"[::1]", "::1", b"80"),
    (b"127.0.0.1:81", "127.0.0.1", b"81"),
])
def test_host_header(value: bytes, host: str, port: bytes) -> None:
    assert host_and_port(value) == (host, port)


def test_error_answers_are_short_and_plain() -> None:
    raw = error_response(404, False)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert body == b"404 page not found\n"
    assert b"content-length: 19" in head and b"connection: close" not in head
    assert b"connection: close" in error_response(503, True)
    assert error_response(503, True).endswith(b"no available server\n")
    assert error_response(502, False, head_only=True).endswith(b"\r\n\r\n")


def test_metrics_text() -> None:
    st = Stats("web-shop", "web-shop")
    st.record(200, 0.0004)
    st.record(200, 0.02)
    st.record(502, 3.0)
    other = Stats("api", "web-shop")
    other.record(404, 0.001)
    text = render([st, other], Gauges(revision=7, routers=2, route_errors=1,
                                      client_connections=3, inflight={("web-shop", "u"): 2},
                                      idle_upstream=4, draining=0))
    lines = set(text.splitlines())
    assert 'kade_router_requests_total{router="web-shop",service="web-shop",code="2xx"} 2' in lines
    assert 'kade_router_requests_total{router="web-shop",service="web-shop",code="5xx"} 1' in lines
    assert 'kade_service_requests_total{service="web-shop",code="4xx"} 1' in lines
    bucket = 'kade_router_request_duration_seconds_bucket{router="web-shop",service="web-shop",'
    assert bucket + 'le="0.001"} 1' in lines
    assert bucket + 'le="0.025"} 2' in lines
    assert bucket + 'le="+Inf"} 3' in lines
    assert 'kade_service_request_duration_seconds_count{service="web-shop"} 4' in lines
    assert 'kade_server_inflight_requests{service="web-shop",url="u"} 2' in lines
    assert "kade_router_table_revision 7" in lines
    assert text.endswith("\n")


@pytest.mark.parametrize(("url", "expected"), [
    (b"http://api.localhost/x?y=1", (b"api.localhost", b"/x?y=1")),
    (b"HTTP://api.localhost:8080", (b"api.localhost:8080", b"/")),
    (b"https://[::1]:8443/a", (b"[::1]:8443", b"/a")),
    (b"http://a.localhost?q=1", (b"a.localhost", b"/?q=1")),
    (b"http://a.localhost/p#frag", (b"a.localhost", b"/p")),
    (b"http:///x", (None, b"")),  # empty authority
    (b"http://user:pw@a.localhost/", (None, b"")),  # user info
    (b"ftp://a.localhost/", (None, b"")),
    (b"a.localhost/x", (None, b"")),
])
def test_absolute_form(url: bytes, expected: tuple[bytes | None, bytes]) -> None:
    assert absolute_form(url) == expected


def test_trusted_proxies_are_checked() -> None:
    nets = parse_networks(["10.0.0.0/8,::1", " 192.168.1.1 "])
    assert [str(n) for n in nets] == ["10.0.0.0/8", "::1/128", "192.168.1.1/32"]
    with pytest.raises(ValueError, match="--trusted-proxies: 'nope' is not an IP address"):
        parse_networks(["10.0.0.0/8,nope"])


def test_redirect_response() -> None:
    answer = redirect_response(b"https://www.localhost:8443/a?b=1", False)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 308 Permanent Redirect", b"location: https://www.localhost:8443/a?b=1",
        b"content-type: text/plain; charset=utf-8", b"content-length: 19"]
    assert body == b"Permanent Redirect\n"
    assert redirect_response(b"https://a/", True, head_only=True).endswith(
        b"content-length: 19\r\nconnection: close\r\n\r\n")
