"""How large a value a template may build, and the checks that keep it so.

A template is a small program written by whoever may deploy an app: `{{ 'a' * 10**9 }}`
asks for a gigabyte in a dozen characters. Every operation that can multiply the size of a
value checks the size it is about to make *before* making it, against the cap on a rendered
file (default 1 MiB): a value larger than the file it ends in serves no purpose. Integers are
bounded by their bits, since Python computes `9 ** 10**9` as happily as it prints nothing of
it (it refuses to print more than 4,300 digits).

The cap of the render in progress is a context variable, so concurrent renders with
different caps (threads, tests) do not see each other's.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from kade.templates.values import FunctionError

DEFAULT_MAX_SIZE = 1 << 20  # bytes of a rendered file, and items of any value on the way
MAX_INT_BITS = 1 << 16  # about 19,700 decimal digits

_max_size: ContextVar[int] = ContextVar("template_max_size", default=DEFAULT_MAX_SIZE)


class SizeError(FunctionError):
    """A template was about to build a value over the size cap."""


def human(n: int) -> str:
    """`1048576` → `1 MiB`: caps are round numbers of KiB or MiB."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def max_size() -> int:
    return _max_size.get()


@contextmanager
def size_limit(limit: int) -> Iterator[None]:
    """Apply `limit` to the checks made in this context (one render)."""
    token = _max_size.set(limit)
    try:
        yield
    finally:
        _max_size.reset(token)


def _kind(value: Any) -> tuple[str, str]:
    if isinstance(value, str):
        return "string", "characters"
    if isinstance(value, bytes):
        return "string", "bytes"
    if isinstance(value, Mapping):
        return "map", "entries"
    return "list", "items"


def refuse(what: str, value: Any, size: int) -> SizeError:
    kind, unit = _kind(value)
    return SizeError(f"{what} would make a {kind} of {size} {unit}, over the "
                     f"{human(max_size())} limit")


def check_size(what: str, value: Any, size: int) -> None:
    """Refuse to make `value`'s kind of thing with `size` items (before making it)."""
    if size > max_size():
        raise refuse(what, value, size)


def check_int(what: str, bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise SizeError(f"{what} would make a number of {bits} bits, over the "
                        f"{MAX_INT_BITS}-bit limit")


def checked(what: str, value: Any) -> Any:
    """`value` if it is within the limits (after it was made by code that cannot be checked
    before, e.g. a filter); else SizeError, so that it goes no further."""
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        check_size(what, value, len(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        check_int(what, value.bit_length())
    return value


def _length(value: Any) -> int | None:
    if isinstance(value, str | bytes | list | tuple):
        return len(value)
    return None


def check_binop(op: str, left: Any, right: Any) -> None:
    """Before `left op right`: refuse what would be over the limits."""
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            size = _length(seq)
            if size is not None and isinstance(n, int):
                check_size("'*'", seq, size * max(n, 0))
                return
        if isinstance(left, int) and isinstance(right, int):
            check_int("'*'", left.bit_length() + right.bit_length())
    elif op == "+":
        a, b = _length(left), _length(right)
        if a is not None and b is not None:
            check_size("'+'", left, a + b)
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 \
            and abs(left) > 1:
        check_int("'**'", right * left.bit_length())


def check_join(what: str, items: Any, sep: str) -> None:
    """Before joining `items` with `sep`: the size of the result, from its string items."""
    if isinstance(items, list | tuple):
        size = sum(len(x) for x in items if isinstance(x, str))
        check_size(what, sep, size + len(sep) * max(len(items) - 1, 0))


def check_replace(what: str, text: str, old: Any, new: Any) -> None:
    """Before replacing `old` by `new` in `text`: every occurrence grows it (an empty `old`
    occurs between every two characters)."""
    if not isinstance(old, str) or not isinstance(new, str) or len(new) <= len(old):
        return
    count = text.count(old)
    check_size(what, text, len(text) + count * (len(new) - len(old)))


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_format(what: str, fmt: str, args: Any, *, braces: bool) -> None:
    """Before formatting: the widths and precisions a format string asks for (`%9999d`,
    `{:>9999}`); a width taken from an argument (`%*d`, `{:{}}`) is any integer argument."""
    widths: list[int] = []
    from_args = False
    if braces:
        try:
            specs = [spec for _, _, spec, _ in string.Formatter().parse(fmt) if spec]
        except ValueError:
            return  # formatting will say what is wrong
        for spec in specs:
            from_args = from_args or "{" in spec
            widths.extend(int(n) for n in re.findall(r"\d+", spec))
    else:
        for m in _PERCENT_SPEC.finditer(fmt):
            for part in m.groups():
                if part == "*":
                    from_args = True
                elif part:
                    widths.append(int(part))
    if from_args:
        values = args.values() if isinstance(args, Mapping) else \
            args if isinstance(args, list | tuple) else (args,)
        widths.extend(v for v in values if isinstance(v, int))
    if widths:
        check_size(what, fmt, max(widths))
