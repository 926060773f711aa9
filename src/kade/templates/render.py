"""Rendering: a template and plain input values → text, and what it read.

Pure by construction: the engine is Jinja2's immutable sandbox with no loader (no files), no
host environment, no clock and no randomness; a template reaches only the values passed in
and the functions of `lookups` and `gofuncs`. The same input always gives the same output.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import MAX_RANGE

from kade.templates import limits
from kade.templates.gofuncs import PURE
from kade.templates.golex import GoSyntaxError
from kade.templates.gotemplate import translate
from kade.templates.lookups import Lookups, Reads, ServiceEndpoint
from kade.templates.sandbox import environment
from kade.templates.values import FunctionError, go_str, go_type

Syntax = Literal["consul-template", "jinja"]
_FILENAME = "<template>"


class TemplateSource(Protocol):
    """What render needs of a template; `kade.spec.templates.TemplateSpec` is one."""

    @property
    def destination(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def syntax(self) -> Syntax: ...


@dataclass(frozen=True, slots=True)
class InlineTemplate:
    """A template that is not part of an app (e.g. `kade render FILE`)."""

    destination: str
    source: str
    syntax: Syntax = "consul-template"


class TemplateError(Exception):
    """A template failed to parse or to render: where, and why. A render error also says what
    the template had read (`reads`), so a watcher can retry it when that data changes."""

    def __init__(self, destination: str, line: int | None, message: str,
                 reads: Reads | None = None) -> None:
        self.destination = destination
        self.line = line
        self.message = message
        self.reads = reads
        where = f"template {destination}" + (f": line {line}" if line else "")
        super().__init__(f"{where}: {message}")


class MissingKeyError(TemplateError):
    """Keys the template needs do not exist (yet): the task must wait for them, like
    consul-template blocks. `reads` says what to watch for them to appear."""

    reads: Reads

    def __init__(self, destination: str, line: int | None, keys: Sequence[str],
                 reads: Reads) -> None:
        self.keys = tuple(keys)
        names = ", ".join(repr(k) for k in self.keys)
        plural = "s" if len(self.keys) > 1 else ""
        super().__init__(destination, line, f"missing key{plural} {names} (use keyOrDefault "
                                            "for an optional key)", reads)


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    reads: Reads


# -- the engine ------------------------------------------------------------------------------


_ENV = environment()


def _get(obj: Any, name: str) -> Any:
    """Go's `.Field`: a map's key (missing → no value), a field of nothing is nothing (Go's
    `{{ .Data.Foo }}` on no data prints `<no value>`), nothing else."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    if obj is None:
        return None
    raise FunctionError(f"can't evaluate field {name} in type {go_type(obj)}")


def _items(value: Any) -> list[tuple[Any, Any]]:
    """What Go's `range` walks: a map in key order, a list with its indexes, n for an int."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        try:
            return sorted(value.items())
        except TypeError:
            return sorted(value.items(), key=lambda kv: str(kv[0]))
    if isinstance(value, list | tuple):
        return list(enumerate(value))
    if isinstance(value, int) and not isinstance(value, bool):
        if value > MAX_RANGE:
            raise FunctionError(f"range over {value}: at most {MAX_RANGE} numbers (as Jinja's "
                                "range)")
        return [(i, i) for i in range(value)]
    raise FunctionError(f"range can't iterate over {go_type(value)} {go_str(value)!r}")


_GO_HELPERS = {"_out": go_str, "_get": _get, "_items": _items, "_dot0": None,
               **{f"_f_{name}": fn for name, fn in PURE.items()}}


class _ParseError(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@functools.lru_cache(maxsize=512)
def _compile(syntax: Syntax, source: str) -> Template:
    try:
        text = translate(source) if syntax == "consul-template" else source
        return _ENV.from_string(text)
    except GoSyntaxError as e:
        raise _ParseError(e.line, e.message) from None
    except TemplateSyntaxError as e:
        raise _ParseError(e.lineno, e.message or str(e)) from None
    except RecursionError:
        raise _ParseError(None, "too deeply nested") from None
    except (ValueError, OverflowError) as e:  # e.g. a number literal of 5,000 digits
        raise _ParseError(None, str(e)) from None


def _compiled(template: TemplateSource) -> Template:
    if template.syntax not in ("consul-template", "jinja"):
        raise TemplateError(template.destination, None,
                            f"unknown syntax {template.syntax!r} (consul-template or jinja)")
    try:
        return _compile(template.syntax, template.source)
    except _ParseError as e:
        raise TemplateError(template.destination, e.line, e.message) from None


def _error_line(exc: BaseException) -> int | None:
    """The innermost template line in the traceback (Jinja rewrites frames to show them)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _locator(compiled: Template) -> Callable[[], int | None]:
    """The template line now rendering, found from the running frames (for missing keys)."""
    def locate() -> int | None:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename == _FILENAME:
                return compiled.get_corresponding_lineno(frame.f_lineno)
            frame = frame.f_back  # type: ignore[assignment]
        return None

    return locate


