"""Admission of log queries: the query parameters of `/v1/logs` (and of a node's
`/node/v1/logs`, which a server forwards them to) become one bounded `LogQuery`, or a
`LogQueryError` naming the parameter and the problem.

    app=/shop/web | task=shop_web.1c4c91cf6e10     exactly one
    since=10m | 2026-11-30T17:00:00Z | 1764522000  (until: the same)
    tail=200  grep=ERROR|timeout  q=payment declined  stream=stderr
    where=level=error (repeatable: level!=debug, msg~timeout)  previous=true
    format=text|json  follow=true  download=true   (how the API answers, not what it reads)

Parameters are parsed here; the bounds of a query (RE2 patterns, lengths of text and
fields, counts) are the log store's own `kade.logs.filters.check_query`, checked here before
any store is read, so that a node refuses nothing a server admitted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import get_args

from kade.addresses import parse_time
from kade.logs.filters import check_query
from kade.logs.record import MAX_TAIL, STREAMS, LogQuery, Stream, Where

MAX_WHERE = 16  # `where` parameters parsed (kade.logs.filters bounds them too)
MAX_TASK_ID = 255

# What the API reads itself; admission only checks that they are well formed.
API_PARAMETERS = frozenset({"follow", "format", "download"})
PARAMETERS = frozenset({"app", "task", "since", "until", "tail", "limit", "grep", "q",
                        "stream", "where", "previous"}) | API_PARAMETERS
_SINGLE = PARAMETERS - {"where"}

_APP_SEGMENT = re.compile(r"[a-z0-9]([a-z0-9.\-]*[a-z0-9])?")
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_OPERATORS = ("!=", "=", "~")  # `!=` before `=`: `a!=b` is not `a!` = `b`
_UNIX_SECONDS = re.compile(r"(\d{9,11})(?:\.(\d{1,9}))?")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class LogQueryError(ValueError):
    """A query that was not admitted; the message names the parameter."""


def admit_log_query(params: Iterable[tuple[str, str]], now: float) -> LogQuery:
    """The query of these parameters (as a URL's query string gives them, repeated names
    kept); `now` (seconds) is what `since=10m` counts back from."""
    given: dict[str, str] = {}
    where: list[str] = []
    for name, value in params:
        if name not in PARAMETERS:
            raise LogQueryError(f"{name}: unknown parameter (known: "
                                f"{', '.join(sorted(PARAMETERS))})")
        if name == "where":
            where.append(value)
        elif name in given:
            raise LogQueryError(f"{name}: given twice")
        else:
            given[name] = value
    app, task = given.get("app", "").strip(), given.get("task", "").strip()
    if bool(app) == bool(task):
        raise LogQueryError("app, task: give exactly one (an app id such as /shop/web, or a "
                            "task id)")
    since = _time(given.get("since"), now, "since")
    until = _time(given.get("until"), now, "until")
    if since is not None and until is not None and until <= since:
        raise LogQueryError("until: must be after since")
    tail = _count(given.get("tail"), "tail")
    limit = _count(given.get("limit"), "limit")
    flag(given.get("follow"), "follow")
    flag(given.get("download"), "download")
    output_format(given.get("format"))
    query = LogQuery(
        app=_app(app) if app else None, task=_task(task) if task else None,
        since=since, until=until, streams=_streams(given.get("stream")),
        grep=given.get("grep") or None, text=_text(given.get("q")), where=_where(where),
        tail=tail, limit=MAX_TAIL if limit is None else limit,
        previous=flag(given.get("previous"), "previous"))
    try:
        check_query(query)
    except ValueError as e:  # the store names the field, the API the parameter
        message = str(e)
        raise LogQueryError("q:" + message[5:] if message.startswith("text:") else
                            message) from None
    return query


def flag(value: str | None, name: str) -> bool:
    """`true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`/empty."""
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise LogQueryError(f"{name}: {value!r} must be true or false")


def output_format(value: str | None) -> str:
    """`text` (the default) or `json` (one object per line)."""
    if value is None or value == "":
        return "text"
    if value not in ("text", "json"):
        raise LogQueryError(f"format: {value!r} must be text or json")
    return value


def query_params(query: LogQuery) -> list[tuple[str, str]]:
    """The parameters that admit to `query` again (times exact to the nanosecond): what a
    server forwards to each node, so that every node answers the same window."""
    out: list[tuple[str, str]] = [("app", query.app)] if query.app else [
        ("task", query.task or "")]
    for name, ns in (("since", query.since), ("until", query.until)):
        if ns is not None:
            out.append((name, f"{ns // 10**9}.{ns % 10**9:09d}"))
    if query.streams != STREAMS:
        out.append(("stream", ",".join(query.streams)))
    if query.grep is not None:
        out.append(("grep", query.grep))
    if query.text is not None:
        out.append(("q", query.text))
    out.extend(("where", f"{f}{op}{v}") for f, op, v in query.where)
    if query.tail is not None:
        out.append(("tail", str(query.tail)))
    if query.limit != MAX_TAIL:
        out.append(("limit", str(query.limit)))
    if query.previous:
        out.append(("previous", "true"))
    return out


def _time(value: str | None, now: float, name: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    exact = _UNIX_SECONDS.fullmatch(value.strip())
    if exact:  # unix seconds, kept to the nanosecond
        return int(exact.group(1)) * 10**9 + int((exact.group(2) or "").ljust(9, "0"))
    try:
        seconds = parse_time(value, now, name)
    except ValueError as e:
        raise LogQueryError(str(e)) from None
    except OverflowError:
        raise LogQueryError(f"{name}: {value!r} is out of range") from None
    if not 0 <= seconds < 2**63 / 1e9:
        raise LogQueryError(f"{name}: {value!r} is out of range")
    return int(seconds * 1e9)


def _count(value: str | None, name: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    if not value.strip().isdigit():
        raise LogQueryError(f"{name}: {value!r} must be a whole number of lines")
    n = int(value)
    if n > MAX_TAIL:
        raise LogQueryError(f"{name}: at most {MAX_TAIL}")
    return n


def _app(value: str) -> str:
    app_id = "/" + value.strip("/")
    if len(app_id) > 255 or app_id == "/" or not all(
            _APP_SEGMENT.fullmatch(seg) for seg in app_id[1:].split("/")):
        raise LogQueryError(f"app: {value[:80]!r} is not an app id (such as /shop/web)")
    return app_id


def _task(value: str) -> str:
    if len(value) > MAX_TASK_ID or not _TASK_ID.fullmatch(value):
        raise LogQueryError(f"task: {value[:80]!r} is not a task id (such as "
                            "shop_web.1c4c91cf6e10)")
    return value


def _streams(value: str | None) -> tuple[Stream, ...]:
    if value is None or value.strip() in ("", "all"):
        return STREAMS
    names = [s.strip() for s in value.split(",") if s.strip()]
    wrong = [s for s in names if s not in get_args(Stream)]
    if wrong:
        raise LogQueryError(f"stream: {wrong[0][:40]!r} must be stdout or stderr")
    return tuple(s for s in STREAMS if s in names)


def _text(value: str | None) -> str | None:
    if value is None or value.strip() == "":
        return None
    if value.count('"') % 2:
        raise LogQueryError('q: a "quoted phrase" is not closed')
    return value.strip()


def _where(values: Sequence[str]) -> tuple[Where, ...]:
    if len(values) > MAX_WHERE:
        raise LogQueryError(f"where: at most {MAX_WHERE} filters")
    out: list[Where] = []
    for value in values:
        at = [(value.find(op), op) for op in _OPERATORS if op in value]
        if not at:
            raise LogQueryError(f"where: {value[:40]!r} needs =, != or ~ (level=error, "
                                "level!=debug, msg~timeout)")
        index, op = min(at, key=lambda a: (a[0], -len(a[1])))
        name, wanted = value[:index].strip(), value[index + len(op):]
        out.append((name, "!=" if op == "!=" else "=" if op == "=" else "~", wanted))
    return tuple(out)
