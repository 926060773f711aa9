"""What a rule's matchers take (`check_values`) and look at, and the matchers themselves.

Semantics follow Traefik 3 (`pkg/muxer/http/matcher.go` and `matcher_v2.go`):

- `Host` compares the canonical host (lowercase, no port, a trailing dot ignored); v3 also
  takes `*.example.com` (exactly one more label) and `**.example.com` (one or more).
- Regexps are searched, not anchored (Go's `MatchString`), and compiled with RE2 as Go's are:
  time linear in the input whatever the pattern.
- Paths are matched against the *routing path* (`routing_path`): percent-decoded, except the
  reserved characters of RFC 3986, which stay encoded, so `/a%2Fb` is not `/a/b`.
- v2 syntax (`ruleSyntax: v2`) keeps gorilla/mux's templates: `{name:pattern}` inside `Path`,
  `PathPrefix` and `HostRegexp` values (the rest literal, the whole value anchored), and
  `Query(`key=value`)` compared with the first value of the key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Protocol

import re2

from kade.regexps import compile_regexp


class Request(Protocol):
    """What a matcher may look at: `host` lowercase without port, `path` the routing path."""

    @property
    def host(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def client_ip(self) -> str: ...

    def header(self, name: str) -> list[str]:
        """Values of a header, `name` in lowercase; [] when absent."""
        ...

    def query(self, name: str) -> list[str] | None:
        """Values of a query parameter in request order; None when absent."""
        ...


Matcher = Callable[[Request], bool]

# -- the routing path -------------------------------------------------------------------------

# RFC 3986 §2.2 reserved characters, and `%` itself: decoding them would change what the path
# says (`/a%2Fb` is one segment). Go's EscapedPath keeps the client's spelling, and Traefik
# looks these up in upper case only, so `%2f` is decoded like any other escape.
_RESERVED = frozenset(b"3A 2F 3F 23 5B 5D 40 21 24 26 27 28 29 2A 2B 2C 3B 3D 25".split())
_BYTE = {f"{a}{b}".encode(): bytes.fromhex(a + b)
         for a in "0123456789ABCDEFabcdef" for b in "0123456789ABCDEFabcdef"}


def routing_path(raw: bytes) -> str:
    """The path rules see: `raw` (as sent, without the query) decoded but for reserved escapes
    (and for what is not an escape: `%zz` stays as it is)."""
    if b"%" not in raw:
        return raw.decode("ascii") if raw.isascii() else raw.decode("utf-8", "replace")
    parts = raw.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        code = part[:2]
        if code in _RESERVED or code not in _BYTE:
            out.append(b"%" + part)
        else:
            out.append(_BYTE[code] + part[2:])
    return b"".join(out).decode("utf-8", "replace")


# -- regexps ----------------------------------------------------------------------------------

def template_regexp(template: str, kind: str) -> str:
    """A gorilla/mux template (`/css-{n:[0-9]+}`) as an anchored regexp; ValueError if bad.

    `kind` is host, path, prefix or query: it sets the default pattern of a bare `{name}`
    and whether the end is anchored. Text outside braces is literal."""
    default = {"host": "[^.]+", "query": ".*"}.get(kind, "[^/]+")
    out = ["(?i)^" if kind == "host" else "^"]
    depth, start, end = 0, 0, 0
    for i, c in enumerate(template):
        if c == "{":
            depth += 1
            if depth == 1:
                start = i
        elif c == "}":
            depth -= 1
            if depth == 0:
                name, colon, pattern = template[start + 1:i].partition(":")
                if not name or (colon and not pattern):
                    raise ValueError(f"missing name or pattern in {template[start:i + 1]!r}")
                out += (re2.escape(template[end:start]), f"({pattern if colon else default})")
                end = i + 1
            elif depth < 0:
                raise ValueError(f"unbalanced braces in {template!r}")
    if depth:
        raise ValueError(f"unbalanced braces in {template!r}")
    out.append(re2.escape(template[end:]))
    if kind == "query" and template.endswith("="):
        out.append(default)
    if kind != "prefix":
        out.append("$")
    return "".join(out)


# -- the values a matcher takes -------------------------------------------------------------

# name: (min values, max values or -1 for any)
ARITY: dict[str, dict[str, tuple[int, int]]] = {
    "v3": {"Host": (1, 1), "HostRegexp": (1, 1), "Path": (1, 1), "PathPrefix": (1, 1),
           "PathRegexp": (1, 1), "Method": (1, 1), "Header": (2, 2), "HeaderRegexp": (2, 2),
           "Query": (1, 2), "QueryRegexp": (1, 2), "ClientIP": (1, 1)},
    "v2": {"Host": (1, -1), "HostHeader": (1, -1), "HostRegexp": (1, -1), "Path": (1, -1),
           "PathPrefix": (1, -1), "Method": (1, -1), "Headers": (2, -1),
           "HeadersRegexp": (2, -1), "Query": (1, -1), "ClientIP": (1, -1)},
}

class BadPattern(ValueError):
    """A regexp or template that cannot be compiled, in whatever syntax it is read."""


def check_values(written: str, name: str, args: list[str], syntax: str) -> None:
    """ValueError naming the problem when the values of matcher `name` (as `written` in the
    rule) are not what it takes in `syntax`: their number, emptiness, form and regexps."""
    def fail(message: str) -> None:
        raise ValueError(message)

    lo, hi = ARITY[syntax][name]
    n = len(args)
    if n == 0 or n < lo or (hi >= 0 and n > hi):
        want = str(lo) if lo == hi else (f"{lo} or more" if hi < 0 else f"{lo} or {hi}")
        fail(f"{written} takes {want} value(s) in {syntax} syntax, got {n}")
    if "" in args:
        fail(f"{written}: values must not be empty")
    if name in ("Headers", "HeadersRegexp") and n % 2:
        fail(f"{written} takes header/value pairs, got {n} value(s)")
    if name in ("Path", "PathPrefix"):
        for a in args:
            if not a.startswith("/"):
                fail(f"{written}: path {a!r} must start with /")
    if name in ("Host", "HostHeader", "HostRegexp"):
        for a in args:
            if not a.isascii():
                fail(f"{written}: {a!r} is not ASCII (write the name in punycode: xn--...)")
    if name == "Host" and syntax == "v3":
        a = args[0]
        if any(c in a for c in " /\t"):
            fail(f"{written}: {a!r} is not a host name")
        if "*" in (wildcard(a) or (a,))[0]:
            fail(f"{written}: {a!r}: a wildcard is a whole first label: *.example.com (one "
                 f"label) or **.example.com (one or more)")
    regexps: list[str] = []
    if syntax == "v3" and name.endswith("Regexp") and (n == 2 or name != "QueryRegexp"):
        regexps = [args[-1]]  # a one-value QueryRegexp is a Query
    for pattern in regexps:
        try:
            compile_regexp(pattern)
        except ValueError as e:
            raise BadPattern(f"{written}: invalid regular expression {pattern!r}: {e}") from None
    try:
        _check_templates(name, args, syntax)
    except ValueError as e:
        raise BadPattern(f"{written}: invalid v2 value: {e}") from None
    if name == "ClientIP":
        for a in args:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                fail(f"{written}: {a!r} is not an IP address or CIDR range")


def _check_templates(name: str, args: list[str], syntax: str) -> None:
    """v2 values that are compiled (templates, regexps): ValueError when one is not valid."""
    if syntax != "v2":
        return
    if name == "HostRegexp":
        for a in args:
            compile_regexp(template_regexp(a, "host"))
    elif name in ("Path", "PathPrefix"):
        for a in args:
            if "{" in a or "}" in a:
                compile_regexp(template_regexp(a, "path"))
    elif name == "HeadersRegexp":
        for _, pattern in pairs(args):
            compile_regexp(pattern)
    elif name == "Query":
        flat = query_pairs(args)
        if len(flat) % 2:
            raise ValueError(f"{', '.join(args)!r}: values are key=value (any value: `key=`)")
        for k, v in pairs(flat):
            compile_regexp(template_regexp(f"{k}={v}", "query"))


# -- v3 matchers ------------------------------------------------------------------------------


def canon_host(value: str) -> str:
    return value.lower().rstrip(".")


def wildcard(value: str) -> tuple[str, bool] | None:
    """`*.example.com` → (".example.com", False), `**.` → (…, True: any depth); else None."""
    for prefix, deep in (("**.", True), ("*.", False)):
        if value.startswith(prefix):
            return "." + canon_host(value[len(prefix):]), deep
    return None


def host_matcher(values: Sequence[str]) -> Matcher:
    exact = frozenset(canon_host(v) for v in values if wildcard(v) is None)
    wild = [w for w in map(wildcard, values) if w is not None]
    if not wild:
        return lambda r: r.host in exact

    def match(r: Request) -> bool:
        host = r.host
        if host in exact:
            return True
        for suffix, deep in wild:
            if host.endswith(suffix):
                label = host[:-len(suffix)]
                if label and not label.startswith(".") and (deep or "." not in label):
                    return True
        return False
    return match


def _ip_in(ip: str, nets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in nets)


def networks(values: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def v3_matcher(name: str, args: Sequence[str]) -> Matcher:
    """The matcher of one v3 call whose values were checked by the parser."""
    if name == "Host":
        return host_matcher(args)
    if name == "Path":
        path = args[0]
        return lambda r: r.path == path
    if name == "PathPrefix":
        prefix = args[0]
        return lambda r: r.path.startswith(prefix)
    if name == "Method":
        method = args[0].upper()
        return lambda r: r.method == method
    if name == "HostRegexp":
        search = compile_regexp(args[0])
        return lambda r: search(r.host) is not None
    if name == "PathRegexp":
        search = compile_regexp(args[0])
        return lambda r: search(r.path) is not None
    if name == "Header":
        key, value = args[0].lower(), args[1]
        return lambda r: value in r.header(key)
    if name == "HeaderRegexp":
        key, search = args[0].lower(), compile_regexp(args[1])
        return lambda r: any(search(v) is not None for v in r.header(key))
    if name == "Query" or (name == "QueryRegexp" and len(args) == 1):
        qkey, qvalue = args[0], args[1] if len(args) == 2 else ""  # one value: the empty one
        return lambda r: qvalue in (r.query(qkey) or ())
    if name == "QueryRegexp":
        qkey, search = args[0], compile_regexp(args[1])
        return lambda r: any(search(v) is not None for v in (r.query(qkey) or ()))
    if name == "ClientIP":
        nets = networks(args)
        return lambda r: _ip_in(r.client_ip, nets)
    raise AssertionError(name)


# -- v2 matchers ------------------------------------------------------------------------------


def _any(matchers: list[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    return lambda r: any(m(r) for m in matchers)


def _all(matchers: list[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    return lambda r: all(m(r) for m in matchers)


def _path_v2(template: str, prefix: bool) -> Matcher:
    if "{" not in template and "}" not in template:  # literal: no regexp needed
        if prefix:
            return lambda r: r.path.startswith(template)
        return lambda r: r.path == template
    search = compile_regexp(template_regexp(template, "prefix" if prefix else "path"))
    return lambda r: search(r.path) is not None


def _query_v2(key: str, value: str) -> Matcher:
    search = compile_regexp(template_regexp(f"{key}={value}", "query"))

    def match(r: Request) -> bool:
        values = r.query(key)
        return search(f"{key}={values[0]}" if values else "") is not None
    return match


def pairs(args: Sequence[str]) -> list[tuple[str, str]]:
    return [(args[i], args[i + 1]) for i in range(0, len(args), 2)]


def query_pairs(args: Sequence[str]) -> list[str]:
    """v2 `Query(`a=1`, `b=2`)`: every value split at its first `=`, all flattened."""
    return [part for a in args for part in a.split("=", 1)]


def v2_matcher(name: str, args: Sequence[str]) -> Matcher:
    """The matcher of one v2 call (`ruleSyntax: v2`) whose values were checked by the parser."""
    if name == "Host":  # no wildcards in v2: every value is a literal host
        hosts = frozenset(canon_host(a) for a in args)
        return lambda r: r.host in hosts
    if name in ("Path", "PathPrefix"):
        return _any([_path_v2(a, name == "PathPrefix") for a in args])
    if name == "Method":
        methods = frozenset(a.upper() for a in args)
        return lambda r: r.method in methods
    if name == "HostRegexp":
        searches = [compile_regexp(template_regexp(a, "host")) for a in args]
        return lambda r: any(s(r.host) is not None for s in searches)
    if name == "Headers":
        return _all([v3_matcher("Header", p) for p in pairs(args)])
    if name == "HeadersRegexp":
        return _all([v3_matcher("HeaderRegexp", p) for p in pairs(args)])
    if name == "Query":
        return _all([_query_v2(k, v) for k, v in pairs(query_pairs(args))])
    if name == "ClientIP":
        nets = networks(args)
        return lambda r: _ip_in(r.client_ip, nets)
    raise AssertionError(name)
