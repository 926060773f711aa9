"""JSON or YAML text → plain data, safely: a hostile document is refused before it is built.

Three things make a small document expensive or dangerous to read, and each is refused here
rather than left to the parser:

- YAML aliases (`*name`): a few hundred bytes of nested anchors expand to gigabytes ("billion
  laughs"). kade refuses every alias (and so merge keys `<<: *base`): an app definition is
  written out, not composed. Anchors without aliases are harmless and accepted.
- nesting: Python's JSON and YAML readers recurse, so thousands of `[` end in RecursionError.
  The depth is measured first (on the text for JSON, on the event stream for YAML) and a
  document deeper than `max_depth` is never parsed.
- numbers that JSON cannot store (`Infinity`, `NaN`, `1e999`, YAML's `.inf`): refused with the
  field's path, as are YAML-only values (binary, sets); YAML timestamps stay the text written.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml

from kade.spec.errors import DocumentError, DocumentRefused

MAX_DEPTH = 32  # objects and lists inside each other; an app definition needs about 6
MAX_INT = 2**63 - 1  # what SQLite, Go and most JSON readers hold
MAX_YAML_EVENTS = 100_000  # values, lists and maps of one YAML document; an app has ~100


class _Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """The safe loader, with timestamps kept as the text written (`2026-01-02` is a label
    value, not a date)."""


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: linear time
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def load_document(text: str, filename: str = "", *, max_depth: int = MAX_DEPTH) -> Any:
    """JSON or YAML text → data. YAML is a superset, but JSON errors read better as JSON.

    Raises DocumentError (syntax) or DocumentRefused (depth, aliases)."""
    stripped = text.lstrip()
    if filename.endswith(".json") or stripped.startswith(("{", "[")):
        data = _load_json(text, max_depth)
    else:
        data = _load_yaml(text, max_depth)
    problems: list[str] = []
    _check_values(data, "", problems)
    if problems:
        raise DocumentError(problems)
    return data


def _load_json(text: str, max_depth: int) -> Any:
    if _json_depth(text, max_depth) > max_depth:
        raise DocumentRefused([f"document: nested deeper than {max_depth} levels"])
    try:
        return json.loads(text, parse_constant=_json_constant)
    except json.JSONDecodeError as e:
        raise DocumentError([f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"]) from e
    except (ValueError, RecursionError) as e:
        raise DocumentError([f"invalid JSON: {e}"]) from e


def _json_depth(text: str, limit: int) -> int:
    """The deepest nesting of `[`/`{` outside strings; stops counting past `limit`."""
    depth = deepest = 0
    for ch in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _json_constant(name: str) -> float:
    # Infinity, -Infinity, NaN: kept as floats here so that the check reports the field.
    return float(name)


def _load_yaml(text: str, max_depth: int) -> Any:
    try:
        depth = 0
        for count, event in enumerate(yaml.parse(text, Loader=_Loader)):
            if count > MAX_YAML_EVENTS:  # building them would cost seconds of CPU
                raise DocumentRefused([f"document: more than {MAX_YAML_EVENTS} YAML values"])
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "document"
                raise DocumentRefused([
                    f"{where}: YAML aliases (*{event.anchor}) are not accepted: "
                    "write the value out"])
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    raise DocumentRefused([f"document: nested deeper than {max_depth} levels"])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as e:
        raise DocumentError([f"invalid YAML: {e}"]) from e
    except (ValueError, RecursionError) as e:
        if isinstance(e, DocumentError):
            raise
        raise DocumentError([f"invalid YAML: {e}"]) from e


def _check_values(value: Any, where: str, problems: list[str]) -> None:
    """Only what JSON can hold: objects with string keys, lists, strings, finite numbers."""
    here = where or "document"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(f"{here}: the key {key!r} must be a string (quote it)")
                continue
            _check_values(item, f"{where}.{key}" if where else key, problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, f"{where}.{i}" if where else str(i), problems)
    elif isinstance(value, float):
        if not math.isfinite(value):
            problems.append(f"{here}: must be a finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        problems.append(f"{here}: the number is too large (at most {MAX_INT})")
    elif value is not None and not isinstance(value, str | int | bool):
        problems.append(f"{here}: a YAML {type(value).__name__} value is not accepted "
                        "(only strings, numbers, booleans, lists and maps)")
