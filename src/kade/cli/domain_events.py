"""`kade domain-events search|tail|show|stats`: the events apps publish, searched.

    kade domain-events search 'order.paid customer:4711' --since 1d
    kade domain-events tail --type 'order.*'
    kade domain-events show 1234 --around 5

One line per event for people (time, type, source, body); `--json` prints one JSON object
per line, for jq.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from kade.cli.console import fail as _fail
from kade.client import Client, ClientError

domain_events_app = typer.Typer(no_args_is_help=True, add_completion=False,
                                help="Search and follow the domain events apps publish.")

ApiAddr = Annotated[str | None, typer.Option(
    "--api-addr", envvar="KADE_ADDR",
    help="API address of a running kade [default: 127.0.0.1:7400]")]
AsJson = Annotated[bool, typer.Option("--json", help="one JSON object per line")]
Type = Annotated[str | None, typer.Option("--type", help="only events of this type (globs: "
                                          "'order.*')")]
Query = Annotated[str, typer.Argument(help="fields (customer:4711, type:order.*) and words")]




def _q(query: str, kind: str | None) -> str:
    return f'{query} type:"{kind}"'.strip() if kind else query


def line(event: dict[str, Any]) -> str:
    """`2026-11-30T17:00:00.123Z  order.paid  /shop/web  #12  {"customer": 4711}`."""
    when = dt.datetime.fromtimestamp(event["time"], dt.UTC).isoformat(timespec="milliseconds")
    body = json.dumps(event["body"], ensure_ascii=False, separators=(",", ":"))
    source = event["source"] or "-"
    return f"{when.replace('+00:00', 'Z')}  {event['type']}  {source}  #{event['id']}  {body}"


def _print(event: dict[str, Any], as_json: bool) -> None:
    text = json.dumps(event, ensure_ascii=False) if as_json else line(event)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@domain_events_app.command()
def search(
    query: Query = "",
    since: Annotated[str, typer.Option(help="how far back (10m, 1d) or a time")] = "1d",
    until: Annotated[str | None, typer.Option(help="up to (10m ago, or a time)")] = None,
    kind: Type = None,
    limit: Annotated[int, typer.Option("-n", "--limit", help="at most this many")] = 100,
    histogram: Annotated[str | None, typer.Option(
        help="also count them per interval (1h, 10m)")] = None,
    api_addr: ApiAddr = None,
    as_json: AsJson = False,
) -> None:
    """Events matching the query, oldest first (the newest `--limit` of them)."""
    try:
        data = Client(api_addr).get("/v1/domain-events", q=_q(query, kind), since=since,
                                    until=until, limit=limit, interval=histogram)
    except ClientError as e:
        _fail(str(e))
    for event in reversed(data["events"]):
        _print(event, as_json)
    for bucket in data.get("histogram", []):
        start = dt.datetime.fromtimestamp(bucket["start"], dt.UTC).isoformat()
        sys.stdout.write(json.dumps(bucket) + "\n" if as_json else
                         f"{start.replace('+00:00', 'Z')}  {bucket['count']}\n")


@domain_events_app.command()
def tail(
    query: Query = "",
    kind: Type = None,
    last: Annotated[int, typer.Option("-n", "--last", help="show the last N first")] = 10,
    api_addr: ApiAddr = None,
    as_json: AsJson = False,
) -> None:
    """Follow events as they are stored, until Ctrl-C."""
    try:
        for event in _sse(Client(api_addr).stream("/v1/domain-events/follow",
                                                  q=_q(query, kind), tail=last)):
            _print(event, as_json)
    except ClientError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        pass


def _sse(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """The `data:` of each server-sent event."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            for field in block.split(b"\n"):
                if field.startswith(b"data: "):
                    yield json.loads(field[6:])


@domain_events_app.command()
def show(
    event_id: Annotated[int, typer.Argument(help="the event's id (#… in search's output)")],
    around: Annotated[int, typer.Option(help="and N events before and after it")] = 0,
    api_addr: ApiAddr = None,
    as_json: AsJson = False,
) -> None:
    """One event whole, and the events around it in time."""
    try:
        data = Client(api_addr).get(f"/v1/domain-events/{event_id}", around=around)
    except ClientError as e:
        _fail(str(e))
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    for event in data.get("before", []):
        _print(event, False)
    sys.stdout.write(json.dumps(data["event"], indent=2, ensure_ascii=False) + "\n")
    for event in data.get("after", []):
        _print(event, False)


@domain_events_app.command()
def stats(api_addr: ApiAddr = None) -> None:
    """What is stored, what was dropped as a duplicate or dead-lettered, the broker."""
    try:
        data = Client(api_addr).get("/v1/domain-events/stats")
    except ClientError as e:
        _fail(str(e))
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def ingest_config(amqp: str | None, binds: list[str], config_file: Path | None) -> Any:
    """`kade up`'s --events-amqp/--events-bind/--events-config as an IngestConfig, None
    without a broker; ValueError naming the flag and the problem."""
    from kade.domain_events.config import IngestConfig, check_url, from_document, parse_binding

    if amqp is None:
        if binds or config_file:
            raise ValueError("--events-bind and --events-config need --events-amqp URL")
        return None
    cfg = IngestConfig(url=check_url(amqp))
    if config_file is not None:
        from kade.spec import SpecError, load_document

        try:
            cfg = from_document(cfg, load_document(config_file.read_text(), config_file.name),
                                str(config_file))
        except OSError as e:
            raise ValueError(f"--events-config {config_file}: {e.strerror}") from None
        except SpecError as e:
            raise ValueError(f"--events-config {config_file}: {e}") from None
    if binds:
        from dataclasses import replace

        cfg = replace(cfg, bindings=tuple(parse_binding(b) for b in binds))
    return cfg
