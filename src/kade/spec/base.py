"""The base of every app-definition model: Marathon's camelCase on the wire, snake_case inside."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    # extra="allow": unknown fields are kept aside and reported as warnings, never silently lost.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True,
        validate_default=True,  # defaults take the field type: 128 -> 128.0, as after a reload
        allow_inf_nan=False,  # JSON cannot store them: `mem: Infinity` would be stored as null
    )

    # fields left out of `wire()` while at their default: a field added later does not change
    # the spec hash of apps that do not use it (which would replace all their tasks)
    wire_omit_defaults: ClassVar[frozenset[str]] = frozenset()

    def wire(self) -> dict[str, Any]:
        """The Marathon-shaped dict (camelCase), without kept-aside unknown fields."""
        return _strip_extra(self)


def _strip_extra(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    omit: frozenset[str] = getattr(model, "wire_omit_defaults", frozenset())
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if name in omit and value == info.get_default(call_default_factory=True):
            continue
        out[info.alias or name] = _wire_value(value)
    return out


def _wire_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _strip_extra(value)
    if isinstance(value, list | tuple):
        return [_wire_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _wire_value(v) for k, v in value.items()}
    return value
