"""Traefik's rule syntax, parsed once into a matcher (pure: no I/O).

Semantics follow Traefik v3: `Host` ignores case and the port, regexps are searched (not
anchored, like Go's `MatchString`), `Path` and `PathPrefix` look at the decoded path.
Regexps are compiled with RE2, as Go's (and so Traefik's) are: matching takes time linear in
the input whatever the pattern, so a rule like `PathRegexp(`^/(a+)+$`)` cannot stall routing.
What RE2 cannot compile (backreferences, lookaround) is refused when the rule is parsed. Traefik v2
users may give several values to `Host`, `Path`, `PathPrefix` and `Method`, and may write the v2
names `HostHeader`, `Headers` and `HeadersRegexp`.

For speed the table dispatches on the request's host first: `Rule.hosts` is the set of exact
hosts a rule requires (or None), and `Rule.rest` the matcher of what is left to check once the
host is known to be one of them (None when nothing is left, e.g. `Host(a) && PathPrefix(/)`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import re2


class Request(Protocol):
    """What a matcher may look at. `host` is lowercase without port, `path` is decoded."""

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
        """Values of a query parameter; None when absent."""
        ...


Matcher = Callable[[Request], bool]


class RuleError(ValueError):
    """A rule that cannot be parsed; the message names the 1-based column."""

    def __init__(self, rule: str, message: str, column: int) -> None:
        super().__init__(f"rule `{rule}`: {message} at column {column}")
        self.rule = rule
        self.reason = message
        self.column = column


# -- syntax tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[str, ...]
    column: int


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Call | And | Or | Not


@dataclass(frozen=True)
class Rule:
    text: str
    tree: Node
    match: Matcher
    hosts: frozenset[str] | None  # the rule only matches these hosts (None: any host)
    rest: Matcher | None  # what is left to check when the host is in `hosts` (None: nothing)


# -- tokens -----------------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, string, (, ), ",", &&, ||, !, end
    value: str
    column: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        col = i + 1
        if c in " \t\r\n":
            i += 1
        elif c in "(),!":
            out.append(_Token(c, c, col))
            i += 1
        elif text.startswith("&&", i) or text.startswith("||", i):
            out.append(_Token(text[i:i + 2], text[i:i + 2], col))
            i += 2
        elif c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise RuleError(text, "unterminated string", col)
            out.append(_Token("string", text[i + 1:end], col))
            i = end + 1
        elif c == '"':
            value, i = _quoted(text, i)
            out.append(_Token("string", value, col))
        else:
            m = _IDENT.match(text, i)
            if not m:
                raise RuleError(text, f"unexpected character {c!r}", col)
            out.append(_Token("ident", m.group(), col))
            i = m.end()
    out.append(_Token("end", "", n + 1))
    return out


def _quoted(text: str, start: int) -> tuple[str, int]:
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(chars), i + 1
        if c == "\\":
            if i + 1 >= len(text):
                break
            esc = text[i + 1]
            if esc not in _ESCAPES:
                raise RuleError(text, f"unknown escape \\{esc}", i + 1)
            chars.append(_ESCAPES[esc])
            i += 2
            continue
        chars.append(c)
        i += 1
    raise RuleError(text, "unterminated string", start + 1)


# -- parser -----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self) -> _Token:
        return self.toks[self.pos]

    def take(self, kind: str, what: str) -> _Token:
        tok = self.toks[self.pos]
        if tok.kind != kind:
            raise RuleError(self.text, f"expected {what}, found {_describe(tok)}", tok.column)
        self.pos += 1
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise RuleError(self.text, "empty rule", 1)
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise RuleError(self.text, f"expected && or ||, found {_describe(tok)}", tok.column)
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.peek().kind == "||":
            self.pos += 1
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Node:
        items = [self.unary()]
        while self.peek().kind == "&&":
            self.pos += 1
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "!":
            self.pos += 1
            return Not(self.unary())
        if tok.kind == "(":
            self.pos += 1
            node = self.or_()
            self.take(")", "`)`")
            return node
        if tok.kind != "ident":
            raise RuleError(self.text, f"expected a matcher, found {_describe(tok)}", tok.column)
        self.pos += 1
        name = _ALIASES.get(tok.value, tok.value)
        if name not in _ARITY:
            raise RuleError(self.text, f"unknown matcher {tok.value}", tok.column)
        self.take("(", f"`(` after {tok.value}")
        args: list[str] = []
        if self.peek().kind != ")":
            args.append(self.take("string", "a quoted value").value)
            while self.peek().kind == ",":
                self.pos += 1
                args.append(self.take("string", "a quoted value").value)
        self.take(")", "`)` or `,`")
        call = Call(name, tuple(args), tok.column)
        _check_call(self.text, tok.value, call)
        return call


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of rule"
    if tok.kind == "string":
        return f"string {tok.value!r}"
    return f"`{tok.value}`"


# name: (min args, max args or -1 for any)
_ARITY: dict[str, tuple[int, int]] = {
    "Host": (1, -1),
    "HostRegexp": (1, 1),
    "Path": (1, -1),
    "PathPrefix": (1, -1),
    "PathRegexp": (1, 1),
    "Method": (1, -1),
    "Header": (2, 2),
    "HeaderRegexp": (2, 2),
    "Query": (1, 2),
    "QueryRegexp": (2, 2),
    "ClientIP": (1, -1),
}
_ALIASES = {"HostHeader": "Host", "Headers": "Header", "HeadersRegexp": "HeaderRegexp"}


def _check_call(text: str, written: str, call: Call) -> None:
    lo, hi = _ARITY[call.name]
    n = len(call.args)
    if n < lo or (hi >= 0 and n > hi):
        want = str(lo) if lo == hi else (f"{lo} or more" if hi < 0 else f"{lo} to {hi}")
        raise RuleError(text, f"{written} takes {want} value(s), got {n}", call.column)
    if call.name in ("Path", "PathPrefix"):
        for a in call.args:
            if not a.startswith("/"):
                raise RuleError(text, f"{written}: path {a!r} must start with /", call.column)
    if call.name == "Host":
        for a in call.args:
            if not a or not a.isascii() or any(c in a for c in " /\t"):
                raise RuleError(text, f"Host: {a!r} is not a host name", call.column)
    if call.name.endswith("Regexp"):
        try:
            compile_regexp(call.args[-1])
        except ValueError as e:
            raise RuleError(
                text, f"{written}: invalid regular expression {call.args[-1]!r}: {e}", call.column
            ) from None
    if call.name == "ClientIP":
        for a in call.args:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                raise RuleError(
                    text, f"ClientIP: {a!r} is not an IP address or CIDR range", call.column
                ) from None


# -- compiling --------------------------------------------------------------------------------

Search = Callable[[str], object | None]
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the user, not to stderr
_UNSUPPORTED = "RE2 syntax: no backreferences or lookaround"


def compile_regexp(pattern: str) -> Search:
    """The `search` of `pattern` compiled by RE2 (linear time); ValueError if RE2 refuses it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS).search  # type: ignore[no-any-return]
    except re2.error as e:
        reason = e.args[0] if e.args else "cannot be compiled"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"{reason} ({_UNSUPPORTED})") from None



