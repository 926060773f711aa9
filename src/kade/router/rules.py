"""Traefik's rule syntax, parsed once into a matcher (pure: no I/O).

A rule is read as Traefik 3 reads it: v3 syntax by default, v2 syntax where the route says
`ruleSyntax: v2` (label `traefik.http.routers.<r>.ruleSyntax=v2`). The two differ in the
matchers they know and the values those take (docs/routing.md, "Rules"):

- v3: `Host`, `HostRegexp`, `Path`, `PathPrefix`, `PathRegexp`, `Method`, `ClientIP` take one
  value; `Header`, `HeaderRegexp` two; `Query`, `QueryRegexp` one or two.
- v2: `Host`/`HostHeader`, `HostRegexp`, `Path`, `PathPrefix`, `Method`, `ClientIP` take one or
  more; `Headers`, `HeadersRegexp` pairs; `Query` `key=value` values.

Either way a matcher name may be written as documented, in lower case, in upper case or
capitalized (`PathPrefix`, `pathprefix`, `PATHPREFIX`, `Pathprefix`), and an empty value is
refused. What a matcher compares is in `kade.router.rules_match`.

For speed the table dispatches on the request's host first: `Rule.hosts` is the set of exact
hosts a rule requires (or None), and `Rule.rest` the matcher of what is left to check once the
host is known to be one of them (None when nothing is left, e.g. `Host(a) && PathPrefix(/)`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kade.regexps import compile_regexp
from kade.router.rules_match import (
    ARITY,
    BadPattern,
    Matcher,
    Request,
    canon_host,
    check_values,
    routing_path,
    v2_matcher,
    v3_matcher,
    wildcard,
)

__all__ = ["SYNTAXES", "Matcher", "Request", "Rule", "RuleError", "check_rule",
           "compile_regexp", "parse_rule", "routing_path"]

SYNTAXES = ("v3", "v2")


class RuleError(ValueError):
    """A rule that cannot be parsed; the message names the 1-based column."""

    def __init__(self, rule: str, message: str, column: int, *, grammar: bool = True) -> None:
        super().__init__(f"rule `{rule}`: {message} at column {column}")
        self.rule = rule
        self.reason = message
        self.column = column
        # False: the rule is Traefik's grammar, but a matcher or its values do not fit the
        # syntax (v3/v2) it is read in; True: no syntax would take it
        self.grammar = grammar


# -- syntax tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str  # the canonical name in its syntax (`HostHeader` is v2's `Host`)
    args: tuple[str, ...]
    column: int
    syntax: str = "v3"


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
    syntax: str = "v3"


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


# -- matcher names and their values -----------------------------------------------------------

_CANONICAL = {"HostHeader": "Host"}


def _spellings(names: dict[str, tuple[int, int]]) -> dict[str, str]:
    """Traefik's parser knows each name as written, lower, UPPER and Capitalized."""
    out: dict[str, str] = {}
    for n in names:
        for spelling in (n, n.lower(), n.upper(), n.lower().capitalize()):
            out[spelling] = n
    return out


_NAMES = {syntax: _spellings(names) for syntax, names in ARITY.items()}


class _Parser:
    def __init__(self, text: str, syntax: str) -> None:
        self.text = text
        self.syntax = syntax
        self.names = _NAMES[syntax]
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
        name = self.names.get(tok.value)
        if name is None:
            other = "v2" if self.syntax == "v3" else "v3"
            raise RuleError(self.text, self._unknown(tok.value), tok.column,
                            grammar=tok.value not in _NAMES[other])
        self.take("(", f"`(` after {tok.value}")
        args: list[str] = []
        if self.peek().kind != ")":
            args.append(self.take("string", "a quoted value").value)
            while self.peek().kind == ",":
                self.pos += 1
                args.append(self.take("string", "a quoted value").value)
        self.take(")", "`)` or `,`")
        try:
            check_values(tok.value, name, args, self.syntax)
        except ValueError as e:
            raise RuleError(self.text, str(e), tok.column,
                            grammar=isinstance(e, BadPattern)) from None
        return Call(_CANONICAL.get(name, name), tuple(args), tok.column, self.syntax)

    def _unknown(self, written: str) -> str:
        other = "v2" if self.syntax == "v3" else "v3"
        if written in _NAMES[other]:
            return f"unknown matcher {written}: a {other} matcher, not in {self.syntax} " \
                   f"syntax (the route's ruleSyntax)"
        return f"unknown matcher {written}"


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of rule"
    if tok.kind == "string":
        return f"string {tok.value!r}"
    return f"`{tok.value}`"


# -- compiling --------------------------------------------------------------------------------


def compile_node(node: Node) -> Matcher:
    if isinstance(node, Call):
        if node.syntax == "v2":
            return v2_matcher(node.name, node.args)
        return v3_matcher(node.name, node.args)
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


def _exact_hosts(call: Call) -> frozenset[str] | None:
    if call.name != "Host" or (call.syntax == "v3" and any(map(wildcard, call.args))):
        return None
    return frozenset(canon_host(a) for a in call.args)


def _host_split(node: Node) -> tuple[frozenset[str] | None, Node | None]:
    """The exact hosts `node` requires, and what is left to check for those hosts."""
    if isinstance(node, Call):
        hosts = _exact_hosts(node)
        return (hosts, None) if hosts is not None else (None, node)
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


def parse_rule(text: str, syntax: str | None = "v3") -> Rule:
    """Parse a rule in `syntax` (v3 or v2; None or "" is v3); raises RuleError."""
    syntax = (syntax or "").strip() or "v3"
    if syntax not in SYNTAXES:
        raise RuleError(text, f"ruleSyntax {syntax!r} is not one of v3, v2", 1)
    tree = _Parser(text, syntax).parse()
    hosts, rest = _host_split(tree)
    return Rule(
        text=text,
        tree=tree,
        match=compile_node(tree),
        hosts=hosts,
        rest=None if rest is None or _always(rest) else compile_node(rest),
        syntax=syntax,
    )


def check_rule(text: str, syntax: str | None = "v3") -> str | None:
    """The error message of a rule, or None when it is valid (for validating input early)."""
    try:
        parse_rule(text, syntax)
    except RuleError as e:
        return str(e)
    return None
