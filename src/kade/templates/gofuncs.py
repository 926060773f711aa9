"""Go's text/template builtins and consul-template's small helpers, and the table of every
pure function by its template name."""

from __future__ import annotations

import base64
import json
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kade.templates import encode, godata, gotext, limits
from kade.templates.values import FunctionError, arg_str, go_str, go_type

_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def printf(fmt: Any, *args: Any) -> str:
    """Go's fmt.Sprintf for the common verbs: %s %v %d %f %e %g %x %X %o %b %q %t %%."""
    fmt = arg_str("printf", fmt)
    queue = list(args)
    out: list[str] = []
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2) or "", m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if not queue:
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = queue.pop(0)
        out.append(_format_one(verb, flags, width, prec, arg))
    out.append(fmt[pos:])
    if queue:
        out.append("%!(EXTRA " + ", ".join(f"{go_type(a)}={go_str(a)}" for a in queue) + ")")
    return "".join(out)


def _format_one(verb: str, flags: str, width: str, prec: str | None, arg: Any) -> str:
    limits.check_size("printf", "", max(int(width or 0), int(prec or 0)))
    left = "-" in flags
    dot = f".{prec}" if prec is not None else ""
    if verb in "svq":
        text = go_str(arg) if verb != "q" else json.dumps(go_str(arg), ensure_ascii=False)
        return format(text, ("<" if left else ">") + width + dot)
    if verb == "t":
        return go_str(arg) if isinstance(arg, bool) else f"%!t({go_type(arg)}={go_str(arg)})"
    if isinstance(arg, bool) or not isinstance(arg, int | float) or verb not in "dxXobfeEgG":
        return f"%!{verb}({go_type(arg)}={go_str(arg)})"
    sign = "+" if "+" in flags else (" " if " " in flags else "")
    alt = "#" if "#" in flags and verb in "xXob" else ""
    if left:
        spec = f"<{sign}{alt}{width}"
    else:
        spec = f"{sign}{alt}{'0' if '0' in flags and width else ''}{width}"
    if verb in "dxXob":
        return format(int(arg), spec + ("d" if verb == "d" else verb))
    return format(float(arg), spec + (dot or (".6" if verb in "feE" else "")) + verb)


def go_print(*args: Any) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out = ""
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_str(a, False)
    return out


def go_println(*args: Any) -> str:
    return " ".join(go_str(a, False) for a in args) + "\n"


def go_len(value: Any) -> int:
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise FunctionError(f"len of {go_type(value)}")


