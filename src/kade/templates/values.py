"""Values as Go templates see them: type names, printing, and the error of a bad argument."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FunctionError(Exception):
    """A template function was called with something it cannot work with."""


def arg_str(fn: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FunctionError(f"{fn}: expected a string, got {go_type(value)}")
    return value


def plain(value: Any) -> Any:
    """Sandbox-wrapped or tuple values → plain JSON/YAML-able data."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    raise FunctionError(f"cannot encode a value of type {go_type(value)}")


def go_type(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "slice"
    return type(value).__name__


def go_str(value: Any, top: bool = True) -> str:
    """A value printed as Go's fmt %v prints it (`true`, `[a b]`, `map[k:v]`)."""
    if value is None:
        return "<no value>" if top else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{go_str(k, False)}:{go_str(v, False)}"
                                 for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))\
            + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_str(v, False) for v in value) + "]"
    return str(value)
