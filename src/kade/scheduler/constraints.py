"""Marathon placement constraints, evaluated against one node.

A constraint is `[field, operator]` or `[field, operator, value]`. The field `hostname` (or
`@hostname`) is the node's name; any other field is looked up in the node's attributes. A node
that lacks the attribute fails every operator except UNLIKE (Marathon does the same).

Counting operators (UNIQUE, GROUP_BY, MAX_PER) look at the app's active tasks, grouped by the
field's value on the nodes they run on. GROUP_BY follows Marathon's rule: a node is accepted
when its value has no task of the app yet, or when at least `value` groups (default 0) exist and
its value has the fewest tasks of all groups; so tasks fill the groups evenly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from kade.model import Node

HOSTNAME_FIELDS = frozenset({"hostname", "@hostname"})


@dataclass(frozen=True, slots=True)
class Constraint:
    field: str
    op: str
    value: str | None

    @classmethod
    def parse(cls, raw: Sequence[str]) -> Constraint:
        return cls(raw[0], raw[1], raw[2] if len(raw) > 2 else None)

    def __str__(self) -> str:
        return " ".join(p for p in (self.field, self.op, self.value) if p is not None)


def field_value(node: Node, field: str) -> str | None:
    if field in HOSTNAME_FIELDS:
        return node.name
    return node.attributes.get(field)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def check(c: Constraint, node: Node, counts: Mapping[str, int]) -> str | None:
    """None when `node` meets `c`, else why not. `counts`: the app's tasks per field value."""
    value = field_value(node, c.field)
    if value is None:
        if c.op == "UNLIKE":
            return None
        return f"has no attribute {c.field!r} ({c})"
    arg = c.value or ""
    here = counts.get(value, 0)
    if c.op == "UNIQUE":
        return None if here == 0 else f"{c.field}={value} already runs a task of the app ({c})"
    if c.op in ("CLUSTER", "IS"):
        return None if value == arg else f"{c.field}={value}, not {arg} ({c})"
    if c.op == "LIKE":
        return None if _regex(arg).fullmatch(value) else f"{c.field}={value} ({c})"
    if c.op == "UNLIKE":
        return None if not _regex(arg).fullmatch(value) else f"{c.field}={value} ({c})"
    if c.op == "MAX_PER":
        limit = int(arg or 0)
        return None if here < limit else f"{c.field}={value} has {here} tasks already ({c})"
    if c.op == "GROUP_BY":
        if here == 0:
            return None
        groups = [n for n in counts.values() if n > 0]
        minimum = int(arg or 0)
        if len(groups) >= minimum and here == min(groups):
            return None
        return f"{c.field}={value} has {here} tasks, more than another group ({c})"
    return f"unknown operator {c.op!r}"


def value_counts(
    field: str, per_node: Mapping[str, int], nodes: Mapping[str, Node]
) -> dict[str, int]:
    """The app's task count per value of `field`, from its count per node."""
    out: dict[str, int] = {}
    for name, n in per_node.items():
        node = nodes.get(name)
        if node is None or n <= 0:
            continue
        value = field_value(node, field)
        if value is not None:
            out[value] = out.get(value, 0) + n
    return out
