"""Admission's problems placed at their field and line of the text that was submitted.

Every problem of `SpecError` is worded `field: message` (`healthChecks.0.path: must be a
string`). An editor wants the field in the shape people write it (`healthChecks[0].path`) and
the line it is on, to mark it there. The line is found by composing the text with PyYAML (JSON
is YAML), whose nodes keep their start marks, and walking the field's path; a field that is
not in the text (a required one that is missing) is placed on the deepest part of its path
that is, and a problem of no field, or a text that cannot be composed, has no line.
Syntax errors carry their line in their message (`invalid JSON at line 3 column 5`).
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

import yaml

from kade.spec.errors import DocumentRefused, SpecError

_FIELD = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_$.\-/\[\]]*$")
_LINE = re.compile(r"\bline (\d+)\b")
_INDEX = re.compile(r"\.(\d+)(?=\.|$)")
_LOADER = yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader


class Problem(TypedDict):
    field: str | None
    message: str
    line: int | None


class Located(SpecError):
    """A refused definition whose problems were placed in the text submitted: the API answers
    them as `problems` beside the unchanged `message`."""

    def __init__(self, error: SpecError, text: str) -> None:
        super().__init__(error.problems)
        # A document that did not parse (or was refused for its shape) is not composed again:
        # its problems carry their lines, and a hostile one would cost the parse it was
        # refused to spare.
        unparsed = isinstance(error, DocumentRefused) or any(
            p.startswith(("invalid JSON", "invalid YAML")) for p in error.problems)
        self.located = (unlocated(error.problems) if unparsed
                        else locate(text, error.problems))
        self.refused = isinstance(error, DocumentRefused)  # its shape: 400, not 422


def split_problem(problem: str) -> tuple[str | None, str]:
    """`healthChecks.0.path: must be a string` → ("healthChecks[0].path", "must be a
    string"); a problem that names no field → (None, the problem)."""
    head, sep, rest = problem.partition(": ")
    if not sep or not _FIELD.match(head) or head.startswith("invalid"):
        return None, problem
    return _INDEX.sub(r"[\1]", head), rest


def locate(text: str, problems: list[str]) -> list[Problem]:
    """Each problem with its field and the 1-based line it is on in `text` (None: unknown)."""
    root = _compose(text)
    return [_problem(p, root) for p in problems]


def _problem(problem: str, root: yaml.Node | None) -> Problem:
    field, message = split_problem(problem)
    line: int | None = None
    if field is not None:
        line = _line_of(root, _segments(field)) if root is not None else None
    elif match := _LINE.search(problem):
        line = int(match.group(1))
    return {"field": field, "message": message, "line": line}


def unlocated(problems: list[str]) -> list[Problem]:
    """The problems with their fields, without looking at the text: a line only where the
    message names one (`invalid JSON at line 3 column 5`)."""
    return [_problem(p, None) for p in problems]


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except (yaml.YAMLError, ValueError, RecursionError):
        return None


def _segments(field: str) -> list[str]:
    """`healthChecks[0].path` → ["healthChecks", "0", "path"]; keys with dots (labels) stay
    split here and are joined again while walking."""
    return [s for s in re.split(r"[.\[\]]", field) if s]


def _line_of(node: Any, path: list[str]) -> int | None:
    """The line of the deepest node on `path` (at least its first segment), 1-based."""
    found: int | None = None
    while path:
        child, used = _child(node, path)
        if child is None:
            break
        key_node, node = child
        found = key_node.start_mark.line + 1
        path = path[used:]
    return found


def _child(node: Any, path: list[str]) -> tuple[tuple[Any, Any] | None, int]:
    """The (key node, value node) the start of `path` names, and how many segments it took:
    a mapping key may itself contain dots (`labels.traefik.http.routers.web.rule`)."""
    if isinstance(node, yaml.MappingNode):
        keys = {str(k.value): (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        for n in range(len(path), 0, -1):
            hit = keys.get(".".join(path[:n]))
            if hit is not None:
                return hit, n
    elif isinstance(node, yaml.SequenceNode) and path[0].isdigit():
        i = int(path[0])
        if i < len(node.value):
            return (node.value[i], node.value[i]), 1
    return None, 0