def _canon_host(value: str) -> str:
    return value.lower().rstrip(".")


def _compile_call(c: Call) -> Matcher:
    name, args = c.name, c.args
    if name == "Host":
        hosts = frozenset(_canon_host(a) for a in args)
        return lambda r: r.host in hosts
    if name == "Path":
        paths = frozenset(args)
        return lambda r: r.path in paths
    if name == "PathPrefix":
        prefixes = tuple(args)
        return lambda r: r.path.startswith(prefixes)
    if name == "Method":
        methods = frozenset(a.upper() for a in args)
        return lambda r: r.method in methods
    if name in ("HostRegexp", "PathRegexp"):
        search = compile_regexp(args[0])
        if name == "HostRegexp":
            return lambda r: search(r.host) is not None
        return lambda r: search(r.path) is not None
    if name == "Header":
        key, value = args[0].lower(), args[1]
        return lambda r: value in r.header(key)
    if name == "HeaderRegexp":
        key, search = args[0].lower(), compile_regexp(args[1])
        return lambda r: any(search(v) is not None for v in r.header(key))
    if name == "Query":
        qkey = args[0]
        if len(args) == 1:
            return lambda r: r.query(qkey) is not None
        qvalue = args[1]
        return lambda r: qvalue in (r.query(qkey) or ())
    if name == "QueryRegexp":
        qkey, search = args[0], compile_regexp(args[1])
        return lambda r: any(search(v) is not None for v in (r.query(qkey) or ()))
    if name == "ClientIP":
        nets = [ipaddress.ip_network(a, strict=False) for a in args]
        return lambda r: _ip_in(r.client_ip, nets)
    raise AssertionError(name)


def _ip_in(ip: str, nets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in nets)


def compile_node(node: Node) -> Matcher:
    if isinstance(node, Call):
        return _compile_call(node)
    if isinstance(node, Not):
        inner = compile_node(node.item)
        return lambda r: not inner(r)
    parts = [compile_node(n) for n in node.items]
    if isinstance(node, And):
        if len(parts) == 2:
            a, b = parts
            return lambda r: a(r) and b(r)
        return lambda r: all(p(r) for p in parts)
    if len(parts) == 2:
        a, b = parts
        return lambda r: a(r) or b(r)
    return lambda r: any(p(r) for p in parts)


def _always(node: Node) -> bool:
    return isinstance(node, Call) and node.name == "PathPrefix" and "/" in node.args


def _host_split(node: Node) -> tuple[frozenset[str] | None, Node | None]:
    """The exact hosts `node` requires, and what is left to check for those hosts."""
    if isinstance(node, Call) and node.name == "Host":
        return frozenset(_canon_host(a) for a in node.args), None
    if isinstance(node, And):
        for i, item in enumerate(node.items):
            hosts, rest = _host_split(item)
            if hosts is None:
                continue
            others = [n for j, n in enumerate(node.items) if j != i and not _always(n)]
            if rest is not None:
                others.insert(0, rest)
            if not others:
                return hosts, None
            return hosts, others[0] if len(others) == 1 else And(tuple(others))
        return None, node
    if isinstance(node, Or):
        found: set[str] = set()
        for item in node.items:
            hosts, _ = _host_split(item)
            if hosts is None:
                return None, node
            found |= hosts
        return frozenset(found), node  # the full rule is re-checked for its host
    return None, node


def parse_rule(text: str) -> Rule:
    """Parse a rule; raises RuleError naming the column of the problem."""
    tree = _Parser(text).parse()
    hosts, rest = _host_split(tree)
    return Rule(
        text=text,
        tree=tree,
        match=compile_node(tree),
        hosts=hosts,
        rest=None if rest is None or _always(rest) else compile_node(rest),
    )


def check_rule(text: str) -> str | None:
    """The error message of a rule, or None when it is valid (for validating input early)."""
    try:
        parse_rule(text)
    except RuleError as e:
        return str(e)
    return None
