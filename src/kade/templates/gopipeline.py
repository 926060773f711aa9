"""One pipeline of a Go template action (`[$x :=] cmd arg... | cmd arg...`) compiled to one
Jinja expression, and the bookkeeping of named templates (`define`, `template`,
`executeTemplate`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kade.templates.godata import Scratch
from kade.templates.gofuncs import ARITY, UNSUPPORTED
from kade.templates.golex import KEYWORDS, Tok

if TYPE_CHECKING:
    from kade.templates.gotemplate import _Translator


@dataclass
class NamedTemplates:
    """Names defined and called. A define is a Jinja block (`{% block _t_<hex> %}`) inside
    `{% if false %}`: Jinja compiles every block into a function of the template, callable
    from anywhere as `self._t_<hex>()`, which is how Go runs a define from anywhere. The
    block reads its dot from the render's stack (`_tdot()`), pushed by `_tpl`."""

    CLOSE = "{% endblock %}{% endif %}"
    defined: dict[str, int] = field(default_factory=dict)  # name → line
    calls: list[tuple[str, int]] = field(default_factory=list)  # name, position

    @staticmethod
    def block(name: str) -> str:
        return "_t_" + name.encode().hex()

    def open(self, name: str, line: int, dot: str) -> str:
        self.defined[name] = line
        return ("{% if false %}{% block " + self.block(name) + " %}{% set " + dot +
                " = _tdot() %}")

    def call(self, name: str, expr: str, pos: int) -> str:
        self.calls.append((name, pos))
        return f"_tpl(self.{self.block(name)}, {expr})"


