"""kade.cli: the `kade` command."""

import sys


def main() -> None:
    """The `kade` command: the quick read commands (`kade.cli.quick`) without importing
    the full command line, everything else through it."""
    from kade.cli import quick

    code = quick.answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from kade.cli.main import app

    app()
