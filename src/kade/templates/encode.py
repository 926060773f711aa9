"""Encoders and decoders of consul-template: explode, byKey, toYAML, toJSON, toTOML, parseJSON."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from kade.templates.values import FunctionError, arg_str, go_type, plain


def explode(pairs: Any) -> dict[str, Any]:
    """A `tree` result → nested maps: `a/b/c = v` becomes {a: {b: {c: v}}}."""
    if not isinstance(pairs, list):
        raise FunctionError(f"explode: expected the result of tree or ls, got {go_type(pairs)}")
    out: dict[str, Any] = {}
    for pair in pairs:
        if not isinstance(pair, Mapping) or "Key" not in pair:
            raise FunctionError("explode: expected the result of tree or ls")
        node = out
        parts = str(pair["Key"]).split("/")
        for i, part in enumerate(parts[:-1]):
            nested = node.setdefault(part, {})
            if not isinstance(nested, dict):
                where = "/".join(parts[: i + 1])
                raise FunctionError(
                    f"explode: {where!r} is a value and also a directory (key {pair['Key']!r})")
            node = nested
        if parts[-1]:
            if isinstance(node.get(parts[-1]), dict):
                raise FunctionError(
                    f"explode: {pair['Key']!r} is a value and also a directory")
            node[parts[-1]] = pair["Value"]
    return out


def by_key(pairs: Any) -> dict[str, dict[str, Any]]:
    """A `tree` result grouped by its top-level directory (consul-template's byKey)."""
    if not isinstance(pairs, list):
        raise FunctionError(f"byKey: expected the result of tree, got {go_type(pairs)}")
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        top, _, rest = str(pair["Key"]).partition("/")
        if rest:
            out.setdefault(top, {})[rest] = {**pair, "Key": rest}
    return out


def by_tag(services: Any) -> dict[str, list[Any]]:
    """`service` results grouped by tag (consul-template's byTag)."""
    out: dict[str, list[Any]] = {}
    for s in services or []:
        for tag in s.get("Tags", []):
            out.setdefault(tag, []).append(s)
    return out


# libyaml's emitter when present: the pure-Python one is most of a render's time.
_BASE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_STR = "tag:yaml.org,2002:str"


class _GoYAMLDumper(_BASE_DUMPER):  # type: ignore[misc]
    """Strings quoted as Go's yaml.v2 (consul-template's) quotes them, so that a file reads
    the same: "8080", "true", "" in double quotes, text of several lines as a `|` block."""


def _go_yaml_str(dumper: Any, data: str) -> Any:
    style = None
    if "\n" in data:
        style = "|"
    elif dumper.resolve(yaml.ScalarNode, data, (True, False)) != _STR:
        style = '"'
    return dumper.represent_scalar(_STR, data, style=style)


_GoYAMLDumper.add_representer(str, _go_yaml_str)
_DUMPER: Any = _GoYAMLDumper


def to_yaml(value: Any) -> str:
    text = yaml.dump(plain(value), Dumper=_DUMPER, default_flow_style=False, sort_keys=True,
                     allow_unicode=True)
    return text.removesuffix("\n...\n").removesuffix("\n")


# What Go's encoding/json escapes for HTML's sake (toJSON; toUnescapedJSON leaves them).
_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                               "\u2028": "\\u2028", "\u2029": "\\u2029"})


def to_json(value: Any) -> str:
    """As Go's json.Marshal: keys sorted, `<`, `>`, `&` escaped (`\\u003c`...)."""
    return to_unescaped_json(value).translate(_HTML_ESCAPES)


def to_json_pretty(value: Any) -> str:
    return to_unescaped_json_pretty(value).translate(_HTML_ESCAPES)


def to_unescaped_json(value: Any) -> str:
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def to_unescaped_json_pretty(value: Any) -> str:
    return json.dumps(plain(value), sort_keys=True, indent=2, ensure_ascii=False)


def parse_json(text: Any) -> Any:
    """JSON text → its value; "" is an empty map, as in consul-template."""
    if arg_str("parseJSON", text) == "":
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FunctionError(f"parseJSON: invalid JSON at line {e.lineno} column {e.colno}: "
                            f"{e.msg}") from None


def parse_yaml(text: Any) -> Any:
    if arg_str("parseYAML", text) == "":
        return {}
    try:
        return yaml.safe_load(arg_str("parseYAML", text))
    except yaml.YAMLError as e:
        raise FunctionError(f"parseYAML: invalid YAML: {e}") from None


_TOML_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(value: Any) -> str:
    if not isinstance(value, Mapping):
        raise FunctionError(f"toTOML: expected a map, got {go_type(value)}")
    lines: list[str] = []
    _toml_table(plain(value), [], lines)
    return "\n".join(lines).strip("\n")


def _toml_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    subtables = []
    for k in sorted(table):
        v = table[k]
        if isinstance(v, dict):
            subtables.append(k)
        elif v is not None:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k in subtables:
        lines.append("")
        lines.append("[" + ".".join(_toml_key(p) for p in [*path, k]) + "]")
        _toml_table(table[k], [*path, k], lines)


def _toml_key(k: str) -> str:
    return k if _TOML_BARE.match(k) else json.dumps(k, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = (f"{_toml_key(k)} = {_toml_value(x)}" for k, x in sorted(v.items())
                 if x is not None)
        return "{" + ", ".join(items) + "}"
    raise FunctionError(f"toTOML: cannot encode {go_type(v)}")


def export_tree(prefix: str, pairs: list[tuple[str, bytes]]) -> dict[str, Any]:
    """The keys under `prefix` as `kade kv export` and the web interface's export give them:
    nested by "/", relative to `prefix`, values as text. A ValueError names a key that cannot
    be exported (a binary value, a key that is also a folder)."""
    items = []
    for key, value in pairs:
        try:
            text = value.decode()
        except UnicodeDecodeError:
            raise ValueError(f"{key}: a binary value cannot be exported as text") from None
        items.append({"Key": key[len(prefix):], "Value": text})
    try:
        return explode(items)
    except FunctionError as e:
        raise ValueError(str(e).removeprefix("explode: ")) from None
