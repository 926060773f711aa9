"""Traefik rule syntax: parsing, matching, errors with their column, host dispatch."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from kade.router.rules import RuleError, check_rule, parse_rule


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
    ("Host(`a.localhost`, `www.localhost`)", Req(), True),  # v2: several values
    ("HostHeader(`www.localhost`)", Req(), True),  # v2 name
    ('Host("www.localhost")', Req(), True),  # double quotes
    ("HostRegexp(`^[a-z]+\\.localhost$`)", Req(), True),
    ("HostRegexp(`^api\\.`)", Req(), False),
    ("HostRegexp(`localhost`)", Req(), True),  # searched, not anchored (Go's MatchString)
    ("Path(`/`)", Req(), True),
    ("Path(`/a`)", Req(path="/a/b"), False),
    ("PathPrefix(`/api`)", Req(path="/api/v1"), True),
    ("PathPrefix(`/api`)", Req(path="/ap"), False),
    ("PathPrefix(`/a`, `/b`)", Req(path="/b/c"), True),
    ("PathRegexp(`\\.(png|jpg)$`)", Req(path="/img/x.png"), True),
    ("PathRegexp(`^/v[0-9]+/`)", Req(path="/api/v1/"), False),
    ("Method(`POST`)", Req(method="POST"), True),
    ("Method(`post`)", Req(method="POST"), True),
    ("Method(`GET`)", Req(method="POST"), False),
    ("Header(`X-Env`, `prod`)", Req(headers={"x-env": ["dev", "prod"]}), True),
    ("Header(`X-Env`, `prod`)", Req(headers={"x-env": ["production"]}), False),
    ("Headers(`X-Env`, `prod`)", Req(headers={"x-env": ["prod"]}), True),  # v2 name
    ("HeaderRegexp(`User-Agent`, `curl/`)", Req(headers={"user-agent": ["curl/8.0"]}), True),
    ("HeaderRegexp(`User-Agent`, `curl/`)", Req(), False),
    ("Query(`debug`)", Req(params={"debug": [""]}), True),
    ("Query(`debug`)", Req(), False),
    ("Query(`env`, `prod`)", Req(params={"env": ["prod"]}), True),
    ("Query(`env`, `prod`)", Req(params={"env": ["dev"]}), False),
    ("QueryRegexp(`id`, `^[0-9]+$`)", Req(params={"id": ["42"]}), True),
    ("ClientIP(`127.0.0.0/8`)", Req(), True),
    ("ClientIP(`10.0.0.1`, `192.168.0.0/16`)", Req(client_ip="192.168.3.4"), True),
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
    ("Host()", "Host takes 1 or more value(s), got 0", 1),
    ("Header(`a`)", "Header takes 2 value(s), got 1", 1),
    ("Query(`a`, `b`, `c`)", "Query takes 1 to 2 value(s), got 3", 1),
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
    ("PathPrefix(`/api`) && Host(`a`, `b`)", {"a", "b"}, True),
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
