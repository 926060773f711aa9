"""Admission of what operators say about nodes: names, attributes, eligibility and drains.

Attributes become constraint fields (`["az", "GROUP_BY"]`), Consul's node meta and table
columns, and node names become store keys and URL segments: both are held to a small
character set so that each of those reads them the same way. A drain's numbers are bounded
like everything else a request can ask for. Every problem is named by its field
(`maxParallel: must be between 1 and 100`), and a refused request changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kade.addresses import parse_duration

NAME_MAX = 63
ATTR_KEY_MAX = 63
ATTR_VALUE_MAX = 128
ATTRS_MAX = 32
DEADLINE_MIN = 1.0  # seconds
DEADLINE_MAX = 7 * 24 * 3600.0
DEADLINE_DEFAULT = 3600.0  # Nomad's default: an hour
PARALLEL_MAX = 100

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ATTR_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ATTR_VALUE = re.compile(r"[A-Za-z0-9_.:/+-]+")
# Words of the node API's paths (`/v1/nodes/drain`): no node may be called so.
RESERVED_NAMES = frozenset({"drain"})
# The node's own name in constraints (kade.scheduler.constraints): not an attribute.
RESERVED_ATTRS = frozenset({"hostname"})


class NodeRequestError(ValueError):
    """A request about nodes was refused. `problems` lists each as `field: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check_node_name(name: str, field: str = "node") -> str:
    """A node's name, as `kade up --node` or an API path gives it."""
    if not name:
        raise NodeRequestError([f"{field}: must not be empty"])
    if len(name) > NAME_MAX:
        raise NodeRequestError([f"{field}: {_shown(name)} is longer than {NAME_MAX} characters"])
    if not _NAME.fullmatch(name):
        raise NodeRequestError([f"{field}: {_shown(name)} may hold only letters, digits, '_', "
                                "'.' and '-', and must start with a letter or digit"])
    if name in RESERVED_NAMES:
        raise NodeRequestError([f"{field}: {name!r} is reserved (a word of the node API)"])
    return name


def attr_problems(key: str, value: str, field: str = "attr") -> list[str]:
    problems = []
    if not key:
        problems.append(f"{field}: the key must not be empty")
    elif len(key) > ATTR_KEY_MAX:
        problems.append(f"{field}: the key {_shown(key)} is longer than {ATTR_KEY_MAX} "
                        "characters")
    elif not _ATTR_KEY.fullmatch(key):
        problems.append(f"{field}: the key {_shown(key)} may hold only letters, digits, '_', "
                        "'.' and '-', and must start with a letter or digit")
    elif key in RESERVED_ATTRS:
        problems.append(f"{field}: {key!r} is the node's name in constraints, not an "
                        "attribute (set it with --node)")
    if not value:
        problems.append(f"{field}: {_shown(key)} needs a value (key=value)")
    elif len(value) > ATTR_VALUE_MAX:
        problems.append(f"{field}: the value of {_shown(key)} is longer than {ATTR_VALUE_MAX} "
                        "characters")
    elif not _ATTR_VALUE.fullmatch(value):
        problems.append(f"{field}: the value {_shown(value)} of {_shown(key)} may hold only "
                        "letters, digits and '_', '.', ':', '/', '+', '-'")
    return problems


def parse_attr(text: str, field: str = "attr") -> tuple[str, str]:
    """`az=1a` → ("az", "1a")."""
    key, sep, value = text.strip().partition("=")
    if not sep:
        raise NodeRequestError([f"{field}: {_shown(text)} must be key=value, e.g. az=1a"])
    problems = attr_problems(key.strip(), value.strip(), field)
    if problems:
        raise NodeRequestError(problems)
    return key.strip(), value.strip()


def parse_attributes(items: Iterable[str], field: str = "--attr") -> dict[str, str]:
    """`--attr` values (each `key=value`, or several joined by commas as in `KADE_ATTR`) → the
    node's attributes. A key given twice is refused: which one was meant is not known."""
    attributes: dict[str, str] = {}
    problems: list[str] = []
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            try:
                key, value = parse_attr(part, field)
            except NodeRequestError as e:
                problems += e.problems
                continue
            if key in attributes:
                problems.append(f"{field}: {key!r} is given twice")
            attributes[key] = value
    if len(attributes) > ATTRS_MAX:
        problems.append(f"{field}: {len(attributes)} attributes, at most {ATTRS_MAX} are "
                        "accepted")
    if problems:
        raise NodeRequestError(problems)
    return attributes


@dataclass(frozen=True)
class DrainRequest:
    deadline: float  # seconds from now
    keep_system: bool = False
    max_parallel: int = 1
    attr: tuple[str, str] | None = None  # a zone drain: every node with this attribute


def admit_drain(data: Any, *, zone: bool = False) -> DrainRequest:
    """The body of `POST /v1/nodes/{name}/drain` (or, with `zone`, of `POST /v1/nodes/drain`,
    which must name the nodes by `attr`)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise NodeRequestError(["body: must be an object"])
    known = {"deadline", "keepSystem", "maxParallel"} | ({"attr"} if zone else set())
    problems = [f"{k}: unknown field (known: {', '.join(sorted(known))})"
                for k in data if k not in known]
    if "attr" in data and not zone:
        problems = [p for p in problems if not p.startswith("attr:")]
        problems.append("attr: drains every node with that attribute: POST /v1/nodes/drain")
    deadline = DEADLINE_DEFAULT
    if "deadline" in data:
        try:
            deadline = _duration(data["deadline"], "deadline")
        except NodeRequestError as e:
            problems += e.problems
    keep_system = data.get("keepSystem", False)
    if not isinstance(keep_system, bool):
        problems.append("keepSystem: must be true or false")
    max_parallel = data.get("maxParallel", 1)
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int):
        problems.append("maxParallel: must be a whole number")
    elif not 1 <= max_parallel <= PARALLEL_MAX:
        problems.append(f"maxParallel: must be between 1 and {PARALLEL_MAX}")
    attr = None
    if zone:
        raw = data.get("attr")
        if not isinstance(raw, str):
            problems.append("attr: is required: the attribute of the nodes to drain, e.g. az=1a")
        else:
            try:
                attr = parse_attr(raw, "attr")
            except NodeRequestError as e:
                problems += e.problems
    if problems:
        raise NodeRequestError(problems)
    return DrainRequest(deadline, keep_system, max_parallel, attr)


def admit_eligibility(data: Any) -> bool:
    """The body of `PUT /v1/nodes/{name}/eligibility`: `{"eligible": true|false}`."""
    if not isinstance(data, Mapping) or "eligible" not in data:
        raise NodeRequestError(['eligible: is required: {"eligible": true} or false'])
    unknown = [k for k in data if k != "eligible"]
    if unknown:
        raise NodeRequestError([f"{k}: unknown field (known: eligible)" for k in unknown])
    if not isinstance(data["eligible"], bool):
        raise NodeRequestError(["eligible: must be true or false"])
    return bool(data["eligible"])


def _duration(value: Any, field: str) -> float:
    """A duration (`5m`, `90s`) or a number of seconds, within the drain deadline's bounds."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise NodeRequestError([f"{field}: must be a duration such as 5m or 90s"])
    if isinstance(value, str):
        try:
            seconds = parse_duration(value, field)
        except ValueError as e:
            raise NodeRequestError([str(e)]) from None
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or not DEADLINE_MIN <= seconds <= DEADLINE_MAX:
        raise NodeRequestError([f"{field}: must be between 1s and {DEADLINE_MAX / 3600:g}h"])
    return seconds


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")
