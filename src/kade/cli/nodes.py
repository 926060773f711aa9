"""`kade nodes` and `kade node drain|eligibility`: what operators see and ask of nodes.

A drain is started in kade and goes on there: the command only follows its progress, so
Ctrl-C (or a lost terminal) leaves it running, and `kade node drain NAME --cancel` stops it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import typer

from kade.cli.console import LazyConsole, make_table
from kade.cli.console import call as _call
from kade.cli.console import fail as _fail
from kade.client import Client, ClientError

node_app = typer.Typer(no_args_is_help=True,
                       help="Drain nodes and set their eligibility (needs an admin token).")
console = LazyConsole()
err = LazyConsole(stderr=True)

ApiAddr = Annotated[str | None, typer.Option(
    "--api-addr", envvar="KADE_ADDR", help="API address [default: 127.0.0.1:7400]")]
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C






def nodes(attr: Annotated[str | None, typer.Option(
              help="only nodes with this attribute, e.g. az=1a")] = None,
          api_addr: ApiAddr = None,
          as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List nodes: attributes, status, eligibility, tasks, cpus and memory used."""
    data = _call(Client(api_addr).get, "/v1/nodes", attr=attr)["nodes"]
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = make_table("NODE", "ADDRESS", "ATTRIBUTES", "STATUS", "ELIGIBLE", "TASKS", "CPUS",
                       "MEM (MiB)", "DRAIN")
    for n in data:
        table.add_row(n["name"], n["address"], attributes_text(n["attributes"]), n["status"],
                      "yes" if n["eligible"] else "no", str(n["tasks"]), used(n["cpus"]),
                      used(n["mem"]), drain_text(n["drain"]) if n["drain"] else "")
    console.print(table)


def attributes_text(attributes: dict[str, str]) -> str:
    """`az=1a,rack=r1`, the zone first: the attribute operators look for."""
    keys = sorted(attributes, key=lambda k: (k != "az", k))
    return ",".join(f"{k}={attributes[k]}" for k in keys)


def used(amount: dict[str, float]) -> str:
    return f"{amount['used']:g}/{amount['total']:g}"


def drain_text(drain: dict[str, Any]) -> str:
    t = drain["tasks"]
    parts = [f"{t['left']} left", f"{t['moving']} moving", f"{t['done']} done"]
    if t["kept"]:
        parts.append(f"{t['kept']} kept")
    when = "deadline passed" if drain["deadlinePassed"] else f"deadline {drain['deadline']}"
    return f"{', '.join(parts)} ({when})"


def progress_line(item: dict[str, Any]) -> str:
    if item["drain"] is None:
        return f"{item['node']}: {item['status']}, no drain"
    if item["drain"]["complete"]:
        t = item["drain"]["tasks"]
        kept = f", {t['kept']} kept" if t["kept"] else ""
        return f"{item['node']}: drained, {t['done']} moved{kept}"
    return f"{item['node']}: {item['status']}, {drain_text(item['drain'])}"


@node_app.command("eligibility")
def eligibility(
    name: str,
    enable: Annotated[bool, typer.Option("--enable", help="new tasks may be placed here")]
    = False,
    disable: Annotated[bool, typer.Option(
        "--disable", help="no new task is placed here; running ones stay")] = False,
    api_addr: ApiAddr = None,
) -> None:
    """Make a node eligible for new tasks, or not."""
    if enable == disable:
        _fail("say --enable or --disable", 2)
    node = _call(Client(api_addr).put, f"/v1/nodes/{name}/eligibility", {"eligible": enable})
    console.print(f"{name}: {'eligible' if node['node']['eligible'] else 'ineligible'}")


@node_app.command("drain")
def drain(
    name: Annotated[str | None, typer.Argument(help="the node (or --attr for a zone)")] = None,
    attr: Annotated[str | None, typer.Option(
        help="drain every node with this attribute, e.g. az=1a")] = None,
    deadline: Annotated[str, typer.Option(
        help="after it, tasks not yet moved are stopped (5m, 1h)")] = "1h",
    keep_system: Annotated[bool, typer.Option(
        "--keep-system", help="leave system apps' tasks running")] = False,
    max_parallel: Annotated[int, typer.Option(help="tasks of one app moved at a time")] = 1,
    cancel: Annotated[bool, typer.Option(
        "--cancel", help="stop draining (the node stays ineligible unless --enable)")] = False,
    enable: Annotated[bool, typer.Option(
        "--enable", help="with --cancel: make the node eligible again")] = False,
    wait: Annotated[bool, typer.Option(help="follow the progress until done")] = True,
    api_addr: ApiAddr = None,
) -> None:
    """Move a node's tasks elsewhere (replacements healthy first), or a whole zone's."""
    if (name is None) == (attr is None):
        _fail("name a node, or give --attr key=value for every node with that attribute", 2)
    if enable and not cancel:
        _fail("--enable goes with --cancel (`kade node eligibility NAME --enable` otherwise)",
              2)
    client = Client(api_addr)
    body = {"deadline": deadline, "keepSystem": keep_system, "maxParallel": max_parallel}
    if cancel:
        if name is None:
            _fail("--cancel takes a node's name", 2)
        shown = _call(client.delete, f"/v1/nodes/{name}/drain",
                      eligible=str(enable).lower())["node"]
        console.print(f"{name}: not draining, "
                      f"{'eligible' if shown['eligible'] else 'ineligible'}")
        return
    if name is not None:
        _call(client.post, f"/v1/nodes/{name}/drain", body)
        console.print(f"{name}: ineligible, draining (deadline {deadline})")
        path, params = f"/v1/nodes/{name}/drain", {}
    else:
        started = _call(client.post, "/v1/nodes/drain", {**body, "attr": attr})
        names = [n["name"] for n in started["nodes"]]
        console.print(f"{attr}: {len(names)} node(s) ineligible, draining: {', '.join(names)}")
        path, params = "/v1/nodes/drain", {"attr": attr}
    if wait:
        _follow(client, path, params, name or str(attr))


def _follow(client: Client, path: str, params: dict[str, Any], what: str) -> None:
    """Print each change of progress until the drain is complete; Ctrl-C stops following
    only."""
    try:
        for item in json_lines(client.stream(path, watch="true", **params)):
            for one in item.get("drains", [item]):
                console.print(progress_line(one), highlight=False)
            if item.get("complete") or (
                    "drain" in item and (item["drain"] is None or item["drain"]["complete"])):
                return
    except ClientError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        err.print(f"stopped following: the drain of {what} goes on in kade (`kade nodes` "
                  "shows it; `kade node drain NAME --cancel` stops it)", highlight=False)
        raise typer.Exit(INTERRUPTED) from None
    err.print(f"the stream ended before the drain of {what} was done (kade stopped?): "
              "the drain goes on; `kade nodes` shows it", highlight=False)
    raise typer.Exit(1)


def json_lines(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """NDJSON objects from a byte stream cut anywhere; blank lines (keepalives) skipped."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
