"""Traefik's own rule test cases, run against kade's rule parser and matchers.

The cases (rule, request, expected match or refusal) are copied from Traefik 3's table-driven
tests; each group names the file and test function it came from. A request is built the way
kade's router builds it (`Exchange`, the host from `kade.router.http.host_of`), so what is
compared is what a request through the router would see.

Every case must agree with Traefik, except those in DIFFERENCES: each of these asserts kade's
actual behaviour (the opposite of Traefik's) and says why; docs/routing.md lists them too.
`test_agreement` keeps the share of agreeing cases at 95% or more.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pytest

from kade.router import http as h
from kade.router.balancer import Server
from kade.router.exchange import Exchange
from kade.router.metrics import Stats
from kade.router.rules import RuleError, parse_rule, routing_path
from kade.router.table import compile_table

ERR = "refused"


@dataclass(frozen=True)
class R:
    """A request as Traefik's tests write it: URL, method, headers (a Go header map), peer."""

    url: str = "https://example.com"
    method: str = "GET"
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    remote: str = ""

    def __str__(self) -> str:
        parts = [self.url] if self.url != R.url else []
        parts += [self.method] if self.method != "GET" else []
        parts += [f"{k}: {', '.join(v)}" for k, v in self.headers]
        parts += [f"from {self.remote}"] if self.remote else []
        return " ".join(parts) or "https://example.com"


def u(url: str) -> R:
    return R(url=url)


def m(method: str) -> R:
    return R(method=method)


def ip(remote: str) -> R:
    return R(remote=remote)


def hd(headers: dict[str, list[str]], url: str = R.url) -> R:
    return R(url=url, headers=tuple((k, tuple(v)) for k, v in headers.items()))


class _Conn:
    def __init__(self, client_ip: str) -> None:
        self.client_ip = client_ip


def _peer_ip(remote: str) -> str:
    """Go's RemoteAddrStrategy: the host of host:port, or the whole value when it has none."""
    try:
        return str(ipaddress.ip_address(remote.strip("[]")))
    except ValueError:
        host, sep, _ = remote.rpartition(":")
        return host.strip("[]") if sep else remote


def exchange(r: R) -> Exchange:
    """The router's view of `r`: absolute URL → Host and origin-form target, as on the wire."""
    x = Exchange(_Conn(_peer_ip(r.remote)), 0.0)  # type: ignore[arg-type]
    _, _, rest = r.url.partition("://")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:cut], rest[cut:]
    if not target.startswith("/"):
        target = "/" + target
    x.verb = r.method.encode()
    x.url = target.encode()
    x.host = h.host_of(authority.encode())
    x.headers = [(k.encode(), v.encode()) for k, values in r.headers for v in values]
    return x


Case = tuple[str, str, str, Any]  # (source, syntax, rule, ERR or [(request, matches)])

MATCHER = "pkg/muxer/http/matcher_test.go"
V2 = "pkg/muxer/http/matcher_v2_test.go"
MUX = "pkg/muxer/http/mux_test.go"
PARSER = "pkg/rules/parser_test.go"

