"""`kade logs TARGET`: the output of an app's tasks (every instance merged by time, each line
prefixed by its task) or of one task, also long after its container is gone.

    kade logs /shop/web -f
    kade logs /shop/web --since 10m --grep 'ERROR|timeout' --stream stderr
    kade logs /shop/web --previous
    kade logs shop_web.1c4c91cf6e10 -n 200
    kade logs /shop/web --json | jq ...
    kade logs /shop/web --where level=error -q 'payment declined'

The API answers in JSON lines (or server-sent events when following); the text is made here
with the API's own formatting (kade.logs.text). Nodes of a cluster that did not answer are
named on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from kade.cli.console import fail
from kade.client import Client, ClientError

Target = Annotated[str, typer.Argument(
    help="an app id (/shop/web: every task of it) or a task id (shop_web.1c4c91cf6e10)")]


def logs(
    target: Target,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="go on with new lines")]
    = False,
    since: Annotated[str | None, typer.Option(
        help="from this long ago (10m, 1d), or a time (RFC 3339, unix seconds)")] = None,
    until: Annotated[str | None, typer.Option(help="up to (10m ago, or a time)")] = None,
    tail: Annotated[int | None, typer.Option(
        "-n", "--tail", help="the last N lines (default: all kept, at most 10000; with -f, "
                             "100)")] = None,
    grep: Annotated[str | None, typer.Option(
        help="only lines matching this regular expression (RE2: 'ERROR|timeout')")] = None,
    text: Annotated[str | None, typer.Option(
        "-q", "--text", help="only lines with these words (or a \"quoted phrase\")")] = None,
    stream: Annotated[str | None, typer.Option(help="stdout or stderr (default: both)")]
    = None,
    where: Annotated[list[str] | None, typer.Option(
        help="a field of JSON lines: level=error, level!=debug, msg~timeout (repeatable)")]
    = None,
    previous: Annotated[bool, typer.Option(
        help="only tasks that ended (replaced, failed), each with how it ended")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="one JSON object per line: time, app, task, version, node, stream, "
                       "line")] = False,
    api_addr: Annotated[str | None, typer.Option(
        "--api-addr", envvar="KADE_ADDR",
        help="API address of a running kade [default: 127.0.0.1:7400]")] = None,
) -> None:
    """Print the output of an app's tasks or of one task."""
    from kade.logs.text import by_task, line_from_json, line_text, task_from_json

    params: dict[str, Any] = {"app" if target.startswith("/") else "task": target,
                              "since": since, "until": until, "tail": tail, "grep": grep,
                              "q": text, "stream": stream, "where": where or None,
                              "previous": previous or None, "format": "json"}
    params = {k: v for k, v in params.items() if v is not None}
    prefixed = target.startswith("/")
    client = Client(api_addr)
    try:
        if follow:
            for event, data in _sse(client.stream("/v1/logs", follow="true", **params)):
                if event == "unanswered":
                    _unanswered([data])
                elif event == "error":
                    fail(str(data.get("message")))
                elif event == "line":
                    _out(json.dumps(data, ensure_ascii=False) if as_json
                         else line_text(line_from_json(data), prefixed))
            return
        answer = client.get("/v1/logs", **params)
        rows = [json.loads(row) for row in str(answer).splitlines() if row.strip()]
        missing = [m for row in rows for m in row.get("unanswered", [])]
        rows = [row for row in rows if "unanswered" not in row]
        if as_json:
            for row in rows:
                _out(json.dumps(row, ensure_ascii=False))
        elif previous:
            found = client.get("/v1/logs/tasks", **{
                k: v for k, v in params.items() if k in ("app", "task", "previous")})
            missing += found.get("unanswered", [])
            tasks = [task_from_json(t) for t in found["tasks"]]
            for out in by_task((line_from_json(row) for row in rows), tasks):
                _out(out)
        else:
            for row in rows:
                _out(line_text(line_from_json(row), prefixed))
        _unanswered(missing)
    except ClientError as e:
        fail(str(e))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `kade logs … | head`
        sys.stderr.close()
    finally:
        client.close()


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _unanswered(missing: list[dict[str, Any]]) -> None:
    for m in missing:
        sys.stderr.write(f"kade: node {m.get('node')} did not answer: {m.get('reason')} "
                         "(its lines are missing)\n")


def _sse(chunks: Iterator[bytes]) -> Iterator[tuple[str, Any]]:
    """(event, data) of each server-sent event."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            event, data = "message", None
            for field in block.split(b"\n"):
                if field.startswith(b"event: "):
                    event = field[7:].decode()
                elif field.startswith(b"data: "):
                    data = json.loads(field[6:])
            if data is not None:
                yield event, data
