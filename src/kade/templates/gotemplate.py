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

from kade.templates.golex import KEYWORDS, SPACE, GoSyntaxError, Scanner, Tok
from kade.templates.gopipeline import NamedTemplates, Pipeline


@dataclass
class _Block:
    kind: str  # if | with | range
    line: int
    ends: int
    outer_dot: str
    has_else: bool = False
    saved: list[_Scope] | None = None  # a define's: the scopes outside it


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
        self.dollar = ["_dot0"]  # `$`: the top-level data, or a define's
        self.named = NamedTemplates()
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
        for name, pos in self.named.calls:
            if name not in self.named.defined:
                raise self.fail(pos, f"no such template {name!r}")
        return "".join(self.out)

    # -- actions -----------------------------------------------------------------------------

    def action(self, toks: list[Tok], start: int) -> None:
        if not toks:
            raise self.fail(start, "missing value for command")
        first = toks[0]
        if first.kind == "ident" and first.value in KEYWORDS:
            self.keyword(first.value, toks[1:], start)
            return
        decl, op, expr = Pipeline(self, toks, start).parse(decl=True)
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
            if b.saved is not None:
                self.tag(NamedTemplates.CLOSE, start)
                self.scopes = b.saved
                self.dollar.pop()
            else:
                closer = "{% endfor %}" if b.kind == "range" else "{% endif %}"
                self.tag(closer * b.ends, start)
                del self.scopes[-2:]
            self.dots.pop()
        elif word in ("break", "continue"):
            if not any(b.kind == "range" for b in self.blocks):
                raise self.fail(start, f"{{{{{word}}}}} outside {{{{range}}}}")
            self.tag("{% " + word + " %}", start)
        elif word in ("define", "block", "template"):
            self.named_template(word, rest, start)
        else:
            raise self.fail(start, f"{{{{{word}}}}} is not supported: write the template inline")

    def open(self, kind: str, rest: list[Tok], start: int) -> None:
        if not rest:
            raise self.fail(start, f"missing value for {kind}")
        decl, op, expr = Pipeline(self, rest, start).parse(decl=True, many=kind == "range")
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
        if b.saved is not None:
            raise self.fail(start, f"unexpected {{{{else}}}} in {{{{{b.kind}}}}}")
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
        decl, op, expr = Pipeline(self, rest[1:], start).parse(decl=True)
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
            return self.dollar[-1]
        name = str(tok.value)
        for scope in reversed(self.scopes):
            if name in scope.names:
                return scope.names[name]
        raise self.fail(tok.pos, f"undefined variable ${tok.value}")

    # -- named templates ---------------------------------------------------------------------

    def named_template(self, word: str, rest: list[Tok], start: int) -> None:
        """`{{ define "n" }}`, `{{ block "n" p }}` (define, then run it here) and
        `{{ template "n" p }}`: a define becomes a Jinja block that is never output where it
        stands, so that it can be run from anywhere (Go's defines are hoisted)."""
        if not rest or rest[0].kind != "str":
            raise self.fail(start, f"{{{{{word}}}}} needs a template name in quotes")
        name = str(rest[0].value)
        expr = Pipeline(self, rest[1:], start).parse()[2] if len(rest) > 1 else "none"
        if word != "template":
            if word == "define" and len(rest) > 1:
                raise self.fail(rest[1].pos, "unexpected tokens after the name in {{define}}")
            if self.blocks:
                raise self.fail(start, f"{{{{{word}}}}} is only allowed at the top level")
            if name in self.named.defined:
                raise self.fail(start, f"template {name!r} is defined twice")
        if word != "define":
            self.tag("{{ _out(" + self.named.call(name, expr, start) + ") }}", start)
        if word == "template":
            return
        self.counter += 1
        dot = f"_dot{self.counter}"
        self.tag(self.named.open(name, self.line_of(start), dot), start)
        self.blocks.append(_Block(word, self.line_of(start), 1, self.dots[-1],
                                  saved=self.scopes))
        self.scopes = [_Scope(), _Scope()]
        self.dots.append(dot)
        self.dollar.append(dot)