class Pipeline:
    """One pipeline: `[$x :=] cmd arg... | cmd arg...`, compiled to one Jinja expression."""

    def __init__(self, tr: _Translator, toks: list[Tok], start: int) -> None:
        self.tr, self.toks, self.i, self.start = tr, toks, 0, start

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def parse(self, *, decl: bool = False, many: bool = False
              ) -> tuple[list[str], str | None, str]:
        names: list[str] = []
        op: str | None = None
        if decl:
            names, op = self.declaration(many)
        expr = self.pipeline(end=None)
        if self.i < len(self.toks):
            tok = self.toks[self.i]
            raise self.tr.fail(tok.pos, f"unexpected {tok.value!r} in command")
        return names, op, expr

    def declaration(self, many: bool) -> tuple[list[str], str | None]:
        toks = self.toks
        if not toks or toks[0].kind != "var":
            return [], None
        if len(toks) > 1 and toks[1].kind in (":=", "="):
            self.i = 2
            return [toks[0].value], toks[1].kind
        if len(toks) > 3 and toks[1].kind == "," and toks[2].kind == "var" \
                and toks[3].kind in (":=", "="):
            if not many:
                raise self.tr.fail(toks[1].pos, "two variables are only allowed in {{range}}")
            self.i = 4
            return [toks[0].value, toks[2].value], toks[3].kind
        return [], None

    def pipeline(self, end: str | None) -> str:
        expr: str | None = None
        while True:
            expr = self.command(expr)
            tok = self.peek()
            if tok is None or tok.kind == end:
                return expr
            if tok.kind != "|":
                raise self.tr.fail(tok.pos, f"unexpected {tok.value!r} in command")
            self.i += 1

    def command(self, piped: str | None) -> str:
        words: list[tuple[Tok, str | None]] = []  # (first token, expression or None = function)
        while (tok := self.peek()) is not None and tok.kind not in ("|", ")"):
            words.append(self.operand())
        if not words:
            at = self.peek()
            raise self.tr.fail(at.pos if at else self.start, "missing value for command")
        head, head_expr = words[0]
        if head_expr is None and head.value == "executeTemplate":
            return self.execute_template(head, words[1:], piped)
        if head_expr is None:
            args = [self.arg(t, e) for t, e in words[1:]]
            return self.call(head, args + ([piped] if piped is not None else []))
        if len(words) > 1 or piped is not None:
            raise self.tr.fail(head.pos, f"can't give argument to non-function {head.value!r}")
        return head_expr

    def execute_template(self, head: Tok, words: list[tuple[Tok, str | None]],
                         piped: str | None) -> str:
        """`executeTemplate "name" [data]`: a define's text, as a value."""
        args = [self.arg(t, e) for t, e in words[1:]] + ([piped] if piped is not None else [])
        if not words or words[0][0].kind != "str" or len(args) > 1:
            raise self.tr.fail(head.pos, "executeTemplate takes a template name in quotes and "
                                         "at most one value")
        return self.tr.named.call(str(words[0][0].value), args[0] if args else "none",
                                  head.pos)

    def arg(self, tok: Tok, expr: str | None) -> str:
        return self.call(tok, []) if expr is None else expr

    def operand(self) -> tuple[Tok, str | None]:
        tok = self.toks[self.i]
        self.i += 1
        if tok.kind == "ident":
            if tok.value in KEYWORDS:
                raise self.tr.fail(tok.pos, f"unexpected keyword {tok.value!r} in command")
            method = self.peek()
            if tok.value == "scratch" and method and method.kind == "field" and not method.spaced:
                self.i += 1  # `scratch.Set`: a method of the render's scratch pad
                return Tok("ident", f"scratch.{method.value}", tok.pos, tok.spaced), None
            return tok, None
        if tok.kind == "str":
            expr = repr(tok.value)
        elif tok.kind == "num":
            expr = f"({tok.value!r})"
        elif tok.kind == "bool":
            expr = "true" if tok.value else "false"
        elif tok.kind == "nil":
            expr = "none"
        elif tok.kind == "dot":
            expr = self.tr.dots[-1]
        elif tok.kind == "field":
            expr = f"_get({self.tr.dots[-1]}, {tok.value!r})"
        elif tok.kind == "var":
            expr = self.tr.variable(tok)
        elif tok.kind == "(":
            expr = "(" + self.pipeline(end=")") + ")"
            close = self.peek()
            if close is None or close.kind != ")":
                raise self.tr.fail(tok.pos, "unclosed left paren")
            self.i += 1
        else:
            raise self.tr.fail(tok.pos, f"unexpected {tok.value!r} in operand")
        while (nxt := self.peek()) is not None and nxt.kind == "field" and not nxt.spaced:
            if tok.kind in ("str", "num", "bool", "nil"):
                raise self.tr.fail(nxt.pos, f"unexpected {nxt.value!r}: a literal has no "
                                            "fields")
            expr = f"_get({expr}, {nxt.value!r})"
            self.i += 1
        return tok, expr

    def call(self, tok: Tok, args: list[str]) -> str:
        name, n = tok.value, len(args)
        if name in ("and", "or"):
            if n < 1:
                raise self.tr.fail(tok.pos, f"wrong number of args for {name}: want at least 1 "
                                            "got 0")
            return "(" + f" {name} ".join(args) + ")"
        if name == "not":
            self.arity(tok, n, 1, 1)
            return f"(not {args[0]})"
        if name == "eq":
            if n < 2:
                raise self.tr.fail(tok.pos, "missing argument for comparison")
            return "(" + " or ".join(f"{args[0]} == {a}" for a in args[1:]) + ")"
        ops = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
        if name in ops:
            self.arity(tok, n, 2, 2)
            return f"({args[0]} {ops[name]} {args[1]})"
        if name.startswith("scratch"):
            method = name.partition(".")[2]
            if method not in Scratch.METHODS:
                raise self.tr.fail(tok.pos, f"{name}: scratch's methods are "
                                            f"{', '.join(Scratch.METHODS)}")
            self.arity(tok, n, *Scratch.METHODS[method])
            return f"_f_scratch.{method}(" + ", ".join(args) + ")"
        if name in ARITY:
            low, high = ARITY[name]
            self.arity(tok, n, low, high)
            return f"_f_{name}(" + ", ".join(args) + ")"
        if name.startswith("sprig_"):
            raise self.tr.fail(tok.pos, f'function "{name}" is not supported: the Sprig '
                                        "functions are not offered")
        if name in UNSUPPORTED:
            raise self.tr.fail(tok.pos, f'function "{name}" is not supported: '
                                        f"{UNSUPPORTED[name]}")
        raise self.tr.fail(tok.pos, f'function "{name}" not defined')

    def arity(self, tok: Tok, n: int, low: int, high: int | None) -> None:
        if n < low or (high is not None and n > high):
            want = str(low) if low == high else f"at least {low}"
            raise self.tr.fail(tok.pos, f"wrong number of args for {tok.value}: want {want} "
                                        f"got {n}")