def _message(exc: Exception) -> str:
    if isinstance(exc, FunctionError | SecurityError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "too deeply nested"
    text = str(exc)
    if type(exc).__module__.startswith("jinja2"):
        return text
    return f"{text} ({type(exc).__name__})" if text else type(exc).__name__


# -- the API ---------------------------------------------------------------------------------


def render(
    template: TemplateSource,
    *,
    kv: Mapping[str, bytes],
    services: Mapping[str, Sequence[ServiceEndpoint]] | None = None,
    env: Mapping[str, str] | None = None,
    max_size: int = limits.DEFAULT_MAX_SIZE,
    data: Any = None,
) -> Rendered:
    """Render `template` from a KV snapshot (user keys → values), the healthy endpoints of
    services, and the task's environment. Raises TemplateError (MissingKeyError when keys
    the template needs are absent), also when the text, or any value on the way to it,
    would be larger than `max_size` (bytes). `data`: what `.` is at the top (Go's data
    argument; consul-template gives none, an alert's annotations their labels and value).

    In this process and thread, without a time limit: what runs templates of others
    renders through `kade.templates.isolate` instead."""
    compiled = _compiled(template)
    lookups = Lookups(kv, services or {}, env or {}, locate=_locator(compiled))
    context: dict[str, Any] = lookups.functions()
    if template.syntax == "consul-template":
        context.update(_GO_HELPERS)
        context.update({f"_f_{name}": fn for name, fn in context.items()
                        if not name.startswith("_")})
        context["_dot0"] = data
    try:
        with limits.size_limit(max_size):
            text = _generate(compiled, context, max_size)
    except Exception as e:
        if lookups.missing:
            raise MissingKeyError(template.destination, lookups.missing_line, lookups.missing,
                                  lookups.reads()) from e
        raise TemplateError(template.destination, _error_line(e), _message(e),
                            lookups.reads()) from e
    if lookups.missing:
        raise MissingKeyError(template.destination, lookups.missing_line, lookups.missing,
                              lookups.reads())
    return Rendered(text, lookups.reads())


def _generate(compiled: Template, context: dict[str, Any], max_size: int) -> str:
    """The text, piece by piece, stopped as soon as it is over `max_size` bytes."""
    parts: list[str] = []
    size = 0
    for piece in compiled.generate(context):
        size += len(piece) if piece.isascii() else len(piece.encode())
        if size > max_size:
            raise limits.SizeError(f"the rendered file is larger than the "
                                   f"{limits.human(max_size)} limit")
        parts.append(piece)
    return "".join(parts)


def check_template(template: TemplateSource) -> list[str]:
    """Parse (not render) a template: its syntax errors, each naming destination and line."""
    try:
        _compiled(template)
    except TemplateError as e:
        return [str(e)]
    return []


def source_problem(index: int, problem: str) -> str:
    """A problem of an app's template `index`, named by its field as the spec's are."""
    return f"templates.{index}.source: {problem}"


def duplicate_destinations(templates: Sequence[TemplateSource]) -> list[str]:
    seen: set[str] = set()
    problems = []
    for i, t in enumerate(templates):
        if t.destination in seen:
            problems.append(f"templates.{i}.destination: template {t.destination}: "
                            "destination is used twice")
        seen.add(t.destination)
    return problems