def go_index(value: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(value, Mapping):
            value = value.get(k)
        elif isinstance(value, list | tuple | str):
            if isinstance(k, bool) or not isinstance(k, int):
                raise FunctionError(f"index: cannot index a slice with {go_type(k)}")
            if not 0 <= k < len(value):
                raise FunctionError(f"index: index out of range: {k}")
            value = value[k]
        else:
            raise FunctionError(f"index of untyped nil or {go_type(value)}")
    return value


def _seq(fn: str, value: Any) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise FunctionError(f"{fn}: expected a list, got {go_type(value)}")
    return value


def contains(item: Any, seq: Any) -> bool:
    return item in _seq("contains", seq)


def contains_all(items: Any, seq: Any) -> bool:
    have = _seq("containsAll", seq)
    return all(i in have for i in _seq("containsAll", items))


def contains_any(items: Any, seq: Any) -> bool:
    have = _seq("containsAny", seq)
    return any(i in have for i in _seq("containsAny", items))


def contains_none(items: Any, seq: Any) -> bool:
    return not contains_any(items, seq)


def in_(seq: Any, item: Any) -> bool:
    if isinstance(seq, str):
        return arg_str("in", item) in seq
    return item in _seq("in", seq)


def join(sep: Any, items: Any) -> str:
    text, seq = arg_str("join", sep), _seq("join", items)
    limits.check_join("join", seq, text)
    return text.join(go_str(x, False) for x in seq)


def replace_all(old: Any, new: Any, text: Any) -> str:
    s, o, n = (arg_str("replaceAll", v) for v in (text, old, new))
    limits.check_replace("replaceAll", s, o, n)
    return s.replace(o, n)


def base64_decode(text: Any) -> str:
    try:
        return base64.b64decode(arg_str("base64Decode", text), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise FunctionError("base64Decode: not valid base64 of UTF-8 text") from None


def parse_bool(text: Any) -> bool:
    t = arg_str("parseBool", text)
    if t == "":
        return False
    if t in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if t in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise FunctionError(f"parseBool: invalid syntax: {t!r}")


def parse_int(text: Any) -> int:
    """Base 10, as consul-template (`"010"` is 10); "" is 0."""
    return godata.parse_int_go("parseInt", arg_str("parseInt", text))


def parse_float(text: Any) -> float:
    if arg_str("parseFloat", text) == "":
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise FunctionError(f"parseFloat: invalid syntax: {text!r}") from None


def _num(fn: str, v: Any) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise FunctionError(f"{fn}: expected a number, got {go_type(v)}")
    return v


def _truncated(x: int, y: int) -> int:
    """Go's integer division, which truncates toward zero (-7 / 2 is -3, Python's -4)."""
    q = abs(x) // abs(y)
    return q if (x < 0) == (y < 0) else -q


def _divide(b: Any, a: Any) -> int | float:
    x, y = _num("divide", a), _num("divide", b)
    if y == 0:
        raise FunctionError("divide: division by zero")
    return _truncated(x, y) if isinstance(x, int) and isinstance(y, int) else x / y


def _modulo(b: Any, a: Any) -> int | float:
    """Go's %: the remainder has the sign of the dividend (-7 % 2 is -1)."""
    x, y = _num("modulo", a), _num("modulo", b)
    if y == 0:
        raise FunctionError("modulo: division by zero")
    if isinstance(x, int) and isinstance(y, int):
        return x - y * _truncated(x, y)
    return math.fmod(x, y)


# Pure functions by their template name. Argument order follows consul-template, where a
# piped value arrives as the last argument: `{{ 10 | subtract 3 }}` is subtract(3, 10) = 7.
PURE: dict[str, Callable[..., Any]] = {
    "explode": encode.explode, "byKey": encode.by_key, "byTag": encode.by_tag,
    "toYAML": encode.to_yaml, "toJSON": encode.to_json, "toJSONPretty": encode.to_json_pretty,
    "toTOML": encode.to_toml, "toUnescapedJSON": encode.to_unescaped_json,
    "toUnescapedJSONPretty": encode.to_unescaped_json_pretty,
    "parseJSON": encode.parse_json, "parseYAML": encode.parse_yaml,
    "parseBool": parse_bool, "parseInt": parse_int, "parseFloat": parse_float,
    "parseUint": godata.parse_uint,
    "contains": contains, "containsAll": contains_all, "containsAny": contains_any,
    "containsNone": contains_none, "containsNotAll": godata.contains_not_all, "in": in_,
    "split": gotext.split, "splitToMap": gotext.split_to_map, "join": join,
    "replaceAll": replace_all, "regexReplaceAll": gotext.regex_replace_all,
    "regexMatch": gotext.regex_match,
    "toLower": lambda s: arg_str("toLower", s).lower(),
    "toUpper": lambda s: arg_str("toUpper", s).upper(),
    "toTitle": gotext.to_title, "trimSpace": gotext.trim_space, "trim": gotext.trim,
    "trimPrefix": gotext.trim_prefix, "trimSuffix": gotext.trim_suffix,
    "indent": gotext.indent,
    "base64Encode": lambda s: base64.b64encode(arg_str("base64Encode", s).encode()).decode(),
    "base64Decode": base64_decode, "base64URLEncode": gotext.base64_url_encode,
    "base64URLDecode": gotext.base64_url_decode,
    "sha256Hex": gotext.sha256_hex, "md5sum": gotext.md5sum,
    "hmacSHA256Hex": gotext.hmac_sha256_hex,
    "loop": godata.loop, "mergeMap": godata.merge_map,
    "mergeMapWithOverride": godata.merge_map_with_override, "explodeMap": godata.explode_map,
    "byMeta": godata.by_meta, "byPort": godata.by_port, "spew_sdump": godata.spew_sdump,
    "minimum": godata.minimum, "maximum": godata.maximum,
    "add": lambda b, a: _num("add", a) + _num("add", b),
    "subtract": lambda b, a: _num("subtract", a) - _num("subtract", b),
    "multiply": lambda b, a: _num("multiply", a) * _num("multiply", b),
    "divide": _divide, "modulo": _modulo,
    # Go's builtins (and/or/not/eq/ne/lt/le/gt/ge are operators after translation)
    "len": go_len, "index": go_index, "print": go_print, "printf": printf,
    "println": go_println,
    "html": lambda s: go_str(s).replace("&", "&amp;").replace("<", "&lt;")
    .replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;"),
    "js": lambda s: json.dumps(go_str(s))[1:-1].replace("<", "\\u003C").replace(">", "\\u003E"),
    "urlquery": lambda *a: urllib.parse.quote_plus(go_print(*a)),
}

LOOKUPS = ("key", "keyOrDefault", "keyExists", "ls", "safeLs", "tree", "safeTree", "service",
           "services", "env", "envOrDefault", "mustEnv")

# (min, max) arguments; max None = any number. Checked when a template is parsed.
ARITY: dict[str, tuple[int, int | None]] = {
    "key": (1, 1), "keyOrDefault": (2, 2), "keyExists": (1, 1), "ls": (1, 1), "safeLs": (1, 1),
    "tree": (1, 1), "safeTree": (1, 1), "service": (1, 2), "services": (0, 1), "env": (1, 1),
    "envOrDefault": (2, 2), "mustEnv": (1, 1),
    "explode": (1, 1), "byKey": (1, 1), "byTag": (1, 1), "toYAML": (1, 1), "toJSON": (1, 1),
    "toJSONPretty": (1, 1), "toTOML": (1, 1), "toUnescapedJSON": (1, 1),
    "toUnescapedJSONPretty": (1, 1), "parseJSON": (1, 1), "parseYAML": (1, 1),
    "parseBool": (1, 1), "parseInt": (1, 1), "parseFloat": (1, 1), "parseUint": (1, 1),
    "contains": (2, 2), "containsAll": (2, 2), "containsAny": (2, 2), "containsNone": (2, 2),
    "containsNotAll": (2, 2), "in": (2, 2), "split": (2, 2), "splitToMap": (3, 3),
    "join": (2, 2), "replaceAll": (3, 3), "regexReplaceAll": (3, 3), "regexMatch": (2, 2),
    "toLower": (1, 1), "toUpper": (1, 1), "toTitle": (1, 1), "trimSpace": (1, 1),
    "trim": (2, 2), "trimPrefix": (2, 2), "trimSuffix": (2, 2), "indent": (2, 2),
    "base64Encode": (1, 1), "base64Decode": (1, 1), "base64URLEncode": (1, 1),
    "base64URLDecode": (1, 1), "sha256Hex": (1, 1), "md5sum": (1, 1), "hmacSHA256Hex": (2, 2),
    "loop": (1, 2), "mergeMap": (2, 2), "mergeMapWithOverride": (2, 2), "explodeMap": (1, 1),
    "byMeta": (2, 2), "byPort": (1, 1), "spew_sdump": (1, 1),
    "add": (2, 2), "subtract": (2, 2), "multiply": (2, 2), "divide": (2, 2), "modulo": (2, 2),
    "minimum": (2, 2), "maximum": (2, 2),
    "len": (1, 1), "index": (1, None), "print": (0, None), "printf": (1, None),
    "println": (0, None), "html": (1, 1), "js": (1, 1), "urlquery": (0, None),
}

# consul-template functions kade knows of but does not offer, with the reason.
UNSUPPORTED = {
    **dict.fromkeys(("secret", "secrets", "pkiCert", "caLeaf", "caRoots", "connect"),
                    "there is no Vault or Connect"),
    **dict.fromkeys(("file", "plugin", "writeToFile", "sockaddr"),
                    "templates cannot reach files, processes or the host's network"),
    **dict.fromkeys(("timestamp",), "renders are pure: the time is not an input"),
    **dict.fromkeys(("node", "nodes"), "a render's input has services, not nodes: "
                    "`service` gives each endpoint's .Node and .NodeAddress"),
    **dict.fromkeys(("datacenters",), "there is one datacenter"),
    **dict.fromkeys(("nomadServices", "nomadService", "nomadVar", "nomadVarList",
                     "nomadVarListSafe", "nomadVarExists"), "there is no Nomad"),
    **dict.fromkeys(("partitions", "peerings", "exportedServices"),
                    "there are no Consul admin partitions or peerings"),
    **dict.fromkeys(("spew_dump", "spew_printf", "spew_sprintf"),
                    "debug output goes nowhere: use spew_sdump"),
}