CASES: list[Case] = [
    # -- matcher_test.go, TestClientIPMatcher ------------------------------------------------
    (MATCHER, "v3", "ClientIP(`1`)", ERR),
    (MATCHER, "v3", "ClientIP()", ERR),
    (MATCHER, "v3", "ClientIP(``)", ERR),
    (MATCHER, "v3", "ClientIP(`127.0.0.1`, `192.168.1.0/24`)", ERR),
    (MATCHER, "v3", "ClientIP(`127.0.0.1`)",
     [(ip("127.0.0.1"), True), (ip("192.168.1.1"), False), (ip("1"), False)]),
    (MATCHER, "v3", "ClientIP(`192.168.1.0/24`)",
     [(ip("192.168.1.1"), True), (ip("192.168.1.100"), True), (ip("192.168.2.1"), False)]),
    # -- matcher_test.go, TestMethodMatcher --------------------------------------------------
    (MATCHER, "v3", "Method()", ERR),
    (MATCHER, "v3", "Method(``)", ERR),
    (MATCHER, "v3", "Method(`GET`, `POST`)", ERR),
    (MATCHER, "v3", "Method(`GET`)", [(m("GET"), True), (m("POST"), False), (m("get"), False)]),
    (MATCHER, "v3", "Method(`get`)", [(m("GET"), True), (m("POST"), False), (m("get"), False)]),
    # -- matcher_test.go, TestHostMatcher ----------------------------------------------------
    (MATCHER, "v3", "Host()", ERR),
    (MATCHER, "v3", "Host(``)", ERR),
    (MATCHER, "v3", "Host(`🦭.com`)", ERR),
    (MATCHER, "v3", "Host(`/`)", ERR),
    (MATCHER, "v3", "Host(`example.com`, `example.org`)", ERR),
    (MATCHER, "v3", "Host(`example.com`)",
     [(u("https://example.com"), True), (u("https://example.com:8080"), True),
      (u("https://example.com/path"), True), (u("https://EXAMPLE.COM/path"), True),
      (u("https://example.org"), False), (u("https://example.org/path"), False),
      (u("https://example.com."), True), (u("https://example.com./path"), True),
      (u("https://example.org."), False), (u("https://example.org./path"), False)]),
    (MATCHER, "v3", "Host(`example.com.`)",
     [(u("https://example.com"), True), (u("https://example.com/path"), True),
      (u("https://example.org"), False), (u("https://example.org/path"), False),
      (u("https://example.com."), True), (u("https://example.com./path"), True),
      (u("https://example.org."), False), (u("https://example.org./path"), False)]),
    (MATCHER, "v3", "Host(`EXAMPLE.COM`)",
     [(u("https://example.com"), True), (u("https://example.com/path"), True),
      (u("https://example.org"), False), (u("https://example.org/path"), False)]),
    (MATCHER, "v3", "Host(`xn--9t9h.com`)",
     [(u("https://xn--9t9h.com"), True), (u("https://xn--9t9h.com/path"), True),
      (u("https://example.com"), False), (u("https://example.com/path"), False),
      (u("https://🦭.com"), False)]),
    # -- matcher_test.go, TestHostRegexpMatcher ----------------------------------------------
    (MATCHER, "v3", "HostRegexp()", ERR),
    (MATCHER, "v3", "HostRegexp(``)", ERR),
    (MATCHER, "v3", "HostRegexp(`🦭.com`)", ERR),
    (MATCHER, "v3", "HostRegexp(`(example.com`)", ERR),
    (MATCHER, "v3", "HostRegexp(`example.com`, `example.org`)", ERR),
    (MATCHER, "v3", "HostRegexp(`^[a-zA-Z-]+\\.com$`)",
     [(u("https://example.com"), True), (u("https://example.com:8080"), True),
      (u("https://example.com/path"), True), (u("https://example.org"), False),
      (u("https://example.org/path"), False)]),
    (MATCHER, "v3", "HostRegexp(`^[A-Z]+\\.com$`)",
     [(u("https://example.com"), False), (u("https://EXAMPLE.com"), False),
      (u("https://example.com/path"), False), (u("https://example.org"), False),
      (u("https://example.org/path"), False)]),
    (MATCHER, "v3", "HostRegexp(`{domain:[a-zA-Z-]+\\.com}`)",
     [(u("https://example.com"), False), (u("https://example.com/path"), False),
      (u("https://example.org"), False), (u("https://example.org/path"), False)]),
    # -- matcher_test.go, TestPathMatcher ----------------------------------------------------
    (MATCHER, "v3", "Path()", ERR),
    (MATCHER, "v3", "Path(``)", ERR),
    (MATCHER, "v3", "Path(`css`)", ERR),
    (MATCHER, "v3", "Path(`/css`, `/js`)", ERR),
    (MATCHER, "v3", "Path(`/css`)",
     [(u("https://example.com"), False), (u("https://example.com/html"), False),
      (u("https://example.org/css"), True), (u("https://example.com/css"), True),
      (u("https://example.com/css/"), False), (u("https://example.com/css/main.css"), False)]),
    # -- matcher_test.go, TestPathRegexpMatcher ----------------------------------------------
    (MATCHER, "v3", "PathRegexp()", ERR),
    (MATCHER, "v3", "PathRegexp(``)", ERR),
    (MATCHER, "v3", "PathRegexp(`/(css`)", ERR),
    (MATCHER, "v3", "PathRegexp(`/css`, `/js`)", ERR),
    (MATCHER, "v3", "PathRegexp(`^/(css|js)`)",
     [(u("https://example.com"), False), (u("https://example.com/html"), False),
      (u("https://example.org/css"), True), (u("https://example.com/CSS"), False),
      (u("https://example.com/css"), True), (u("https://example.com/css/"), True),
      (u("https://example.com/css/main.css"), True), (u("https://example.com/js"), True),
      (u("https://example.com/js/"), True), (u("https://example.com/js/main.js"), True)]),
    (MATCHER, "v3", 'PathRegexp("/{path:(css|js)}")',
     [(u("https://example.com"), False), (u("https://example.com/html"), False),
      (u("https://example.org/css"), False), (u("https://example.com/{path:css}"), True),
      (u("https://example.com/{path:css}/"), True),
      (u("https://example.com/%7Bpath:css%7D"), True),
      (u("https://example.com/%7Bpath:css%7D/"), True),
      (u("https://example.com/{path:js}"), True), (u("https://example.com/{path:js}/"), True),
      (u("https://example.com/%7Bpath:js%7D"), True),
      (u("https://example.com/%7Bpath:js%7D/"), True)]),
    # -- matcher_test.go, TestPathPrefixMatcher ----------------------------------------------
    (MATCHER, "v3", "PathPrefix()", ERR),
    (MATCHER, "v3", "PathPrefix(``)", ERR),
    (MATCHER, "v3", "PathPrefix(`css`)", ERR),
    (MATCHER, "v3", "PathPrefix(`/css`, `/js`)", ERR),
    (MATCHER, "v3", 'PathPrefix("/css")',
     [(u("https://example.com"), False), (u("https://example.com/html"), False),
      (u("https://example.org/css"), True), (u("https://example.com/css"), True),
      (u("https://example.com/css/"), True), (u("https://example.com/css/main.css"), True)]),
    # -- matcher_test.go, TestHeaderMatcher --------------------------------------------------
    (MATCHER, "v3", "Header()", ERR),
    (MATCHER, "v3", "Header(`X-Forwarded-Host`)", ERR),
    (MATCHER, "v3", "Header(`X-Forwarded-Host`, ``)", ERR),
    (MATCHER, "v3", "Header(``, `example.com`)", ERR),
    (MATCHER, "v3", "Header(`X-Forwarded-Host`, `example.com`, `example.org`)", ERR),
    (MATCHER, "v3", "Header(`X-Forwarded-Proto`, `https`)",
     [(hd({"X-Forwarded-Proto": ["https"]}), True),
      (hd({"x-forwarded-proto": ["https"]}), False),
      (hd({"X-Forwarded-Proto": ["http", "https"]}), True),
      (hd({"X-Forwarded-Proto": ["https", "http"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    (MATCHER, "v3", "Header(`x-forwarded-proto`, `https`)",
     [(hd({"X-Forwarded-Proto": ["https"]}), True),
      (hd({"x-forwarded-proto": ["https"]}), False),
      (hd({"X-Forwarded-Proto": ["http", "https"]}), True),
      (hd({"X-Forwarded-Proto": ["https", "http"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    # -- matcher_test.go, TestHeaderRegexpMatcher --------------------------------------------
    (MATCHER, "v3", "HeaderRegexp()", ERR),
    (MATCHER, "v3", "HeaderRegexp(`X-Forwarded-Host`)", ERR),
    (MATCHER, "v3", "HeaderRegexp(`X-Forwarded-Host`, ``)", ERR),
    (MATCHER, "v3", "HeaderRegexp(``, `example.com`)", ERR),
    (MATCHER, "v3", "HeaderRegexp(`X-Forwarded-Host`,`(example.com`)", ERR),
    (MATCHER, "v3", "HeaderRegexp(`X-Forwarded-Host`, `example.com`, `example.org`)", ERR),
    (MATCHER, "v3", "HeaderRegexp(`X-Forwarded-Proto`, `^https?$`)",
     [(hd({"X-Forwarded-Proto": ["http"]}), True), (hd({"x-forwarded-proto": ["http"]}), False),
      (hd({"X-Forwarded-Proto": ["https"]}), True), (hd({"X-Forwarded-Proto": ["HTTPS"]}), False),
      (hd({"X-Forwarded-Proto": ["ws", "https"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    (MATCHER, "v3", "HeaderRegexp(`x-forwarded-proto`, `^https?$`)",
     [(hd({"X-Forwarded-Proto": ["http"]}), True), (hd({"x-forwarded-proto": ["http"]}), False),
      (hd({"X-Forwarded-Proto": ["https"]}), True), (hd({"X-Forwarded-Proto": ["HTTPS"]}), False),
      (hd({"X-Forwarded-Proto": ["ws", "https"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    (MATCHER, "v3", "HeaderRegexp(`X-Forwarded-Proto`, `http{secure:s?}`)",
     [(hd({"X-Forwarded-Proto": ["http"]}), False), (hd({"X-Forwarded-Proto": ["https"]}), False),
      (hd({"X-Forwarded-Proto": ["http{secure:}"]}), True),
      (hd({"X-Forwarded-Proto": ["HTTP{secure:}"]}), False),
      (hd({"X-Forwarded-Proto": ["http{secure:s}"]}), True),
      (hd({"X-Forwarded-Proto": ["http{secure:S}"]}), False),
      (hd({"X-Forwarded-Proto": ["HTTPS"]}), False),
      (hd({"X-Forwarded-Proto": ["ws", "http{secure:s}"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    # -- matcher_test.go, TestQueryMatcher ---------------------------------------------------
    (MATCHER, "v3", "Query()", ERR),
    (MATCHER, "v3", "Query(``)", ERR),
    (MATCHER, "v3", "Query(``, `traefik`)", ERR),
    (MATCHER, "v3", "Query(`q`, ``)", ERR),
    (MATCHER, "v3", "Query(`q`, `traefik`, `proxy`)", ERR),
    (MATCHER, "v3", "Query(`q`, `traefik`)",
     [(u("https://example.com"), False), (u("https://example.com?q=traefik"), True),
      (u("https://example.com?rel=ddg&q=traefik"), True),
      (u("https://example.com?q=traefik&q=proxy"), True),
      (u("https://example.com?q=awesome&q=traefik"), True),
      (u("https://example.com?q=nginx"), False), (u("https://example.com?rel=ddg"), False),
      (u("https://example.com?q=TRAEFIK"), False), (u("https://example.com?Q=traefik"), False),
      (u("https://example.com?rel=traefik"), False)]),
    (MATCHER, "v3", "Query(`mobile`)",
     [(u("https://example.com"), False), (u("https://example.com?mobile"), True),
      (u("https://example.com?mobile=true"), False)]),
    # -- matcher_test.go, TestQueryRegexpMatcher ---------------------------------------------
    (MATCHER, "v3", "QueryRegexp()", ERR),
    (MATCHER, "v3", "QueryRegexp(``)", ERR),
    (MATCHER, "v3", "QueryRegexp(`q`, `(traefik`)", ERR),
    (MATCHER, "v3", "QueryRegexp(`q`, `traefik`, `proxy`)", ERR),
    (MATCHER, "v3", "QueryRegexp(`q`, `^(traefik|nginx)$`)",
     [(u("https://example.com"), False), (u("https://example.com?q=traefik"), True),
      (u("https://example.com?rel=ddg&q=traefik"), True),
      (u("https://example.com?q=traefik&q=proxy"), True),
      (u("https://example.com?q=awesome&q=traefik"), True),
      (u("https://example.com?q=TRAEFIK"), False), (u("https://example.com?Q=traefik"), False),
      (u("https://example.com?rel=traefik"), False), (u("https://example.com?q=nginx"), True),
      (u("https://example.com?rel=ddg&q=nginx"), True),
      (u("https://example.com?q=nginx&q=proxy"), True),
      (u("https://example.com?q=awesome&q=nginx"), True),
      (u("https://example.com?q=NGINX"), False), (u("https://example.com?Q=nginx"), False),
      (u("https://example.com?rel=nginx"), False), (u("https://example.com?q=haproxy"), False),
      (u("https://example.com?rel=ddg"), False)]),
    (MATCHER, "v3", "QueryRegexp(`q`, `^.*$`)",
     [(u("https://example.com"), False), (u("https://example.com?q=traefik"), True),
      (u("https://example.com?rel=ddg&q=traefik"), True),
      (u("https://example.com?q=traefik&q=proxy"), True),
      (u("https://example.com?q=awesome&q=traefik"), True),
      (u("https://example.com?q=TRAEFIK"), True), (u("https://example.com?Q=traefik"), False),
      (u("https://example.com?rel=traefik"), False), (u("https://example.com?q=nginx"), True),
      (u("https://example.com?rel=ddg&q=nginx"), True),
      (u("https://example.com?q=nginx&q=proxy"), True),
      (u("https://example.com?q=awesome&q=nginx"), True),
      (u("https://example.com?q=NGINX"), True), (u("https://example.com?Q=nginx"), False),
      (u("https://example.com?rel=nginx"), False), (u("https://example.com?q=haproxy"), True),
      (u("https://example.com?rel=ddg"), False)]),
    (MATCHER, "v3", "QueryRegexp(`q`, `{value:(traefik|nginx)}`)",
     [(u("https://example.com?q=traefik"), False),
      (u("https://example.com?q={value:traefik}"), True)]),
    # -- mux_test.go, TestMuxer ----------------------------------------------------------------
    (MUX, "v3", "", ERR),
    (MUX, "v3", "rulewithnotmatcher", ERR),
    (MUX, "v3", "Host(example.com)", ERR),
    (MUX, "v3", "Host(`127.0.0.1`)", [(u("http://127.0.0.1/foo"), True)]),
    (MUX, "v3", "Host(`10::10`)", [(u("http://10::10/foo"), True)]),
    (MUX, "v3", "Host(`localhost`) && PathPrefix(`/css`)",
     [(u("https://localhost/css"), True), (u("https://localhost/js"), False)]),
    (MUX, "v3", "Host(`example.com`) || Host(`example.org`)",
     [(u("https://example.com/css"), True), (u("https://example.org/js"), True),
      (u("https://example.eu/html"), False)]),
    (MUX, "v3", 'Host("example.com") || (Host("example.org") && Path("/css"))',
     [(u("https://example.com/css"), True), (u("https://example.com/js"), True),
      (u("https://example.org/css"), True), (u("https://example.org/js"), False),
      (u("https://example.eu/css"), False)]),
    (MUX, "v3", 'Host("example.com") || Host("example.org") && Path("/css")',
     [(u("https://example.com/css"), True), (u("https://example.com/js"), True),
      (u("https://example.org/css"), True), (u("https://example.org/js"), False),
      (u("https://example.eu/css"), False)]),
    (MUX, "v3", '(Host("example.com") || Host("example.org")) && Path("/css")',
     [(u("https://example.com/css"), True), (u("https://example.com/js"), False),
      (u("https://example.org/css"), True), (u("https://example.org/js"), False),
      (u("https://example.eu/css"), False)]),
    (MUX, "v3", '(Host("example.com") && Path("/js")) || ((Host("example.org")) && Path("/css"))',
     [(u("https://example.com/css"), False), (u("https://example.com/js"), True),
      (u("https://example.org/css"), True), (u("https://example.org/js"), False),
      (u("https://example.eu/css"), False)]),
    (MUX, "v3", 'PATHPREFIX("/css")',
     [(u("https://example.com/css"), True), (u("https://example.com/js"), False)]),
    (MUX, "v3", 'pathprefix("/css")',
     [(u("https://example.com/css"), True), (u("https://example.com/js"), False)]),
    (MUX, "v3", 'PathPrefix("/css")',
     [(u("https://example.com/css"), True), (u("https://example.com/js"), False)]),
    (MUX, "v3", 'Pathprefix("/css")',
     [(u("https://example.com/css"), True), (u("https://example.com/js"), False)]),
    (MUX, "v3", '!Host("example.com")',
     [(u("https://example.org"), True), (u("https://example.com"), False)]),
    (MUX, "v3", '!(Host("example.com") || Host("example.org"))',
     [(u("https://example.eu/js"), True), (u("https://example.com/css"), False),
      (u("https://example.org/js"), False)]),
    (MUX, "v3", '!(Host("example.com") && Path("/css"))',
     [(u("https://example.com/js"), True), (u("https://example.eu/css"), True),
      (u("https://example.com/css"), False)]),
    (MUX, "v3", '!(Host("example.com") && !Path("/css"))',
     [(u("https://example.com/css"), True), (u("https://example.org/css"), True),
      (u("https://example.com/js"), False)]),
    (MUX, "v3", '!Host("example.com") || !Path("/css")',
     [(u("https://example.com/js"), True), (u("https://example.org/css"), True),
      (u("https://example.com/css"), False)]),
    (MUX, "v3", '!(!(Host("example.com") && Pathprefix("/css")))',
     [(u("https://example.com/css"), True), (u("https://example.com/js"), False),
      (u("https://example.org/css"), False)]),
    (MUX, "v3", '!Host("example.com") && Pathprefix("/css")',
     [(u("https://example.org/css"), True), (u("https://example.org/js"), False),
      (u("https://example.com/css"), False), (u("https://example.com/js"), False)]),
    (MUX, "v3", '!(Host("example.com") && Path("/js"))',
     [(u("https://example.com/js"), False), (u("https://example.com/html"), True),
      (u("https://example.org/js"), True), (u("https://example.com/css"), True),
      (u("https://example.org/css"), True), (u("https://example.org/html"), True),
      (u("https://example.eu/images"), True)]),
    # -- mux_test.go, TestParseDomains (rules refused or accepted) -----------------------------
    (MUX, "v3", "Foobar(`foo.bar`,`test.bar`)", ERR),
    # -- matcher_v2_test.go, TestClientIPV2Matcher (ruleSyntax v2 from here on) --------------
    (V2, "v2", "ClientIP(`1`)", ERR),
    (V2, "v2", "ClientIP()", ERR),
    (V2, "v2", "ClientIP(``)", ERR),
    (V2, "v2", "ClientIP(`127.0.0.1`, `192.168.1.0/24`)",
     [(ip("127.0.0.1"), True), (ip("192.168.1.1"), True)]),
    (V2, "v2", "ClientIP(`127.0.0.1`)",
     [(ip("127.0.0.1"), True), (ip("192.168.1.1"), False), (ip("1"), False)]),
    (V2, "v2", "ClientIP(`192.168.1.0/24`)",
     [(ip("192.168.1.1"), True), (ip("192.168.1.100"), True), (ip("192.168.2.1"), False)]),
    # -- matcher_v2_test.go, TestMethodV2Matcher -----------------------------------------------
    (V2, "v2", "Method()", ERR),
    (V2, "v2", "Method(``)", ERR),
    (V2, "v2", "Method(`GET`, `POST`)", [(m("GET"), True), (m("POST"), True)]),
    (V2, "v2", "Method(`GET`)", [(m("GET"), True), (m("POST"), False), (m("get"), False)]),
    (V2, "v2", "Method(`get`)", [(m("GET"), True), (m("POST"), False), (m("get"), False)]),
    # -- matcher_v2_test.go, TestHostV2Matcher -------------------------------------------------
    (V2, "v2", "Host()", ERR),
    (V2, "v2", "Host(``)", ERR),
    (V2, "v2", "Host(`🦭.com`)", ERR),
    (V2, "v2", "Host(`example.com`, `example.org`)",
     [(u("https://example.com"), True), (u("https://example.com:8080"), True),
      (u("https://example.com/path"), True), (u("https://EXAMPLE.COM/path"), True),
      (u("https://example.org"), True), (u("https://example.org/path"), True)]),
    (V2, "v2", "Host(`example.com`)",
     [(u("https://example.com"), True), (u("https://example.com:8080"), True),
      (u("https://example.com/path"), True), (u("https://EXAMPLE.COM/path"), True),
      (u("https://example.org"), False), (u("https://example.org/path"), False),
      (u("https://example.com."), True), (u("https://example.com./path"), True),
      (u("https://example.org."), False), (u("https://example.org./path"), False)]),
    (V2, "v2", "Host(`example.com.`)",
     [(u("https://example.com"), True), (u("https://example.com/path"), True),
      (u("https://example.org"), False), (u("https://example.org/path"), False),
      (u("https://example.com."), True), (u("https://example.com./path"), True),
      (u("https://example.org."), False), (u("https://example.org./path"), False)]),
    (V2, "v2", "Host(`EXAMPLE.COM`)",
     [(u("https://example.com"), True), (u("https://example.com/path"), True),
      (u("https://example.org"), False), (u("https://example.org/path"), False)]),
    (V2, "v2", "Host(`xn--9t9h.com`)",
     [(u("https://xn--9t9h.com"), True), (u("https://xn--9t9h.com/path"), True),
      (u("https://example.com"), False), (u("https://example.com/path"), False),
      (u("https://🦭.com"), False)]),
    # -- matcher_v2_test.go, TestHostRegexpV2Matcher -------------------------------------------
    (V2, "v2", "HostRegexp()", ERR),
    (V2, "v2", "HostRegexp(``)", ERR),
    (V2, "v2", "HostRegexp(`🦭.com`)", ERR),
    (V2, "v2", "HostRegexp(`(example.com`)",  # Traefik's comment: "This is weird."
     [(u("https://example.com"), False), (u("https://example.com:8080"), False),
      (u("https://example.com/path"), False), (u("https://example.org"), False),
      (u("https://example.org/path"), False)]),
    (V2, "v2", "HostRegexp(`example.com`, `example.org`)",
     [(u("https://example.com"), True), (u("https://example.com:8080"), True),
      (u("https://example.com/path"), True), (u("https://example.org"), True),
      (u("https://example.org/path"), True)]),
    (V2, "v2", "HostRegexp(`^[A-Z]+\\.com$`)",
     [(u("https://example.com"), False), (u("https://EXAMPLE.com"), False),
      (u("https://example.com/path"), False), (u("https://example.org"), False),
      (u("https://example.org/path"), False)]),
    (V2, "v2", "HostRegexp(`{domain:[a-zA-Z-]+\\.com}`)",
     [(u("https://example.com"), True), (u("https://example.com/path"), True),
      (u("https://example.org"), False), (u("https://example.org/path"), False)]),
    # -- matcher_v2_test.go, TestPathV2Matcher -------------------------------------------------
    (V2, "v2", "Path()", ERR),
    (V2, "v2", "Path(``)", ERR),
    (V2, "v2", "Path(`css`)", ERR),
    (V2, "v2", "Path(`/css`, `/js`)",
     [(u("https://example.com"), False), (u("https://example.com/html"), False),
      (u("https://example.org/css"), True), (u("https://example.com/css"), True),
      (u("https://example.com/css/"), False), (u("https://example.com/css/main.css"), False),
      (u("https://example.com/js"), True), (u("https://example.com/js/main.js"), False)]),
    (V2, "v2", "Path(`/css`)",
     [(u("https://example.com"), False), (u("https://example.com/html"), False),
      (u("https://example.org/css"), True), (u("https://example.com/css"), True),
      (u("https://example.com/css/"), False), (u("https://example.com/css/main.css"), False)]),
    (V2, "v2", "Path(`/css{path:(/.*)?}`)",
     [(u("https://example.com"), False), (u("https://example.com/css/main.css"), True),
      (u("https://example.org/css/main.css"), True),
      (u("https://example.com/css/components/component.css"), True),
      (u("https://example.com/css.css"), False), (u("https://example.com/js/main.js"), False)]),
    # -- matcher_v2_test.go, TestPathPrefixV2Matcher -------------------------------------------
    (V2, "v2", "PathPrefix()", ERR),
    (V2, "v2", "PathPrefix(``)", ERR),
    (V2, "v2", "PathPrefix(`css`)", ERR),
    (V2, "v2", "PathPrefix(`/css`, `/js`)",
     [(u("https://example.com"), False), (u("https://example.com/html"), False),
      (u("https://example.org/css"), True), (u("https://example.com/css"), True),
      (u("https://example.com/css/"), True), (u("https://example.com/css/main.css"), True),
      (u("https://example.com/js/"), True), (u("https://example.com/js/main.js"), True)]),
    (V2, "v2", 'PathPrefix("/css")',
     [(u("https://example.com"), False), (u("https://example.com/html"), False),
      (u("https://example.org/css"), True), (u("https://example.com/css"), True),
      (u("https://example.com/css/"), True), (u("https://example.com/css/main.css"), True)]),
    (V2, "v2", "PathPrefix(`/css-{name:[0-9]?}`)",
     [(u("https://example.com"), False), (u("https://example.com/css-1/main.css"), True),
      (u("https://example.org/css-222/main.css"), True),
      (u("https://example.com/css-333333/components/component.css"), True),
      (u("https://example.com/css.css"), False), (u("https://example.com/js/main.js"), False)]),
    # -- matcher_v2_test.go, TestHeadersMatcher ------------------------------------------------
    (V2, "v2", "Headers()", ERR),
    (V2, "v2", "Headers(`X-Forwarded-Host`)", ERR),
    (V2, "v2", "Headers(`X-Forwarded-Host`, ``)", ERR),
    (V2, "v2", "Headers(``, `example.com`)", ERR),
    (V2, "v2", "Headers(`X-Forwarded-Host`, `example.com`, `example.org`)", ERR),
    (V2, "v2", "Headers(`X-Forwarded-Proto`, `https`)",
     [(hd({"X-Forwarded-Proto": ["https"]}), True),
      (hd({"x-forwarded-proto": ["https"]}), False),
      (hd({"X-Forwarded-Proto": ["http", "https"]}), True),
      (hd({"X-Forwarded-Proto": ["https", "http"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    (V2, "v2", "Headers(`x-forwarded-proto`, `https`)",
     [(hd({"X-Forwarded-Proto": ["https"]}), True),
      (hd({"x-forwarded-proto": ["https"]}), False),
      (hd({"X-Forwarded-Proto": ["http", "https"]}), True),
      (hd({"X-Forwarded-Proto": ["https", "http"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    # -- matcher_v2_test.go, TestHeaderRegexpV2Matcher -----------------------------------------
    (V2, "v2", "HeaderRegexp()", ERR),
    (V2, "v2", "HeadersRegexp(`X-Forwarded-Host`)", ERR),
    (V2, "v2", "HeadersRegexp(`X-Forwarded-Host`, ``)", ERR),
    (V2, "v2", "HeadersRegexp(``, `example.com`)", ERR),
    (V2, "v2", "HeadersRegexp(`X-Forwarded-Host`,`(example.com`)", ERR),
    (V2, "v2", "HeadersRegexp(`X-Forwarded-Host`, `example.com`, `example.org`)", ERR),
    (V2, "v2", "HeadersRegexp(`X-Forwarded-Proto`, `^https?$`)",
     [(hd({"X-Forwarded-Proto": ["http"]}), True), (hd({"x-forwarded-proto": ["http"]}), False),
      (hd({"X-Forwarded-Proto": ["https"]}), True), (hd({"X-Forwarded-Proto": ["HTTPS"]}), False),
      (hd({"X-Forwarded-Proto": ["ws", "https"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    (V2, "v2", "HeadersRegexp(`x-forwarded-proto`, `^https?$`)",
     [(hd({"X-Forwarded-Proto": ["http"]}), True), (hd({"x-forwarded-proto": ["http"]}), False),
      (hd({"X-Forwarded-Proto": ["https"]}), True), (hd({"X-Forwarded-Proto": ["HTTPS"]}), False),
      (hd({"X-Forwarded-Proto": ["ws", "https"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    (V2, "v2", "HeadersRegexp(`X-Forwarded-Proto`, `http{secure:s?}`)",
     [(hd({"X-Forwarded-Proto": ["http"]}), False), (hd({"X-Forwarded-Proto": ["https"]}), False),
      (hd({"X-Forwarded-Proto": ["http{secure:}"]}), True),
      (hd({"X-Forwarded-Proto": ["HTTP{secure:}"]}), False),
      (hd({"X-Forwarded-Proto": ["http{secure:s}"]}), True),
      (hd({"X-Forwarded-Proto": ["http{secure:S}"]}), False),
      (hd({"X-Forwarded-Proto": ["HTTPS"]}), False),
      (hd({"X-Forwarded-Proto": ["ws", "http{secure:s}"]}), True),
      (hd({"X-Forwarded-Host": ["example.com"]}), False)]),
    # -- matcher_v2_test.go, TestHostRegexp ----------------------------------------------------
    (V2, "v2", "HostRegexp(`{subdomain:(foo\\.)?bar\\.com}`)",
     [(u("http://foo.bar.com"), True), (u("http://bar.com"), True),
      (u("http://fooubar.com"), False), (u("http://barucom"), False),
      (u("http://barcom"), False)]),
    (V2, "v2", "HostRegexp(`{subdomain:(?:foo\\.)?bar\\.com}`)",
     [(u("http://foo.bar.com"), True), (u("http://bar.com"), True),
      (u("http://fooubar.com"), False), (u("http://barucom"), False),
      (u("http://barcom"), False)]),
    (V2, "v2", "HostRegexp(`{dummy:[A-Za-z-]+\\.bar\\.com}`)",
     [(u("http://FOO.bar.com"), True), (u("http://foo.bar.com"), True),
      (u("http://fooubar.com"), False), (u("http://barucom"), False),
      (u("http://barcom"), False)]),
    (V2, "v2", "HostRegexp(`{dummy:[a-z-]+\\.bar\\.com}`)",
     [(u("http://FOO.bar.com"), True), (u("http://foo.bar.com"), True),
      (u("http://fooubar.com"), False), (u("http://barucom"), False),
      (u("http://barcom"), False)]),
    (V2, "v2", "HostRegexp(`foo.bar.com`)",
     [(u("http://FOO.bar.com"), True), (u("http://foo.bar.com"), True),
      (u("http://fooubar.com"), False), (u("http://barucom"), False),
      (u("http://barcom"), False)]),
    # -- matcher_v2_test.go, Test_addRoute (Traefik 2's mux_test.go, in v2 syntax) -----------
    (V2, "v2", "", ERR),
    (V2, "v2", "rulewithnotmatcher", ERR),
    (V2, "v2", "Host(``)", ERR),
    (V2, "v2", "PathPrefix(``)", ERR),
    (V2, "v2", "PathPrefix(`/foo`)", [(u("http://localhost/foo"), True)]),
    (V2, "v2", "PathPrefix(`/bar`)", [(u("http://localhost/foo"), False)]),
    (V2, "v2", "Host(`localhost`)", [(u("http://localhost/foo"), True)]),
    (V2, "v2", "Host(`127.0.0.1`)", [(u("http://127.0.0.1/foo"), True)]),
    (V2, "v2", "Host(`10::10`)", [(u("http://10::10/foo"), True)]),
    (V2, "v2", "Host(`locàlhost`)", ERR),
    (V2, "v2", "HostRegexp(`locàlhost`)", ERR),
    (V2, "v2", "HostHeader(`localhost`)",
     [(u("http://localhost/foo"), True), (u("http://bar/foo"), False)]),
    (V2, "v2", "Host(`localhost.`)",
     [(u("http://localhost/foo"), True), (u("http://localhost./foo"), True)]),
    (V2, "v2", "Host(`nope`)", [(u("http://localhost/foo"), False)]),
    (V2, "v2", "Host(`localhost`) && PathPrefix(`/foo`)", [(u("http://localhost/foo"), True)]),
    (V2, "v2", "Host(`localhost`) && PathPrefix(`/bar`)", [(u("http://localhost/foo"), False)]),
    (V2, "v2", "Host(`nope`) && PathPrefix(`/foo`)", [(u("http://localhost/foo"), False)]),
    (V2, "v2", "Host(`nope`,`localhost`) && PathPrefix(`/foo`)",
     [(u("http://localhost/foo"), True), (u("http://nope/foo"), True)]),
    (V2, "v2", "Host(`nope,localhost`) && PathPrefix(`/bar`)",
     [(u("http://localhost/foo"), False)]),
    (V2, "v2", "Method(`GET`)", [(u("http://localhost/foo"), True)]),
    (V2, "v2", "Method(`GET`,`POST`)", [(u("http://localhost/foo"), True)]),
    (V2, "v2", "Method(`POST`)", [(u("http://localhost/foo"), False)]),
    (V2, "v2", "Headers(`Content-Type`,`application/json`)",
     [(hd({"Content-Type": ["application/json"]}, "http://localhost/foo"), True)]),
    (V2, "v2", "Headers(`Content-Type`,`application/foo`)",
     [(hd({"Content-Type": ["application/json"]}, "http://localhost/foo"), False)]),
    (V2, "v2", "HeadersRegexp(`Content-Type`, `application/(text|json)`)",
     [(hd({"Content-Type": ["application/json"]}, "http://localhost/foo"), True),
      (hd({"Content-Type": ["application/foo"]}, "http://localhost/foo"), False),
      (hd({"Content-Type": ["application/text"]}, "http://localhost/foo"), True)]),
    (V2, "v2", "Query(`foo=bar`, `bar=baz`)",
     [(u("http://localhost/foo?foo=bar&bar=baz"), True),
      (u("http://localhost/foo?bar=baz"), False)]),
    (V2, "v2", "Query(`foo=b=ar`)",
     [(u("http://localhost/foo?foo=b=ar"), True), (u("http://localhost/foo?foo=bar"), False)]),
    (V2, "v2", 'Path("/a")', [(u("http://plop/a"), True)]),
    (V2, "v2", 'Host("plop")', [(u("http://plop"), True)]),
    (V2, "v2", 'Path("/a") && Host("plop")',
     [(u("http://plop/a"), True), (u("http://plopi/a"), False)]),
    (V2, "v2", 'Host("tchouk") || Host("pouet")',
     [(u("http://tchouk/toto"), True), (u("http://pouet/a"), True), (u("http://plopi/a"), False)]),
    (V2, "v2", 'Host("tchouk") || (Host("pouet") && Path("/powpow"))',
     [(u("http://tchouk/toto"), True), (u("http://tchouk/powpow"), True),
      (u("http://pouet/powpow"), True), (u("http://pouet/toto"), False),
      (u("http://plopi/a"), False)]),
    (V2, "v2", 'Host("tchouk") || Host("pouet") && Path("/powpow")',
     [(u("http://tchouk/toto"), True), (u("http://tchouk/powpow"), True),
      (u("http://pouet/powpow"), True), (u("http://pouet/toto"), False),
      (u("http://plopi/a"), False)]),
    (V2, "v2", '(Host("tchouk") || Host("pouet")) && Path("/powpow")',
     [(u("http://tchouk/toto"), False), (u("http://tchouk/powpow"), True),
      (u("http://pouet/powpow"), True), (u("http://pouet/toto"), False),
      (u("http://plopi/a"), False)]),
    (V2, "v2", '(Host("tchouk","pouet")) && Path("/powpow")',
     [(u("http://tchouk/toto"), False), (u("http://tchouk/powpow"), True),
      (u("http://pouet/powpow"), True), (u("http://pouet/toto"), False),
      (u("http://plopi/a"), False)]),
    (V2, "v2", 'Host("tchouk","pouet") && Path("/powpow", "/titi")',
     [(u("http://tchouk/toto"), False), (u("http://tchouk/powpow"), True),
      (u("http://pouet/powpow"), True), (u("http://tchouk/titi"), True),
      (u("http://pouet/titi"), True), (u("http://pouet/toto"), False),
      (u("http://plopi/a"), False)]),
    (V2, "v2", '(Host("tchouk") && Path("/titi")) || ((Host("pouet")) && Path("/powpow"))',
     [(u("http://tchouk/titi"), True), (u("http://tchouk/powpow"), False),
      (u("http://pouet/powpow"), True), (u("http://pouet/toto"), False),
      (u("http://plopi/a"), False)]),
    (V2, "v2", "Host(tchouk)", ERR),
    (V2, "v2", '(HOST("tchouk") && PATHPREFIX("/titi"))',
     [(u("http://tchouk/titi"), True), (u("http://tchouk/powpow"), False)]),
    (V2, "v2", '(host("tchouk") && pathprefix("/titi"))',
     [(u("http://tchouk/titi"), True), (u("http://tchouk/powpow"), False)]),
    (V2, "v2", '(Host("tchouk") && PathPrefix("/titi"))',
     [(u("http://tchouk/titi"), True), (u("http://tchouk/powpow"), False)]),
    (V2, "v2", '(Host("tchouk") && Pathprefix("/titi"))',
     [(u("http://tchouk/titi"), True), (u("http://tchouk/powpow"), False)]),
    (V2, "v2", 'Path("titi")', ERR),
    (V2, "v2", 'PathPrefix("titi")', ERR),
    (V2, "v2", 'HostRegexp("{test")', ERR),
    (V2, "v2", 'Headers("titi")', ERR),
    (V2, "v2", 'HeadersRegexp("titi")', ERR),
    (V2, "v2", 'Query("titi")', ERR),
    (V2, "v2", 'Query("titi={test")', ERR),
    (V2, "v2", 'Host("tchouk") && Path()', ERR),
    (V2, "v2", 'Host("tchouk") && Path("")', ERR),
    (V2, "v2", 'Host("tchouk") && Path("", "/titi")', ERR),
    (V2, "v2", '!Host("tchouk")',
     [(u("http://tchouk/titi"), False), (u("http://test/powpow"), True)]),
    (V2, "v2", '!Path("/titi")',
     [(u("http://tchouk/titi"), False), (u("http://tchouk/powpow"), True)]),
    (V2, "v2", '!(Host("tchouk") || Host("toto"))',
     [(u("http://tchouk/titi"), False), (u("http://toto/powpow"), False),
      (u("http://test/powpow"), True)]),
    (V2, "v2", '!(Host("tchouk") && Path("/titi"))',
     [(u("http://tchouk/titi"), False), (u("http://tchouk/toto"), True),
      (u("http://test/titi"), True)]),
    (V2, "v2", '!(Host("tchouk") && !Path("/titi"))',
     [(u("http://tchouk/titi"), True), (u("http://toto/titi"), True),
      (u("http://tchouk/toto"), False)]),
    (V2, "v2", '!Host("tchouk") || !Path("/titi")',
     [(u("http://tchouk/titi"), False), (u("http://tchouk/toto"), True),
      (u("http://test/titi"), True)]),
    (V2, "v2", '!(!(Host("tchouk") && Pathprefix("/titi")))',
     [(u("http://tchouk/titi"), True), (u("http://tchouk/powpow"), False),
      (u("http://test/titi"), False)]),
    (V2, "v2", '!Host("tchouk") && Pathprefix("/titi")',
     [(u("http://tchouk/titi"), False), (u("http://tchouk/powpow"), False),
      (u("http://toto/powpow"), False), (u("http://toto/titi"), True)]),
    (V2, "v2", '!(Host("tchouk","pouet") && Path("/powpow", "/titi"))',
     [(u("http://tchouk/toto"), True), (u("http://tchouk/powpow"), False),
      (u("http://pouet/powpow"), False), (u("http://tchouk/titi"), False),
      (u("http://pouet/titi"), False), (u("http://pouet/toto"), True),
      (u("http://plopi/a"), True)]),
    (V2, "v2", "ClientIP(``)", ERR),
    (V2, "v2", "ClientIP(`invalid`)", ERR),
    (V2, "v2", "ClientIP(`10.10.1.1`)", [(R("http://tchouk/toto", remote="10.0.0.0"), False)]),
    (V2, "v2", "ClientIP(`10::10`)",
     [(R("http://tchouk/toto", remote="::1"), False),
      (R("http://tchouk/toto", remote="10::10"), True)]),
    (V2, "v2", "ClientIP(`10.0.0.0`)", [(R("http://tchouk/toto", remote="10.0.0.0:8456"), True)]),
    (V2, "v2", "ClientIP(`10.0.0.1`, `10.0.0.0`)",
     [(R("http://tchouk/toto", remote="10.0.0.0"), True)]),
    (V2, "v2", "ClientIP(`11.0.0.0/24`)", [(R("http://tchouk/toto", remote="10.0.0.0"), False)]),
    (V2, "v2", "ClientIP(`11::/16`)", [(R("http://tchouk/toto", remote="10::"), False)]),
    (V2, "v2", "ClientIP(`10.0.0.0/16`)", [(R("http://tchouk/toto", remote="10.0.0.0"), True)]),
    (V2, "v2", "ClientIP(`10::/16`)", [(R("http://tchouk/toto", remote="10::10"), True)]),
    (V2, "v2", "ClientIP(`11.0.0.0/16`, `10.0.0.0/16`)",
     [(R("http://tchouk/toto", remote="10.0.0.0"), True)]),
    (V2, "v2", "ClientIP(`11.0.0.0/16`, `10.0.0.0`)",
     [(R("http://tchouk/toto", remote="10.0.0.0"), True)]),
    (V2, "v2", "ClientIP(`11.0.0.0`, `10.0.0.0/16`)",
     [(R("http://tchouk/toto", remote="10.0.0.0"), True)]),
    # -- parser_test.go, TestRuleMatch: its generic matcher `m` takes any number of values,
    # as v2's Host does, which stands in for it here ----------------------------------------
    (PARSER, "v2", "", ERR),
    (PARSER, "v2", "Host", ERR),
    (PARSER, "v2", "Host()", ERR),
    (PARSER, "v2", "Host(``)", ERR),
    (PARSER, "v2", "Host(`1`) &&", ERR),
    (PARSER, "v2", "Host(`1`) ||", ERR),
    (PARSER, "v2", "Host(`1)", ERR),
    (PARSER, "v2", "Host(`1`))", ERR),
    (PARSER, "v2", "(Host(`1`)", ERR),
    (PARSER, "v2", "Host(`1`)", [(u("http://1/"), True), (u("http://2/"), False)]),
    (PARSER, "v2", "(Host(`1`))", [(u("http://1/"), True)]),
    (PARSER, "v2", "HOST(`1`)", [(u("http://1/"), True)]),
    (PARSER, "v2", "Wost(`1`)", ERR),
    (PARSER, "v2", "Host(`1`, `2`)", [(u("http://1/"), True), (u("http://2/"), True)]),
    (PARSER, "v2", "!Host(`1`)", [(u("http://1/"), False), (u("http://2/"), True)]),
    (PARSER, "v2", "Host(`1`) && Host(`2`)", [(u("http://1/"), False)]),
    (PARSER, "v2", "Host(`1`) || Host(`2`)", [(u("http://1/"), True), (u("http://2/"), True)]),
    (PARSER, "v2", "!(Host(`1`) && Host(`2`))", [(u("http://1/"), True)]),
    (PARSER, "v2", "!(Host(`1`) || Host(`2`))", [(u("http://1/"), False), (u("http://3/"), True)]),
    (PARSER, "v2", "Host(`1`) && Host()", ERR),
]


# Cases where kade differs from Traefik on purpose: (syntax, rule, request or None for
# the parse) → the reason. The test asserts kade's behaviour, the opposite of Traefik's.
_RAW_HEADER_MAP = ("Traefik's test puts a lower-case key straight into Go's header map, which "
                   "no request on the wire can do (Go's server canonicalizes header names); "
                   "kade compares header names without regard to case, as HTTP defines them")
DIFFERENCES: dict[tuple[str, str, str | None], str] = {
    (syntax, rule, f"x-forwarded-proto: {value}"): _RAW_HEADER_MAP
    for syntax, rule, value in [
        ("v3", "Header(`X-Forwarded-Proto`, `https`)", "https"),
        ("v3", "Header(`x-forwarded-proto`, `https`)", "https"),
        ("v3", "HeaderRegexp(`X-Forwarded-Proto`, `^https?$`)", "http"),
        ("v3", "HeaderRegexp(`x-forwarded-proto`, `^https?$`)", "http"),
        ("v2", "Headers(`X-Forwarded-Proto`, `https`)", "https"),
        ("v2", "Headers(`x-forwarded-proto`, `https`)", "https"),
        ("v2", "HeadersRegexp(`X-Forwarded-Proto`, `^https?$`)", "http"),
        ("v2", "HeadersRegexp(`x-forwarded-proto`, `^https?$`)", "http"),
    ]
}


def _checks() -> list[tuple[str, str, str, R | None, bool]]:
    """Every case as (source, syntax, rule, request or None for the parse, Traefik's answer)."""
    out: list[tuple[str, str, str, R | None, bool]] = []
    for source, syntax, rule, expected in CASES:
        out.append((source, syntax, rule, None, expected != ERR))
        if expected != ERR:
            out += [(source, syntax, rule, req, match) for req, match in expected]
    return out


CHECKS = _checks()


def _kade(syntax: str, rule: str, req: R | None) -> bool:
    """kade's answer: whether the rule is accepted (req None), or whether it matches `req`."""
    try:
        parsed = parse_rule(rule, syntax)
    except RuleError:
        return False
    return True if req is None else parsed.match(exchange(req))


def _key(syntax: str, rule: str, req: R | None) -> tuple[str, str, str | None]:
    return syntax, rule, None if req is None else str(req)


@pytest.mark.parametrize(("source", "syntax", "rule", "req", "traefik"), CHECKS,
                         ids=[f"{c[1]}:{c[2]}:{c[3] or 'parse'}" for c in CHECKS])
def test_traefik_case(source: str, syntax: str, rule: str, req: R | None,
                      traefik: bool) -> None:
    differs = DIFFERENCES.get(_key(syntax, rule, req))
    assert _kade(syntax, rule, req) is (traefik if differs is None else not traefik), source


def test_every_difference_is_a_case() -> None:
    keys = {_key(c[1], c[2], c[3]) for c in CHECKS}
    assert set(DIFFERENCES) <= keys


def test_agreement() -> None:
    agree = sum(_kade(s, rule, req) is traefik for _, s, rule, req, traefik in CHECKS)
    assert agree / len(CHECKS) >= 0.95, f"{agree} of {len(CHECKS)}"
    assert agree == len(CHECKS) - len(DIFFERENCES)


# -- mux_test.go, TestRoutingPath: what Path matchers compare -----------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("/foo%20bar", "/foo bar"),
    ("/foo%2Fbar", "/foo%2Fbar"),
    ("/foo%20bar%2Fbaz%23qux", "/foo bar%2Fbaz%23qux"),
])
def test_routing_path(raw: str, expected: str) -> None:
    assert routing_path(raw.encode()) == expected


# -- mux_test.go, Test_addRoutePriority: the longest rule, or the highest priority, wins ------


@pytest.mark.parametrize(("path", "routes", "expected"), [
    ("/my", [("header1", "PathPrefix(`/my`)", 10), ("header2", "PathPrefix(`/my`)", 20)],
     "header2"),
    ("/my", [("header1", "PathPrefix(`/my`)", 20), ("header2", "PathPrefix(`/my`)", 10)],
     "header1"),
    ("/mypath", [("header1", "PathPrefix(`/mypath`)", 10), ("header2", "PathPrefix(`/my`)", 20)],
     "header2"),
    ("/mypath", [("header1", "PathPrefix(`/mypath`)", 0), ("header2", "PathPrefix(`/my`)", 0)],
     "header1"),
    ("/mypath", [("header1", "PathPrefix(`/my`)", 0), ("header2", "PathPrefix(`/mypath`)", 0)],
     "header2"),
    ("/mypath", [("header1", "PathPrefix(`/my`)", 0), ("header2", "PathPrefix(`/mypa`)", 0),
                 ("header3", "PathPrefix(`/mypath`)", 0)], "header3"),
])
def test_priority(path: str, routes: list[tuple[str, str, int]], expected: str) -> None:
    table = compile_table(
        {"revision": 1,
         "routers": [{"name": n, "rule": rule, "priority": p, "service": "s"}
                     for n, rule, p in routes],
         "services": {"s": {"servers": [{"url": "http://127.0.0.1:1"}]}}},
        lambda url, task: Server(url, "127.0.0.1", 1, task), lambda r, s: Stats(r, s))
    route = table.find(exchange(u(f"http://localhost{path}")))
    assert route is not None and route.name == expected


# -- mux_test.go, TestEmptyHost: an absolute-form URL's authority is the host ----------------


@pytest.mark.parametrize(("target", "host_header", "rule", "matches"), [
    ("http://example.com/", "example.org", "HostRegexp(`example.com`)", True),
    ("http://example.com/", "example.org", "Host(`example.com`)", True),
    ("http://example.com/", "example.org", "HostRegexp(`example.org`)", False),
    ("http://example.com/", "example.org", "Host(`example.org`)", False),
])
def test_absolute_form_authority_is_the_host(target: str, host_header: str, rule: str,
                                             matches: bool) -> None:
    # the router's own steps (client.py): the URL's authority replaces the Host header
    authority, path = h.absolute_form(target.encode())
    assert authority is not None
    x = exchange(R(url=f"http://{authority.decode()}{path.decode()}"))
    assert parse_rule(rule).match(x) is matches


@pytest.mark.parametrize("rule", ["HostRegexp(`example.com`)", "Host(`example.com`)"])
def test_an_empty_authority_is_refused_not_routed_by_the_host_header(rule: str) -> None:
    # A difference (docs/routing.md): Traefik routes `GET http://@/` with `Host: example.com`
    # by its Host header (200); kade answers 400 to a target whose authority is empty or
    # carries user info, so that no request is routed by a host it does not name.
    assert parse_rule(rule).match(exchange(u("http://example.com/")))
    assert h.absolute_form(b"http://@/") == (None, b"")  # client.py answers 400 for None
