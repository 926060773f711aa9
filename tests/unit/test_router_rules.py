"""Traefik rule syntax: parsing, matching, errors with their column, host dispatch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kade.admission import ContainerPolicy, admit
from kade.router.balancer import Server
from kade.router.metrics import Stats
from kade.router.routes import Backend, build_table
from kade.router.rules import RuleError, check_rule, parse_rule, routing_path
from kade.router.table import compile_table
from kade.spec import AppSpec, SpecError, parse_app, spec_hash


@dataclass
class Req:
    host: str = "www.localhost"
    path: str = "/"
    method: str = "GET"
    client_ip: str = "127.0.0.1"
    headers: dict[str, list[str]] = field(default_factory=dict)
    params: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str) -> list[str]:
        return self.headers.get(name, [])

    def query(self, name: str) -> list[str] | None:
        return self.params.get(name)


MATCHES = [
    # (rule, request, expected)
    ("Host(`www.localhost`)", Req(), True),
    ("Host(`WWW.Localhost`)", Req(), True),  # case-insensitive
    ("Host(`www.localhost.`)", Req(), True),  # a trailing dot is the same name
    ("Host(`other.localhost`)", Req(), False),
    ('Host("www.localhost")', Req(), True),  # double quotes
    ("HostRegexp(`^[a-z]+\\.localhost$`)", Req(), True),
    ("HostRegexp(`^api\\.`)", Req(), False),
    ("HostRegexp(`localhost`)", Req(), True),  # searched, not anchored (Go's MatchString)
    ("Path(`/`)", Req(), True),
    ("Path(`/a`)", Req(path="/a/b"), False),
    ("PathPrefix(`/api`)", Req(path="/api/v1"), True),
    ("PathPrefix(`/api`)", Req(path="/ap"), False),
    ("PathRegexp(`\\.(png|jpg)$`)", Req(path="/img/x.png"), True),
    ("PathRegexp(`^/v[0-9]+/`)", Req(path="/api/v1/"), False),
    ("Method(`POST`)", Req(method="POST"), True),
    ("Method(`post`)", Req(method="POST"), True),
    ("Method(`GET`)", Req(method="POST"), False),
    ("Header(`X-Env`, `prod`)", Req(headers={"x-env": ["dev", "prod"]}), True),
    ("Header(`X-Env`, `prod`)", Req(headers={"x-env": ["production"]}), False),
    ("HeaderRegexp(`User-Agent`, `curl/`)", Req(headers={"user-agent": ["curl/8.0"]}), True),
    ("HeaderRegexp(`User-Agent`, `curl/`)", Req(), False),
    ("Query(`debug`)", Req(params={"debug": [""]}), True),
    ("Query(`debug`)", Req(), False),
    ("Query(`env`, `prod`)", Req(params={"env": ["prod"]}), True),
    ("Query(`env`, `prod`)", Req(params={"env": ["dev"]}), False),
    ("QueryRegexp(`id`, `^[0-9]+$`)", Req(params={"id": ["42"]}), True),
    ("ClientIP(`127.0.0.0/8`)", Req(), True),
    ("ClientIP(`10.0.0.0/8`)", Req(), False),
    ("ClientIP(`::1`)", Req(client_ip="::1"), True),
    # operators and precedence: && binds tighter than ||
    ("Host(`www.localhost`) && PathPrefix(`/api`)", Req(path="/api"), True),
    ("Host(`www.localhost`) && PathPrefix(`/api`)", Req(path="/web"), False),
    ("Host(`x`) || PathPrefix(`/api`)", Req(path="/api"), True),
    ("Host(`x`) || Host(`y`) && Path(`/`)", Req(host="x", path="/z"), True),
    ("(Host(`x`) || Host(`y`)) && Path(`/`)", Req(host="x", path="/z"), False),
    ("!Path(`/admin`)", Req(path="/admin"), False),
    ("!Path(`/admin`)", Req(path="/shop"), True),
    ("Host(`www.localhost`) && !(PathPrefix(`/a`) || PathPrefix(`/b`))", Req(path="/c"), True),
    ("!!Path(`/`)", Req(), True),
    ("  Host( `www.localhost` )  ", Req(), True),  # spaces
    ("Host(`a`)&&Path(`/`)||Path(`/x`)", Req(host="b", path="/x"), True),
    ('Header(`X-Q`, "a \\"b\\"")', Req(headers={"x-q": ['a "b"']}), True),  # escapes
]


@pytest.mark.parametrize(("rule", "req", "expected"), MATCHES, ids=[m[0] for m in MATCHES])
def test_match(rule: str, req: Req, expected: bool) -> None:
    assert parse_rule(rule).match(req) is expected


V2_MATCHES = [
    # (rule in v2 syntax, request, expected): several values, v2 names, templates
    ("Host(`a.localhost`, `www.localhost`)", Req(), True),
    ("HostHeader(`www.localhost`)", Req(), True),
    ("PathPrefix(`/a`, `/b`)", Req(path="/b/c"), True),
    ("Headers(`X-Env`, `prod`)", Req(headers={"x-env": ["prod"]}), True),
    ("Headers(`X-Env`, `prod`, `X-Tier`, `gold`)", Req(headers={"x-env": ["prod"]}), False),
    ("ClientIP(`10.0.0.1`, `192.168.0.0/16`)", Req(client_ip="192.168.3.4"), True),
    ("HostRegexp(`{sub:[a-z]+}.localhost`)", Req(), True),
    ("HostRegexp(`{sub}.localhost`)", Req(host="a.b.localhost"), False),  # default [^.]+
    ("Path(`/user/{id:[0-9]+}`)", Req(path="/user/42"), True),
    ("Path(`/user/{id}`)", Req(path="/user/42/x"), False),  # default [^/]+, anchored
    ("PathPrefix(`/v{n:[0-9]}`)", Req(path="/v2/items"), True),
    ("Query(`env=prod`)", Req(params={"env": ["prod", "dev"]}), True),
    ("Query(`env=prod`)", Req(params={"env": ["dev", "prod"]}), False),  # the first value
    ("Query(`env=`)", Req(params={"env": ["dev"]}), True),  # any value
    ("Query(`env={v:p.*}`)", Req(params={"env": ["prod"]}), True),
]


@pytest.mark.parametrize(("rule", "req", "expected"), V2_MATCHES,
                         ids=[m[0] for m in V2_MATCHES])
def test_match_v2(rule: str, req: Req, expected: bool) -> None:
    assert parse_rule(rule, "v2").match(req) is expected


@pytest.mark.parametrize("rule", [m[0] for m in V2_MATCHES if "{" not in m[0]
                                  and "=" not in m[0] and "HostRegexp" not in m[0]])
def test_v2_rules_are_refused_in_v3_syntax(rule: str) -> None:
    problem = check_rule(rule)
    assert problem is not None
    assert "v3 syntax" in problem


ERRORS = [
    # (rule, message part, column)
    ("Host(`a`) && Foo(`b`)", "unknown matcher Foo", 14),
    ("", "empty rule", 1),
    ("Host(`a`", "expected `)` or `,`, found end of rule", 9),
    ("Host(`a) ", "unterminated string", 6),
    ('Host("a)', "unterminated string", 6),
    ("Host(`a`) Path(`/`)", "expected && or ||, found `Path`", 11),
    ("Host(`a`) &&", "expected a matcher, found end of rule", 13),
    ("Host `a`", "expected `(` after Host", 6),
    ("Host()", "Host takes 1 value(s) in v3 syntax, got 0", 1),
    ("Header(`a`)", "Header takes 2 value(s) in v3 syntax, got 1", 1),
    ("Query(`a`, `b`, `c`)", "Query takes 1 or 2 value(s) in v3 syntax, got 3", 1),
    ("Path(`/a`) || Method(``)", "Method: values must not be empty", 15),
    ("pAthPrefix(`/a`)", "unknown matcher pAthPrefix", 1),
    ("Headers(`X-A`, `b`)", "unknown matcher Headers: a v2 matcher, not in v3 syntax", 1),
    ("Host(`a.*.example`)", "a wildcard is a whole first label", 1),
    ("PathPrefix(`api`)", "path 'api' must start with /", 1),
    ("Path(`/a`) && PathRegexp(`(`)", "invalid regular expression", 15),
    ("ClientIP(`300.1.1.1`)", "not an IP address or CIDR range", 1),
    ("Host(`a b`)", "is not a host name", 1),
    ("(Host(`a`)", "expected `)`, found end of rule", 11),
    ("Host(`a`))", "expected && or ||, found `)`", 10),
    ("Host(`a`) & Path(`/`)", "unexpected character '&'", 11),
    ('Host("\\q")', "unknown escape \\q", 7),
]


@pytest.mark.parametrize(("rule", "message", "column"), ERRORS,
                         ids=[e[0] or "empty" for e in ERRORS])
def test_errors_name_the_column(rule: str, message: str, column: int) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(rule)
    err = info.value
    assert message in err.reason
    assert err.column == column
    assert str(err) == f"rule `{rule}`: {err.reason} at column {column}"
    assert check_rule(rule) == str(err)


def test_check_rule_accepts_a_valid_rule() -> None:
    assert check_rule("Host(`a`) && PathPrefix(`/`)") is None


HOSTS = [
    # (rule, hosts the rule requires, whether anything is left to check for those hosts)
    ("Host(`A.localhost`)", {"a.localhost"}, False),
    ("Host(`a`) && PathPrefix(`/`)", {"a"}, False),  # PathPrefix(`/`) always matches
    ("Host(`a`) && PathPrefix(`/api`)", {"a"}, True),
    ("PathPrefix(`/api`) && (Host(`a`) || Host(`b`))", {"a", "b"}, True),
    ("Host(`*.a`)", None, True),  # a wildcard is not an exact host
    ("Host(`a`) || Host(`b`)", {"a", "b"}, True),
    ("Host(`a`) || PathPrefix(`/`)", None, True),
    ("HostRegexp(`a`)", None, True),
    ("!Host(`a`)", None, True),
    ("PathPrefix(`/`)", None, False),  # matches everything
]


@pytest.mark.parametrize(("rule", "hosts", "rest"), HOSTS, ids=[h[0] for h in HOSTS])
def test_host_dispatch(rule: str, hosts: set[str] | None, rest: bool) -> None:
    parsed = parse_rule(rule)
    assert parsed.hosts == (frozenset(hosts) if hosts is not None else None)
    assert (parsed.rest is not None) is rest


def test_rest_checks_what_the_host_does_not() -> None:
    parsed = parse_rule("Host(`a`) && PathPrefix(`/api`) && Method(`GET`)")
    assert parsed.rest is not None
    assert parsed.rest(Req(host="a", path="/api/x"))
    assert not parsed.rest(Req(host="a", path="/api/x", method="POST"))
    assert not parsed.rest(Req(host="a", path="/web"))


@pytest.mark.parametrize("rule", [
    "PathRegexp(`^/(a+)+$`)", "HostRegexp(`^(a|aa)+$`)", "HeaderRegexp(`X-A`, `^(a*)*b$`)",
    "QueryRegexp(`q`, `^(a|a?)+$`)",
])
@pytest.mark.timeout(10)
def test_catastrophic_patterns_match_in_linear_time(rule: str) -> None:
    # each of these backtracks for ages in Python's `re` on this input; RE2 answers at once
    evil = "a" * 20_000 + "!"
    req = Req(host=evil, path="/" + evil, headers={"x-a": [evil]}, params={"q": [evil]})
    matcher = parse_rule(rule).match
    for _ in range(100):
        assert matcher(req) is False


@pytest.mark.parametrize(("rule", "reason"), [
    ("PathRegexp(`^/(a)\\1$`)", "invalid escape sequence"),  # a backreference
    ("HostRegexp(`^(?=api)`)", "invalid perl operator"),  # lookahead
    ("HeaderRegexp(`X-A`, `(?<!x)y`)", "invalid perl operator"),  # lookbehind
    ("QueryRegexp(`q`, `(?P<n>a)(?P=n)`)", "invalid"),  # a named backreference
])
def test_patterns_re2_cannot_compile_are_refused(rule: str, reason: str) -> None:
    problem = check_rule(rule)
    assert problem is not None
    assert "invalid regular expression" in problem
    assert reason in problem
    assert "no backreferences or lookaround" in problem


def test_re2_patterns_keep_go_syntax() -> None:
    # what Go (and so Traefik) users write: named groups, classes, flags
    assert parse_rule("PathRegexp(`^/(?P<id>[0-9]+)$`)").match(Req(path="/42"))
    assert parse_rule("PathRegexp(`(?i)^/API`)").match(Req(path="/api/x"))
    assert parse_rule("HostRegexp(`^[[:alpha:]]+\\.localhost$`)").match(Req())
    assert parse_rule("PathRegexp(`^/café$`)").match(Req(path="/café"))


# -- ruleSyntax on a route and on labels, through admission, the table and the router ---------

V2_RULE = "Host(`a.localhost`, `b.localhost`) && Path(`/item/{id:[0-9]+}`)"


def _app(extra: dict[str, Any]) -> dict[str, Any]:
    return {"id": "/web", "container": {"docker": {"image": "kade/site:1"}},
            "portDefinitions": [{"port": 0}], **extra}


def _served(table_data: dict[str, Any], req: Req) -> str | None:
    table = compile_table(table_data, lambda url, task: Server(url, "127.0.0.1", 1, task),
                          lambda r, s: Stats(r, s))
    assert table.errors == []
    route = table.find(req)
    return route.name if route is not None else None


@pytest.mark.parametrize("definition", [
    {"routes": [{"rule": V2_RULE, "ruleSyntax": "v2", "name": "web"}]},
    {"labels": {"traefik.http.routers.web.rule": V2_RULE,
                "traefik.http.routers.web.ruleSyntax": "v2"}},
])
def test_a_v2_rule_is_admitted_and_served_where_the_route_says_v2(
        definition: dict[str, Any]) -> None:
    app = admit(_app(definition), policy=ContainerPolicy()).app
    table, errors = build_table({"/web": app}, {"/web": [Backend("t", "127.0.0.1", [31000])]}, 1)
    assert errors == []
    assert table["routers"][0]["ruleSyntax"] == "v2"
    assert _served(table, Req(host="b.localhost", path="/item/42")) == "web"
    assert _served(table, Req(host="b.localhost", path="/item/x")) is None


@pytest.mark.parametrize(("definition", "where"), [
    ({"routes": [{"rule": V2_RULE}]}, "routes.0.rule"),
    ({"labels": {"traefik.http.routers.web.rule": V2_RULE}},
     "labels.traefik.http.routers.web.rule"),
    ({"labels": {"traefik.http.routers.web.rule": "Host(`a`)",
                 "traefik.http.routers.web.ruleSyntax": "v1"}},
     "labels.traefik.http.routers.web.rule"),
])
def test_without_v2_the_same_rule_is_refused_naming_the_field(
        definition: dict[str, Any], where: str) -> None:
    with pytest.raises(SpecError) as info:
        admit(_app(definition), policy=ContainerPolicy())
    assert any(p.startswith(where) for p in info.value.problems), info.value.problems


def test_a_stored_v2_label_route_without_its_syntax_is_reported_not_served() -> None:
    # an app stored before ruleSyntax existed: its table entry is left out with the reason
    app = parse_app(_app({"labels": {"traefik.http.routers.web.rule": V2_RULE}})).app
    table, errors = build_table({"/web": app}, {}, 1)
    assert table["routers"] == []
    assert "Host takes 1 value(s) in v3 syntax, got 2" in errors[0].message


# -- wildcard hosts (Traefik 3 documents `*.example.com` and `**.example.com` for Host) -------


@pytest.mark.parametrize(("rule", "host", "expected"), [
    ("Host(`*.example.com`)", "api.example.com", True),
    ("Host(`*.Example.COM`)", "api.example.com", True),
    ("Host(`*.example.com`)", "a.b.example.com", False),  # one label only
    ("Host(`*.example.com`)", "example.com", False),
    ("Host(`*.example.com`)", "apiexample.com", False),
    ("Host(`**.example.com`)", "a.b.example.com", True),  # one label or more
    ("Host(`**.example.com`)", "api.example.com", True),
    ("Host(`**.example.com`)", "example.com", False),
    ("Host(`*.example.com`) && PathPrefix(`/api`)", "x.example.com", True),
    ("Host(`*.example.com`) || Host(`example.com`)", "example.com", True),
])
def test_wildcard_hosts(rule: str, host: str, expected: bool) -> None:
    assert parse_rule(rule).match(Req(host=host, path="/api")) is expected


def test_a_wildcard_is_literal_in_v2_syntax() -> None:
    # Traefik 2 had no wildcard hosts: the value is compared as written (and never matches)
    assert not parse_rule("Host(`*.example.com`)", "v2").match(Req(host="api.example.com"))


def test_a_wildcard_route_is_tried_for_every_host() -> None:
    parsed = parse_rule("Host(`*.example.com`) && Path(`/`)")
    assert parsed.hosts is None
    assert parsed.match(Req(host="a.example.com"))


@pytest.mark.parametrize(("raw", "expected"), [
    (b"/plain/path", "/plain/path"),
    (b"/caf%C3%A9", "/café"),
    (b"/a%2Fb%3Fc%23d%25e", "/a%2Fb%3Fc%23d%25e"),  # reserved: kept as sent
    (b"/a%2fb", "/a/b"),  # Traefik keeps only the upper-case spellings
    (b"/%25%32%46", "/%252F"),  # %25 kept, the rest decoded once: never decoded twice
    (b"/%zz/%4", "/%zz/%4"),  # not escapes
])
def test_routing_path_keeps_reserved_escapes(raw: bytes, expected: str) -> None:
    assert routing_path(raw) == expected


def test_a_route_without_rule_syntax_keeps_its_spec_hash() -> None:
    # an app stored before ruleSyntax existed must not have all its tasks replaced on upgrade
    plain = parse_app(_app({"routes": [{"rule": "Host(`a`)"}]})).app
    assert "ruleSyntax" not in plain.wire()["routes"][0]
    assert spec_hash(plain) == "94795eca114e3052"  # as computed before the field existed
    marked = parse_app(_app({"routes": [{"rule": "Host(`a`, `b`)", "ruleSyntax": "v2"}]})).app
    assert marked.wire()["routes"][0]["ruleSyntax"] == "v2"
    stored = AppSpec.model_validate_json(marked.model_dump_json(by_alias=True))
    assert stored.routes[0].rule_syntax == "v2"


def test_an_app_stored_with_an_unmarked_v2_route_stays_readable() -> None:
    # accepted before ruleSyntax existed: it loads (not quarantined with its whole app), and
    # its route is reported by the routing table until `ruleSyntax: v2` is added
    stored = parse_app(_app({"routes": [{"rule": V2_RULE, "name": "web"}]})).app
    table, errors = build_table({"/web": stored}, {}, 1)
    assert table["routers"] == []
    assert [e.router for e in errors] == ["web"]
    assert "Host takes 1 value(s) in v3 syntax, got 2" in errors[0].message
    with pytest.raises(SpecError, match=r"routes\.0\.rule: .*Host takes 1 value"):
        admit(_app({"routes": [{"rule": V2_RULE}]}), policy=ContainerPolicy())


@pytest.mark.parametrize("rule", ["Method(``)", "Query(`q`, ``)", "HostRegexp(`locàlhost`)",
                                  "Host(`*`)", "Headers(`X-A`, `b`)"])
def test_rules_the_earlier_parser_took_still_load_but_are_not_admitted(rule: str) -> None:
    assert parse_app(_app({"routes": [{"rule": rule}]})).app.routes[0].rule == rule
    with pytest.raises(SpecError, match=r"routes\.0\.rule"):
        admit(_app({"routes": [{"rule": rule}]}), policy=ContainerPolicy())


@pytest.mark.parametrize("rule", ["Host(`a`", "Foo(`a`)", "Host(`a`) &&"])
def test_what_no_syntax_takes_does_not_load(rule: str) -> None:
    with pytest.raises(SpecError, match=r"routes\.0\.rule"):
        parse_app(_app({"routes": [{"rule": rule}]}))
