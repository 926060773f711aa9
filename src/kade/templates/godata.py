"""consul-template's functions over lists, maps and numbers (loop, mergeMap, explodeMap,
byMeta, byPort, minimum, ...), and `scratch`, the per-render scratch pad.

Each follows its Go original, a piped value being the last argument; each that builds a
list or a map checks the size it is about to make against the render's cap (`limits`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kade.templates import limits
from kade.templates.values import FunctionError, arg_str, go_str, go_type


def _int(fn: str, value: Any) -> int:
    """An integer argument; text is parsed as consul-template's `loop` does ("3" → 3)."""
    if isinstance(value, bool):
        raise FunctionError(f"{fn}: bad argument type: bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_int_go(fn, value)
    raise FunctionError(f"{fn}: bad argument type: {go_type(value)}")


def parse_int_go(fn: str, text: str) -> int:
    """strconv.ParseInt(text, 10, 64), with "" as 0 (consul-template's parseInt)."""
    if text == "":
        return 0
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        raise FunctionError(f"{fn}: parsing {text!r}: invalid syntax")
    n = int(text)
    if not -(1 << 63) <= n < (1 << 63):
        raise FunctionError(f"{fn}: parsing {text!r}: value out of range")
    return n


def parse_uint(text: Any) -> int:
    s = arg_str("parseUint", text)
    if s == "":
        return 0
    if not s.isascii() or not s.isdigit():
        raise FunctionError(f"parseUint: parsing {s!r}: invalid syntax")
    n = int(s)
    if n >= 1 << 64:
        raise FunctionError(f"parseUint: parsing {s!r}: value out of range")
    return n


def loop(*args: Any) -> list[int]:
    """`loop 3` → 0 1 2; `loop 1 3` → 1 2 (numbers, or text of numbers)."""
    if len(args) not in (1, 2):
        raise FunctionError(f"loop: wrong number of arguments, expected 1 or 2, but got "
                            f"{len(args)}")
    start, stop = (0, _int("loop", args[0])) if len(args) == 1 else \
        (_int("loop", args[0]), _int("loop", args[1]))
    limits.check_size("loop", [], stop - start)
    return list(range(start, stop))


def _num(fn: str, v: Any) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise FunctionError(f"{fn}: unknown type for {go_str(v, False)!r} ({go_type(v)})")
    return v


def minimum(b: Any, a: Any) -> int | float:
    x, y = _num("minimum", a), _num("minimum", b)
    return x if x < y else y


def maximum(b: Any, a: Any) -> int | float:
    x, y = _num("maximum", a), _num("maximum", b)
    return x if x > y else y


def _map(fn: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FunctionError(f"{fn}: expected a map, got {go_type(value)}")
    return value


def _merged(dst: Mapping[str, Any], src: Mapping[str, Any], override: bool) -> dict[str, Any]:
    """As Go's mergo: an empty value of `dst` (missing, nil, "", 0, false, empty) takes
    `src`'s; with override, any value of `dst` does, unless `src`'s is empty."""
    out = dict(dst)
    for k, v in src.items():
        mine = out.get(k)
        if isinstance(mine, Mapping) and isinstance(v, Mapping):
            out[k] = _merged(mine, v, override)
        elif not mine or (override and v):
            out[k] = v
    limits.check_size("mergeMap", out, len(out))
    return out


def merge_map(dst: Any, src: Any) -> dict[str, Any]:
    """`$b | mergeMap $a`: $a with the keys of $b it lacks (nested maps merged too)."""
    return _merged(_map("mergeMap", dst), _map("mergeMap", src), False)


def merge_map_with_override(dst: Any, src: Any) -> dict[str, Any]:
    """`$b | mergeMapWithOverride $a`: $a with every key of $b, $b's values winning."""
    return _merged(_map("mergeMapWithOverride", dst), _map("mergeMapWithOverride", src), True)


def explode_map(value: Any) -> dict[str, Any]:
    """A one-level map with `a/b` keys → nested maps, as `explode` does for a tree."""
    flat = _map("explodeMap", value)
    out: dict[str, Any] = {}
    for key in sorted(flat):
        node = out
        parts = str(key).split("/")
        for part in parts[:-1]:
            nested = node.setdefault(part, {})
            if not isinstance(nested, dict):
                raise FunctionError(f"explodeMap: not a map: {key!r}: {part!r} already has "
                                    f"value {go_str(nested, False)!r}")
            node = nested
        if parts[-1]:
            node[parts[-1]] = flat[key]
    return out


def contains_not_all(items: Any, seq: Any) -> bool:
    """Whether some of `items` is not in the list."""
    have = _list("containsNotAll", seq)
    return any(i not in have for i in _list("containsNotAll", items))


def _list(fn: str, value: Any) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise FunctionError(f"{fn}: expected a list, got {go_type(value)}")
    return value


def _service(fn: str, s: Any) -> Mapping[str, Any]:
    if not isinstance(s, Mapping) or "Port" not in s:
        raise FunctionError(f"{fn}: wrong argument type: expected the result of service, got "
                            f"a list of {go_type(s)}")
    return s


def by_port(services: Any) -> dict[int, list[Any]]:
    """`service` results grouped by port."""
    out: dict[int, list[Any]] = {}
    for s in _list("byPort", services):
        out.setdefault(_service("byPort", s)["Port"], []).append(s)
    return out


def by_meta(meta: Any, services: Any) -> dict[str, list[Any]]:
    """`service` results grouped by the values of the comma-separated meta keys, joined by
    `_` (characters other than letters, digits, `_` and `-` become `_`); `key|int` pads a
    number to five digits so that groups sort by it. A missing key is `_no_<key>_`, or 0
    for `|int` (as consul-template)."""
    names = arg_str("byMeta", meta).split(",")
    out: dict[str, list[Any]] = {}
    for s in _list("byMeta", services):
        values = _service("byMeta", s).get("ServiceMeta") or {}
        parts = []
        for name in names:
            key = name.removesuffix("|int")
            value = str(values.get(key) or ("0" if key != name else f"_no_{key}_"))
            if key != name:
                digits = value[1:] if value[:1] in "+-" else value
                if not (digits.isascii() and digits.isdigit()):
                    raise FunctionError(f"byMeta: {key}: cannot parse {value!r} as a number "
                                        f"(service {s.get('ID', '')!r})")
                value = f"{int(value):05d}"
            parts.append("".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_"
                                 for c in value))
        out.setdefault("_".join(parts), []).append(s)
    return out


def spew_sdump(value: Any) -> str:
    """go-spew's Sdump of plain values (strings, numbers, booleans, lists, maps)."""
    return _spew(value, 0) + "\n"


def _spew(v: Any, depth: int) -> str:
    pad = " " * depth
    if isinstance(v, str):
        return f'(string) (len={len(v.encode())}) "{v}"'
    if isinstance(v, bool):
        return f"(bool) {'true' if v else 'false'}"
    if isinstance(v, int):
        return f"(int) {v}"
    if isinstance(v, float):
        return f"(float64) {go_str(v)}"
    if v is None:
        return "(interface {}) <nil>"
    if isinstance(v, list | tuple):
        kinds = {go_type(x) for x in v}
        elem = "string" if kinds == {"string"} else "interface {}"
        items = [_spew(x, depth + 1) for x in v]
        head = f"([]{elem}) (len={len(v)} cap={len(v)})"
        if not items:
            return head + " {\n" + pad + "}"
        return head + " {\n" + ",\n".join(f"{pad} {x}" for x in items) + "\n" + pad + "}"
    if isinstance(v, Mapping):
        keys = sorted(v, key=str)
        items = [f"{pad} {_spew(k, depth + 1)}: {_spew(v[k], depth + 1)}" for k in keys]
        head = f"(map[string]interface {{}}) (len={len(v)})"
        return head + " {\n" + ",\n".join(items) + ("\n" if items else "") + pad + "}"
    raise FunctionError(f"spew_sdump: cannot show a {go_type(v)}")


class Scratch:
    """consul-template's `scratch`: values a render keeps for itself (`scratch.Set "a" 1`,
    `scratch.Get "a"`), gone when the render ends. Methods keep Go's names, so a template
    calls them unchanged."""

    METHODS = {"Key": (1, 1), "Get": (1, 1), "Set": (2, 2), "SetX": (2, 2),
               "MapSet": (3, 3), "MapSetX": (3, 3), "MapValues": (1, 1)}

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def Key(self, key: Any) -> bool:  # noqa: N802 (Go's name)
        return arg_str("scratch.Key", key) in self._values

    def Get(self, key: Any) -> Any:  # noqa: N802
        return self._values.get(arg_str("scratch.Get", key))

    def Set(self, key: Any, value: Any) -> str:  # noqa: N802
        self._put("scratch.Set", key, value, True)
        return ""

    def SetX(self, key: Any, value: Any) -> str:  # noqa: N802
        self._put("scratch.SetX", key, value, False)
        return ""

    def MapSet(self, key: Any, map_key: Any, value: Any) -> str:  # noqa: N802
        self._map_put("scratch.MapSet", key, map_key, value, True)
        return ""

    def MapSetX(self, key: Any, map_key: Any, value: Any) -> str:  # noqa: N802
        self._map_put("scratch.MapSetX", key, map_key, value, False)
        return ""

    def MapValues(self, key: Any) -> list[Any] | None:  # noqa: N802
        m = self._values.get(arg_str("scratch.MapValues", key))
        if not isinstance(m, dict):
            return None
        return [m[k] for k in sorted(m)]

    def _put(self, fn: str, key: Any, value: Any, override: bool) -> None:
        k = arg_str(fn, key)
        limits.check_size(fn, self._values, len(self._values) + 1)
        if override or k not in self._values:
            self._values[k] = value

    def _map_put(self, fn: str, key: Any, map_key: Any, value: Any, override: bool) -> None:
        k, mk = arg_str(fn, key), arg_str(fn, map_key)
        if k not in self._values:
            self._put(fn, k, {}, True)
        m = self._values[k]
        if not isinstance(m, dict):
            raise FunctionError(f"{fn}: {k!r} is not a map")
        limits.check_size(fn, m, len(m) + 1)
        if override or mk not in m:
            m[mk] = value
