"""The Jinja environment every template runs in: Jinja's immutable sandbox, compiled without
constant folding, with each operation that can build a large value bounded.

Why no folding: Jinja evaluates constant expressions while it compiles, so `{{ 'a' * 3e8 }}`
was computed when the API merely checked the template, on its event loop. Compiled with
`optimized=False`, with the size-making operators intercepted (an intercepted operator is
never folded) and with a finalizer that needs the render's context (so output is never
folded either), nothing of a template runs before it renders — and a render happens in a
worker process with a time and memory limit (`kade.templates.isolate`).

Why check sizes as well, when the worker's limits stop any render anyway: a limit hit says
"took longer than 2s"; a check says which operation made what size. The checks cover the
operators (`*`, `+`, `%`, `**`, `~`), calls (functions and methods: width and join
arguments before, results after), filters, and each piece of output; `range` is Jinja's
sandboxed one (at most 100,000 items). What they cannot see — a C function allocating
before it returns, loops nested in loops — is what the worker's limits are for.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

from jinja2 import StrictUndefined, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import Concat
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kade.templates import limits
from kade.templates.gofuncs import PURE

# String methods whose first argument is the width of the result.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
# Filters whose integer arguments (after the value) are sizes of the result.
_SIZE_FILTERS = frozenset({"center", "indent", "wordwrap", "batch", "slice"})


class _CodeGenerator(CodeGenerator):
    """Jinja's, with `a ~ b` (a concatenation, not an operator Jinja can intercept) checked."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.concatenated(")
        super().visit_Concat(node, frame)
        self.write(")")


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    return limits.checked("output", value)


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "+", "%", "**"})
    code_generator_class = _CodeGenerator

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limits.check_binop(operator, left, right)
        if operator == "%" and isinstance(left, str):
            limits.check_format("'%'", left, right, braces=False)
        return limits.checked(repr(operator), super().call_binop(context, operator, left,
                                                                 right))

    def call(__self, __context: Context, __obj: Any,  # noqa: N805 (Jinja's signature)
             *args: Any, **kwargs: Any) -> Any:
        method = getattr(__obj, "__wrapped__", __obj)  # str.format, wrapped by the sandbox
        if isinstance(method, types.BuiltinMethodType) and isinstance(method.__self__, str):
            _check_str_method(method.__name__, method.__self__, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return limits.checked(f"{getattr(__obj, '__name__', 'a call')}()", result)

    def concatenated(self, value: str) -> str:
        return limits.checked("'~'", value)  # type: ignore[no-any-return]


def _check_str_method(name: str, text: str, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> None:
    what = f"{name}()"
    n = args[0] if args and isinstance(args[0], int) else 0
    if name in _WIDTH_METHODS:
        limits.check_size(what, text, n)
    elif name == "expandtabs":  # each tab may become `tabsize` spaces (8 by default)
        tab = kwargs.get("tabsize", args[0] if args else 8)
        limits.check_size(what, text, len(text) * max(tab if isinstance(tab, int) else 1, 1))
    elif name == "join" and args:
        limits.check_join(what, args[0], text)
    elif name == "replace" and len(args) >= 2:
        limits.check_replace(what, text, args[0], args[1])
    elif name in ("format", "format_map"):
        limits.check_format(what, text, [*args, *kwargs.values()], braces=True)


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose result is checked, and whose size arguments are checked first."""
    value_at = 1 if hasattr(fn, "jinja_pass_arg") else 0  # after the context/environment

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        what = f"filter {name}"
        rest = [*args[value_at + 1:], *kwargs.values()]
        if name in _SIZE_FILTERS:
            for n in rest:
                if isinstance(n, int):
                    limits.check_size(what, "", n)
        elif name == "format" and isinstance(args[value_at], str):
            limits.check_format(what, args[value_at], rest, braces=False)
        elif name in ("join", "replace") and len(args) > value_at + 1:
            value, extra = args[value_at], [*args[value_at + 1:], *kwargs.values()]
            if name == "join" and isinstance(extra[0], str):
                limits.check_join(what, value, extra[0])
            elif name == "replace" and len(extra) >= 2 and isinstance(value, str):
                limits.check_replace(what, value, extra[0], extra[1])
        return limits.checked(what, fn(*args, **kwargs))

    return run


def _piped(fn: Any) -> Any:
    """Jinja pipes the value in first; consul-template's functions take it last."""
    def apply(value: Any, *args: Any) -> Any:
        return fn(*args, value)

    return apply


def environment() -> Sandbox:
    env = Sandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,  # config files keep their last newline, as in Go
        extensions=["jinja2.ext.loopcontrols"],
        cache_size=0,
        optimized=False,
        finalize=_finalize,
    )
    env.filters.pop("random", None)  # same input, same output
    env.globals.pop("lipsum", None)
    for name, fn in PURE.items():
        env.globals.setdefault(name, fn)
        env.filters.setdefault(name, _piped(fn))
    env.filters = {name: _bounded_filter(name, fn) for name, fn in env.filters.items()}
    return env
