"""Users' regular expressions, compiled one way everywhere (routing rules, log filters): RE2,
as Go's are, so that matching takes time linear in the input whatever the pattern."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

Search = Callable[[str], object | None]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the user, not to stderr
_UNSUPPORTED = "RE2 syntax: no backreferences or lookaround"


def compile_regexp(pattern: str) -> Search:
    """The `search` of `pattern` compiled by RE2 (linear time); ValueError if RE2 refuses it."""
    return compile_pattern(pattern).search  # type: ignore[no-any-return]


def compile_pattern(pattern: str | bytes) -> Any:
    """`pattern` compiled by RE2 (its `search(text, pos)`, `finditer`...), to match text or,
    given as UTF-8, bytes; ValueError if RE2 refuses it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "cannot be compiled"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"{reason} ({_UNSUPPORTED})") from None
