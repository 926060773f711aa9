"""Scanning Go template text: finding actions, and the tokens inside one."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any


class GoSyntaxError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
            "continue"}
SPACE = " \t\r\n"
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|"
                     r"(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
               "\\": "\\", '"': '"', "'": "'"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)")


@dataclass
class Tok:
    kind: str  # str num bool nil ident field var dot ( ) | , := =
    value: Any
    pos: int
    spaced: bool  # whitespace (or the action's start) right before it


class Scanner:
    """Positions → lines, and the lexer of one action (`{{ ... }}`) or comment."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.newlines = [i for i, c in enumerate(src) if c == "\n"]

    def line_of(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def fail(self, pos: int, message: str) -> GoSyntaxError:
        return GoSyntaxError(self.line_of(pos), message)

    def comment(self, start: int, k: int) -> tuple[int, bool]:
        close = self.src.find("*/", k + 2)
        if close < 0:
            raise self.fail(start, "unclosed comment")
        m = re.compile(r"([ \t\r\n]+-)?}}").match(self.src, close + 2)
        if not m:
            raise self.fail(close, "comment ends before closing delimiter")
        return m.end(), bool(m.group(1))

    def lex(self, start: int, j: int) -> tuple[list[Tok], int, bool]:
        src, p, spaced = self.src, j, True
        toks: list[Tok] = []
        while True:
            if p >= len(src):
                raise self.fail(start, "unclosed action")
            c = src[p]
            if c in SPACE:
                p += 1
                spaced = True
                continue
            if src.startswith("}}", p):
                return toks, p + 2, False
            if c == "-" and src.startswith("}}", p + 1) and src[p - 1] in SPACE:
                return toks, p + 3, True
            m = _NUMBER.match(src, p)
            if m and (c.isdigit() or c in "+-." and m.end() > p + 1):
                toks.append(Tok("num", _number(m.group(0)), p, spaced))
                p = m.end()
            elif c == '"':
                end = p + 1
                while end < len(src) and src[end] != '"':
                    if src[end] == "\n":
                        break
                    end += 2 if src[end] == "\\" else 1
                if end >= len(src) or src[end] != '"':
                    raise self.fail(p, "unterminated quoted string")
                try:
                    toks.append(Tok("str", _unquote(src[p + 1:end]), p, spaced))
                except ValueError as e:
                    raise self.fail(p, str(e)) from None
                p = end + 1
            elif c == "`":
                end = src.find("`", p + 1)
                if end < 0:
                    raise self.fail(p, "unterminated raw quoted string")
                toks.append(Tok("str", src[p + 1:end], p, spaced))
                p = end + 1
            elif c == "'":
                m2 = re.compile(r"'(\\.[^']*|[^'\\])'").match(src, p)
                if not m2:
                    raise self.fail(p, "unterminated character constant")
                toks.append(Tok("num", _rune(m2.group(1)), p, spaced))
                p = m2.end()
            elif c == "." and (m3 := _IDENT.match(src, p + 1)):
                toks.append(Tok("field", m3.group(0), p, spaced))
                p = m3.end()
            elif c == ".":
                toks.append(Tok("dot", ".", p, spaced))
                p += 1
            elif c == "$":
                m4 = _IDENT.match(src, p + 1)
                name = m4.group(0) if m4 else ""
                toks.append(Tok("var", name, p, spaced))
                p = m4.end() if m4 else p + 1
            elif m5 := _IDENT.match(src, p):
                word = m5.group(0)
                if word in ("true", "false"):
                    toks.append(Tok("bool", word == "true", p, spaced))
                elif word == "nil":
                    toks.append(Tok("nil", None, p, spaced))
                else:
                    toks.append(Tok("ident", word, p, spaced))
                p = m5.end()
            elif src.startswith(":=", p):
                toks.append(Tok(":=", ":=", p, spaced))
                p += 2
            elif c in "()|,=":
                toks.append(Tok(c, c, p, spaced))
                p += 1
            else:
                raise self.fail(p, f"unexpected {c!r} in action")
            spaced = False


def _number(text: str) -> int | float:
    t = text.replace("_", "")
    if re.fullmatch(r"[+-]?0[0-7]+", t):
        return int(t, 8)  # Go's legacy octal: 0755
    try:
        return int(t, 0)
    except ValueError:
        return float(t)


def _rune(body: str) -> int:
    """A character constant's value: in `'\\xe9'` the escape is the code itself."""
    m = _ESCAPE.fullmatch(body)
    if m and (m.group(1)[0] == "x" or len(m.group(1)) == 3):
        e = m.group(1)
        return int(e[1:], 16) if e[0] == "x" else int(e, 8)
    return ord(_unquote(body)[:1] or "\0")


def _unquote(body: str) -> str:
    """A Go interpreted string's text. As in Go, `\\xNN` and `\\NNN` are bytes and `\\u`, `\\U`
    are characters: `"\\xe2\\x82\\xac"` is "€". The bytes must form UTF-8 text, since a
    rendered file is text (Go would write the raw bytes)."""
    if "\\" not in body:
        return body
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(body):
        out += body[pos:m.start()].encode()
        pos = m.end()
        e = m.group(1)
        if e[0] == "x":
            out.append(int(e[1:], 16))
        elif e[0] in "01234567" and len(e) == 3:
            if int(e, 8) > 0xFF:
                raise ValueError(f"octal escape value \\{e} > 255")
            out.append(int(e, 8))
        elif e[0] in "uU":
            code = int(e[1:], 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(f"escape sequence \\{e} is not a valid Unicode code point")
            out += chr(code).encode()
        elif e in _GO_ESCAPES:
            out += _GO_ESCAPES[e].encode()
        else:
            raise ValueError(f"unknown escape sequence \\{e}")
    out += body[pos:].encode()
    try:
        return out.decode()
    except UnicodeDecodeError as err:
        raise ValueError(f"escaped bytes {bytes(out[err.start:err.end])!r} are not UTF-8 text "
                         "(a rendered file is text)") from None
