"""The read commands run most often — `kade apps`, `kade tasks [APP]`, `kade kv get KEY` —
answered without building the typer command line.

typer (0.29) checks every option that is not a flag through a pydantic TypeAdapter, so
just parsing `--api-addr` imports pydantic; with typer itself and rich that was most of the
0.6–0.9 s these commands took (docs/benchmarks.md, CLI start-up). They have few options, so
they are parsed here by hand. Anything this parser does not know exactly (`--help`, another
option, a missing value, a second argument) goes to the typer command line, which answers
it as before; both print through the functions below, so the output is the same either
way. rich is imported only to print a table or an error.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kade.cli.console import LazyConsole, make_table
from kade.client.http import (
    ClientError,
    ConnectError,
    HTTPError,
    Response,
    api_url,
    http_client,
    unreachable,
)

if TYPE_CHECKING:
    from rich.table import Table

console = LazyConsole()
err = LazyConsole(stderr=True)


class _Args:
    def __init__(self) -> None:
        self.positional: list[str] = []
        self.as_json = False
        self.api_addr: str | None = None


def _parse(args: Sequence[str]) -> _Args | None:
    """`--json`, `--api-addr ADDR` (or `=ADDR`) and plain arguments; None for anything
    else."""
    out = _Args()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--json":
            out.as_json = True
        elif arg == "--api-addr" and i + 1 < len(args):
            out.api_addr = args[i + 1]
            i += 1
        elif arg.startswith("--api-addr="):
            out.api_addr = arg.partition("=")[2]
        elif arg.startswith("-"):
            return None
        else:
            out.positional.append(arg)
        i += 1
    return out


def answer(argv: Sequence[str]) -> int | None:
    """Run `argv` (without the program name) if it is one of the commands above: the exit
    code; None to leave it to the full command line."""
    if argv[:1] == ["kv"] and argv[1:2] == ["get"]:
        args, command, most = _parse(argv[2:]), "kv get", 1
    elif argv[:1] in (["apps"], ["tasks"]):
        args, command, most = _parse(argv[1:]), argv[0], 1 if argv[0] == "tasks" else 0
    else:
        return None
    if args is None or len(args.positional) > most or (
            command == "kv get" and len(args.positional) != 1):
        return None
    try:
        if command == "kv get":
            return kv_get(args.positional[0], args.as_json, args.api_addr)
        from kade.client.http import Client

        client = Client(args.api_addr)
        if command == "apps":
            data = client.get("/v1/apps")["apps"]
            show(data, args.as_json, apps_table)
        else:
            app = args.positional[0] if args.positional else None
            data = client.get("/v1/tasks", app=app)["tasks"]
            show(data, args.as_json, tasks_table)
    except ClientError as e:
        fail(str(e))
        return 1
    return 0


def fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)


def show(data: list[dict[str, Any]], as_json: bool, table: Any) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        console.print(table(data))


def apps_table(data: list[dict[str, Any]]) -> Table:
    table = make_table("ID", "RUNNING", "HEALTHY", "WANTED", "CPUS", "MEM", "VERSION",
                       "STATUS")
    for a in data:
        if a["status"] == "quarantined":  # its definition cannot be read: show why
            table.add_row(a["id"], str(a["tasksRunning"]), str(a["tasksHealthy"]), "-", "-",
                          "-", "", f"quarantined: {a['quarantine']['reason']}")
            continue
        table.add_row(a["id"], str(a["tasksRunning"]), str(a["tasksHealthy"]),
                      str(a["instances"]), f"{a['cpus']:g}", f"{a['mem']:g}",
                      a["version"] or "", a["status"])
    return table


def tasks_table(data: list[dict[str, Any]]) -> Table:
    table = make_table("TASK", "STATE", "HEALTH", "ENDPOINT", "CONTAINER", "STARTED",
                       "MESSAGE")
    for t in data:
        ports = ",".join(str(p) for p in t["ports"])
        endpoint = f"{t['host']}:{ports}" if ports else t["host"]
        table.add_row(t["id"], t["state"].removeprefix("TASK_").lower(), t["health"], endpoint,
                      (t["containerId"] or "")[:12], t["startedAt"] or "", t["message"] or "")
    return table


# -- kv get (and what `kade kv` shares with it) ---------------------------------------------


def kv_get(key: str, as_json: bool, api_addr: str | None) -> int:
    """`kade kv get KEY`: the value exactly as stored (for scripts), or `--json`."""
    base = api_url(api_addr)
    http = http_client(api_addr)
    path = "/v1/kv/" + urllib.parse.quote(key.lstrip("/"))
    try:
        r = http.request("GET", path)
    except ConnectError as e:
        fail(unreachable(base, e))
        return 1
    except HTTPError as e:
        fail(f"request to {base}{path} failed: {e}")
        return 1
    finally:
        http.close()
    if r.status_code == 404:
        fail(f"key not found: {key}")
        return 1
    if r.status_code >= 400:
        fail(error_text(r))
        return 1
    if as_json:
        print_json(entry_out(r.json()[0]))
    else:
        write_value(kv_value(r.json()[0]))
    return 0


def write_value(value: bytes) -> None:
    out = sys.stdout.buffer
    out.write(value)
    if sys.stdout.isatty() and not value.endswith(b"\n"):
        out.write(b"\n")
    out.flush()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def error_text(r: Response) -> str:
    try:
        data = r.json()
    except ValueError:
        return r.text.strip() or f"HTTP {r.status_code}"
    if isinstance(data, dict):
        if data.get("Errors"):
            return "; ".join(f"op {e.get('OpIndex')}: {e.get('What')}" for e in data["Errors"])
        return str(data.get("message") or data)
    return str(data)


def kv_value(entry: Mapping[str, Any]) -> bytes:
    raw = entry.get("Value")
    return base64.b64decode(raw) if raw else b""


def text_of(value: bytes) -> str | None:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def entry_out(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry for people and scripts: the value as text when it is text, else base64."""
    value = kv_value(entry)
    text = text_of(value)
    out = {"key": entry["Key"], "flags": entry.get("Flags", 0),
           "create_index": entry.get("CreateIndex"), "modify_index": entry.get("ModifyIndex")}
    if text is None:
        return {**out, "value": base64.b64encode(value).decode(), "encoding": "base64"}
    return {**out, "value": text}
