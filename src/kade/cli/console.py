"""rich's consoles and tables, made on first use: importing rich takes longer than a `kade`
command should take altogether (docs/benchmarks.md, CLI start-up), and `--json` or a plain
answer never needs it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class LazyConsole:
    """A rich Console with these settings, created when something is first printed."""

    def __init__(self, *, stderr: bool = False) -> None:
        self.stderr = stderr

    @cached_property
    def rich(self) -> Console:
        from rich.console import Console

        if self.stderr:
            return Console(stderr=True, soft_wrap=True)  # messages stay whole for grep
        # Piped output is not cut at 80 columns: tables stay whole for grep and less.
        return Console(width=None if sys.stdout.isatty() else 250)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.rich.print(*objects, **kwargs)


def make_table(*headers: str, **kwargs: Any) -> Table:
    from rich.table import Table

    return Table(*headers, **kwargs)


ERR = LazyConsole(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    """End a command with `error: message` on stderr and the exit code."""
    import typer

    ERR.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(...)`, a refusal or an unreachable kade ending the command with its message."""
    from kade.client import ClientError

    try:
        return fn(*args, **kwargs)
    except ClientError as e:
        fail(str(e))
