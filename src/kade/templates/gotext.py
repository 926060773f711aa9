"""consul-template's text functions: trimming, indenting, splitting, regular expressions,
hashes and URL-safe base64, each as its Go original behaves (argument order included: a
piped value is the last argument).

Regular expressions are RE2's (Go's own syntax, linear time): a pattern in a template cannot
make a render take exponential time, and a pattern RE2 refuses (backreferences, lookaround)
is an error that says so.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from typing import Any

import re2

from kade.templates import limits
from kade.templates.values import FunctionError, arg_str

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the author, not stderr
# Memory of one compiled pattern (RE2's default is 8 MiB): with the cache below, patterns
# cost a worker process at most 64 MiB; past it a match falls back to a slower linear scan.
_RE2_OPTIONS.max_mem = 2 << 20


def trim(cutset: Any, text: Any) -> str:
    """strings.Trim: every leading and trailing character found in `cutset`."""
    return arg_str("trim", text).strip(arg_str("trim", cutset))


def trim_prefix(prefix: Any, text: Any) -> str:
    return arg_str("trimPrefix", text).removeprefix(arg_str("trimPrefix", prefix))


def trim_suffix(suffix: Any, text: Any) -> str:
    return arg_str("trimSuffix", text).removesuffix(arg_str("trimSuffix", suffix))


def trim_space(text: Any) -> str:
    return arg_str("trimSpace", text).strip()


def to_title(text: Any) -> str:
    """Each word's first letter in upper case, the others left as they are (Go's
    `cases.Title(..., NoLower)`: "hELLO wORLD" → "HELLO WORLD")."""
    s = arg_str("toTitle", text)
    out, start = [], True
    for c in s:
        out.append(c.upper() if start and c.isalpha() else c)
        start = not (c.isalnum() or c in "'_")
    return "".join(out)


def split(sep: Any, text: Any) -> list[str]:
    """strings.Split of the text with surrounding white space trimmed; nothing → []."""
    s, p = arg_str("split", text).strip(), arg_str("split", sep)
    if s == "":
        return []
    if p == "":
        return list(s)
    return s.split(p)


def split_to_map(sep: Any, kv_sep: Any, text: Any) -> dict[str, str]:
    """`"a:x,b:y" | splitToMap "," ":"` → map[a:x b:y]; items without `kv_sep` are left out."""
    s = arg_str("splitToMap", text).strip()
    p, q = arg_str("splitToMap", sep), arg_str("splitToMap", kv_sep)
    if s == "":
        return {}
    out: dict[str, str] = {}
    for item in (s.split(p) if p else list(s)):
        k, found, v = item.partition(q)
        if found:
            out[k] = v
    return out


def indent(spaces: Any, text: Any) -> str:
    """Every line that is not empty, prefixed with `spaces` spaces."""
    if isinstance(spaces, bool) or not isinstance(spaces, int):
        raise FunctionError("indent: the number of spaces must be an integer")
    if spaces < 0:
        raise FunctionError("indent: the number of spaces must not be negative")
    s = arg_str("indent", text)
    lines = s.split("\n")
    padded = sum(1 for line in lines if line)
    limits.check_size("indent", s, len(s) + padded * spaces)
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in lines)


@functools.lru_cache(maxsize=32)
def _compile(fn: str, pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "cannot be compiled"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise FunctionError(f"{fn}: {pattern!r}: {reason} (RE2 syntax, as Go's: no "
                            "backreferences or lookaround)") from None


def regex_match(pattern: Any, text: Any) -> bool:
    """Whether the pattern matches anywhere in the text (Go's MatchString)."""
    rx = _compile("regexMatch", arg_str("regexMatch", pattern))
    return rx.search(arg_str("regexMatch", text)) is not None


def regex_replace_all(pattern: Any, replacement: Any, text: Any) -> str:
    """Go's ReplaceAllString: `$1`, `${name}` in the replacement are groups, `$$` is `$`; an
    empty match right after a match is skipped, as Go does."""
    rx = _compile("regexReplaceAll", arg_str("regexReplaceAll", pattern))
    repl, s = arg_str("regexReplaceAll", replacement), arg_str("regexReplaceAll", text)
    out: list[str] = []
    size = 0
    last_end, pos = 0, 0
    while pos <= len(s):
        m = rx.search(s, pos)
        if m is None:
            break
        start, end = m.span()
        piece = s[last_end:start]
        if end > last_end or start == 0:
            piece += _expand(repl, m, rx.groupindex)
        size += len(piece)
        limits.check_size("regexReplaceAll", s, size + len(s) - end)
        out.append(piece)
        last_end = end
        pos = pos + 1 if pos >= end else end
    out.append(s[last_end:])
    return "".join(out)


def _expand(template: str, m: Any, names: Any) -> str:
    """Go's Regexp.Expand: `$name` takes the longest run of letters, digits and `_`."""
    if "$" not in template:
        return template
    out: list[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        if c != "$" or i + 1 == len(template):
            out.append(c)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            close = template.find("}", i + 2)
            name = template[i + 2:close] if close > 0 else ""
            if not name or not _is_name(name):
                out.append(c)
                i += 1
                continue
            i = close + 1
        else:
            j = i + 1
            while j < len(template) and _is_name(template[j]):
                j += 1
            if j == i + 1:
                out.append(c)
                i += 1
                continue
            name, i = template[i + 1:j], j
        out.append(_group(m, names, name))
        limits.check_size("regexReplaceAll", template, sum(len(x) for x in out))
    return "".join(out)


def _is_name(text: str) -> bool:
    return all(ch.isalnum() or ch == "_" for ch in text)


def _group(m: Any, names: Any, name: str) -> str:
    if name.isdigit():
        n = int(name)
        if n > m.re.groups:
            return ""
        value = m.group(n)
    elif name in names:
        value = m.group(name)
    else:
        return ""
    return value or ""


def base64_url_encode(text: Any) -> str:
    return base64.urlsafe_b64encode(arg_str("base64URLEncode", text).encode()).decode()


def base64_url_decode(text: Any) -> str:
    s = arg_str("base64URLDecode", text)
    try:
        if len(s) % 4:
            raise binascii.Error("incorrect padding")
        return base64.b64decode(s, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise FunctionError("base64URLDecode: not valid URL-safe base64 of UTF-8 "
                            "text") from None


def sha256_hex(text: Any) -> str:
    return hashlib.sha256(arg_str("sha256Hex", text).encode()).hexdigest()


def md5sum(text: Any) -> str:
    return hashlib.md5(arg_str("md5sum", text).encode(), usedforsecurity=False).hexdigest()


def hmac_sha256_hex(message: Any, key: Any) -> str:
    """`hmacSHA256Hex "message" "key"`, as consul-template's argument order."""
    return hmac.new(arg_str("hmacSHA256Hex", key).encode(),
                    arg_str("hmacSHA256Hex", message).encode(), hashlib.sha256).hexdigest()
