"""`kade token create|list|revoke`: API tokens (needs an admin token, such as the management
token the CLI finds by itself next to `kade up`)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Annotated, Any

import typer

from kade.cli.console import LazyConsole, make_table
from kade.cli.console import call as _call
from kade.client import Client

token_app = typer.Typer(no_args_is_help=True, help="Make, list and revoke API tokens.")
console = LazyConsole()
err = LazyConsole(stderr=True)

ApiAddr = Annotated[str | None, typer.Option(
    "--api-addr", envvar="KADE_ADDR", help="API address [default: 127.0.0.1:7400]")]




@token_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="read, deploy, node or admin")],
    apps: Annotated[list[str] | None, typer.Option(
        "--apps", help="deploy tokens: only these apps (glob, e.g. /shop/*); repeatable")] = None,
    kv: Annotated[list[str] | None, typer.Option(
        "--kv", help="deploy tokens: KV key prefixes it may write; repeatable")] = None,
    node: Annotated[str | None, typer.Option(
        help="node tokens: bound to this node (`kade agent --node`), it reports for it only")]
    = None,
    description: Annotated[str, typer.Option(help="who or what it is for")] = "",
    expires_in: Annotated[float | None, typer.Option(
        help="seconds until it stops working")] = None,
    api_addr: ApiAddr = None,
) -> None:
    """Make a token and print it (it is shown only this once)."""
    body: dict[str, Any] = {"role": role, "description": description}
    if apps:
        body["apps"] = apps
    if kv:
        body["kv"] = kv
    if expires_in:
        body["expiresInSeconds"] = expires_in
    if node:
        body["node"] = node
    result = _call(Client(api_addr).post, "/v1/tokens", body)
    err.print(f"token {result['id']} (role {result['role']}): keep it, it is not shown again",
              highlight=False)
    sys.stdout.write(result["token"] + "\n")


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@token_app.command("list")
def list_(api_addr: ApiAddr = None,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List tokens: id, role, scope, description (never the secret)."""
    tokens = _call(Client(api_addr).get, "/v1/tokens")["tokens"]
    if as_json:
        sys.stdout.write(json.dumps(tokens, indent=2) + "\n")
        return
    table = make_table("ID", "ROLE", "APPS", "KV", "CREATED", "EXPIRES", "DESCRIPTION")
    for t in tokens:
        table.add_row(t["id"], t["role"], ",".join(t["apps"] or []) or "*",
                      ",".join(t["kv"] or []) if t["kv"] is not None else "",
                      _when(t["created_at"]), _when(t["expires_at"]), t["description"])
    console.print(table)


@token_app.command("revoke")
def revoke(token_id: str, api_addr: ApiAddr = None) -> None:
    """Revoke a token: it stops working at once."""
    _call(Client(api_addr).delete, f"/v1/tokens/{token_id}")
    console.print(f"token {token_id} revoked")
