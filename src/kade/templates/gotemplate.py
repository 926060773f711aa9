"""consul-template's Go template syntax, translated into Jinja2 source.

Why translate rather than interpret: one engine (Jinja2's sandbox) then enforces the limits
for both syntaxes, and a compiled template is cached and reused for every render.

Go's semantics are kept where a config file would show the difference: a piped value is the
*last* argument (`{{ 10 | subtract 3 }}` = subtract(3, 10)), `range` over a map goes in key
order, `true` prints as `true`, and `.Field` on a map reads that key. Each piece of output
starts on the line its source started on, so errors found by Jinja name the author's line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kade.templates.godata import Scratch
from kade.templates.gofuncs import ARITY, UNSUPPORTED
from kade.templates.golex import KEYWORDS, SPACE, GoSyntaxError, Scanner, Tok


@dataclass
class _Block:
    kind: str  # if | with | range
    line: int
    ends: int
    outer_dot: str
    has_else: bool = False


@dataclass
class _Scope:
    names: dict[str, str] = field(default_factory=dict)  # $name → its Jinja variable
    loop: bool = False


def translate(src: str) -> str:
    """Go template text → Jinja2 source with the same line numbers. Raises GoSyntaxError."""
    return _Translator(src).run()


class _Translator(Scanner):
    def __init__(self, src: str) -> None:
        super().__init__(src)
        self.out: list[str] = []
        self.out_line = 1
        self.blocks: list[_Block] = []
        self.scopes: list[_Scope] = [_Scope()]
        self.dots = ["_dot0"]
        self.counter = 0

    # -- output ------------------------------------------------------------------------------

    def sync(self, line: int) -> None:
        """Pad with a Jinja comment so that the next piece lands on `line`."""
        if line > self.out_line:
            self.out.append("{#" + "\n" * (line - self.out_line) + "#}")
            self.out_line = line

    def text(self, text: str, pos: int) -> None:
        if not text:
            return
        self.sync(self.line_of(pos))
        if not any(c in text for c in "{}%#"):
            self.out.append(text)
        elif "endraw" not in text:
            self.out.append("{% raw %}" + text + "{% endraw %}")
        else:
            self.out.append("{{ " + repr(text) + " }}")
            self.out_line -= text.count("\n")
        self.out_line += text.count("\n")

    def tag(self, tag: str, pos: int) -> None:
        self.sync(self.line_of(pos))
        self.out.append(tag)

    # -- scanning ----------------------------------------------------------------------------

    def run(self) -> str:
        src, pos = self.src, 0
        while pos < len(src):
            start = src.find("{{", pos)
            if start < 0:
                self.text(src[pos:], pos)
                break
            j = start + 2
            ltrim = src[j:j + 1] == "-" and src[j + 1:j + 2] in tuple(SPACE)
            text = src[pos:start]
            self.text(text.rstrip(SPACE) if ltrim else text, pos)
            if ltrim:
                j += 1
            k = j
            while k < len(src) and src[k] in SPACE:
                k += 1
            if src.startswith("/*", k):
                end, rtrim = self.comment(start, k)
            else:
                toks, end, rtrim = self.lex(start, j)
                self.action(toks, start)
            pos = end
            if rtrim:
                while pos < len(src) and src[pos] in SPACE:
                    pos += 1
        if self.blocks:
            b = self.blocks[-1]
            raise GoSyntaxError(b.line, f"unexpected EOF: {{{{{b.kind}}}}} is never closed "
                                        "with {{end}}")
        return "".join(self.out)

    # -- actions -----------------------------------------------------------------------------

    def action(self, toks: list[Tok], start: int) -> None:
        if not toks:
            raise self.fail(start, "missing value for command")
        first = toks[0]
        if first.kind == "ident" and first.value in KEYWORDS:
            self.keyword(first.value, toks[1:], start)
            return
        decl, op, expr = _Pipeline(self, toks, start).parse(decl=True)
        if decl:
            self.tag("{% set " + self.declare(decl, op, start) + " = " + expr + " %}", start)
        else:
            self.tag("{{ _out(" + expr + ") }}", start)

    def keyword(self, word: str, rest: list[Tok], start: int) -> None:
        if word in ("if", "with", "range"):
            self.open(word, rest, start)
        elif word == "else":
            self.else_(rest, start)
        elif word == "end":
            if rest:
                raise self.fail(rest[0].pos, "unexpected tokens after end")
            if not self.blocks:
                raise self.fail(start, "unexpected {{end}}")
            b = self.blocks.pop()
            closer = "{% endfor %}" if b.kind == "range" else "{% endif %}"
            self.tag(closer * b.ends, start)
            self.dots.pop()
            del self.scopes[-2:]
        elif word in ("break", "continue"):
            if not any(b.kind == "range" for b in self.blocks):
                raise self.fail(start, f"{{{{{word}}}}} outside {{{{range}}}}")
            self.tag("{% " + word + " %}", start)
        else:
            raise self.fail(start, f"{{{{{word}}}}} is not supported: write the template inline")

    def open(self, kind: str, rest: list[Tok], start: int) -> None:
        if not rest:
            raise self.fail(start, f"missing value for {kind}")
        decl, op, expr = _Pipeline(self, rest, start).parse(decl=True, many=kind == "range")
        if op == "=":
            raise self.fail(start, f"assignment is not allowed in {{{{{kind}}}}}")
        outer = self.dots[-1]
        self.scopes.append(_Scope(loop=kind == "range"))
        if kind == "range":
            self.counter += 1
            names = [self.declare([d], ":=", start) for d in decl]
            if len(names) == 2:
                key, value = names
            else:
                key = f"_k{self.counter}"
                value = names[0] if names else f"_dot{self.counter}"
            self.tag("{% for " + key + ", " + value + " in _items(" + expr + ") %}", start)
            self.dots.append(value)
        else:
            value = self.cond(kind, decl, expr, start)
            self.dots.append(value if kind == "with" else outer)
        self.scopes.append(_Scope(loop=kind == "range"))
        self.blocks.append(_Block(kind, self.line_of(start), 1, outer))

    def cond(self, kind: str, decl: list[str], expr: str, start: int) -> str:
        """Open an if/with test; returns the variable holding the tested value."""
        if decl:
            if len(decl) > 1:
                raise self.fail(start, f"too many declarations in {{{{{kind}}}}}")
            name = self.declare(decl, ":=", start)
            self.tag("{% set " + name + " = " + expr + " %}{% if " + name + " %}", start)
            return name
        if kind == "if":
            self.tag("{% if " + expr + " %}", start)
            return ""
        self.counter += 1
        name = f"_w{self.counter}"
        self.tag("{% set " + name + " = " + expr + " %}{% if " + name + " %}", start)
        return name

    def else_(self, rest: list[Tok], start: int) -> None:
        if not self.blocks:
            raise self.fail(start, "unexpected {{else}}")
        b = self.blocks[-1]
        if b.has_else:
            raise self.fail(start, "expected {{end}} after {{else}}")
        self.scopes[-1] = _Scope(loop=b.kind == "range")
        if not rest:
            b.has_else = True
            self.tag("{% else %}", start)
            self.dots[-1] = b.outer_dot
            return
        chained = rest[0].value if rest[0].kind == "ident" else None
        if (b.kind, chained) not in (("if", "if"), ("with", "with")):
            raise self.fail(rest[0].pos, f"unexpected {rest[0].value!r} after else in "
                                         f"{{{{{b.kind}}}}}")
        if len(rest) == 1:
            raise self.fail(start, f"missing value for else {chained}")
        decl, op, expr = _Pipeline(self, rest[1:], start).parse(decl=True)
        if op == "=":
            raise self.fail(start, f"assignment is not allowed in {{{{else {chained}}}}}")
        self.tag("{% else %}", start)
        value = self.cond(b.kind, decl, expr, start)
        self.dots[-1] = value if b.kind == "with" else b.outer_dot
        b.ends += 1

    # -- variables ---------------------------------------------------------------------------

    def declare(self, names: list[str], op: str | None, start: int) -> str:
        if len(names) != 1:
            raise self.fail(start, "too many declarations")
        name = names[0]
        if name == "":
            raise self.fail(start, "cannot assign to $")
        if op == ":=":
            # A fresh Jinja name per declaration: a Go variable declared inside a block
            # shadows the outer one only until {{end}}, and Jinja's `if` has no scope.
            self.counter += 1
            self.scopes[-1].names[name] = f"_v{self.counter}_{name}"
            return self.scopes[-1].names[name]
        for i in range(len(self.scopes) - 1, -1, -1):
            if name in self.scopes[i].names:
                if any(s.loop for s in self.scopes[i + 1:]):
                    raise self.fail(start, f"assigning to ${name} inside {{{{range}}}} when it "
                                           "was declared outside is not supported")
                return self.scopes[i].names[name]
        raise self.fail(start, f"undefined variable ${name}")

    def variable(self, tok: Tok) -> str:
        if tok.value == "":
            return "_dot0"
        name = str(tok.value)
        for scope in reversed(self.scopes):
            if name in scope.names:
                return scope.names[name]
        raise self.fail(tok.pos, f"undefined variable ${tok.value}")


class _Pipeline:
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
        if head_expr is None:
            args = [self.arg(t, e) for t, e in words[1:]]
            return self.call(head, args + ([piped] if piped is not None else []))
        if len(words) > 1 or piped is not None:
            raise self.tr.fail(head.pos, f"can't give argument to non-function {head.value!r}")
        return head_expr

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
        if name in UNSUPPORTED:
            raise self.tr.fail(tok.pos, f'function "{name}" is not supported: '
                                        f"{UNSUPPORTED[name]}")
        raise self.tr.fail(tok.pos, f'function "{name}" not defined')

    def arity(self, tok: Tok, n: int, low: int, high: int | None) -> None:
        if n < low or (high is not None and n > high):
            want = str(low) if low == high else f"at least {low}"
            raise self.tr.fail(tok.pos, f"wrong number of args for {tok.value}: want {want} "
                                        f"got {n}")
