"""`kade kv ...` and `kade render`: the KV tree from the command line, over the Consul KV API
of a running kade (so the same commands work against anything that speaks it)."""

from __future__ import annotations

import base64
import json
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kade.cli.console import fail as _fail
from kade.cli.quick import entry_out as _entry_out
from kade.cli.quick import error_text as _error_text
from kade.cli.quick import kv_value as _value
from kade.client.http import ConnectError, HTTPError, Response, api_url, http_client, unreachable

# The template engine, YAML and rich are imported where they are used: `kade kv get` is
# over before importing them would be (docs/benchmarks.md, CLI start-up).
if TYPE_CHECKING:
    from kade.templates import InlineTemplate, ServiceEndpoint

kv_app = typer.Typer(no_args_is_help=True, add_completion=False,
                     help="Read and write the KV tree that templates render from.")

ApiAddr = Annotated[str | None, typer.Option(
    "--api-addr", envvar="KADE_ADDR",
    help="API address of a running kade [default: 127.0.0.1:7400]")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
RENDER_PASSES = 10
TXN_BODY_BYTES = 960 * 1024  # below the API's 1 MiB cap on a transaction body




def _note(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(message, highlight=False, markup=False, soft_wrap=True)


class KvApi:
    """The few calls the CLI makes; 404 is an answer here, not an error."""

    def __init__(self, addr: str | None) -> None:
        self.base = api_url(addr)
        self.http = http_client(addr)

    def __enter__(self) -> KvApi:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, *, after: str = "", **kwargs: Any
             ) -> Response:
        """One request; an error answer ends the command with its message (and `after`,
        which says what was done before it)."""
        try:
            r = self.http.request(method, path, **kwargs)
        except ConnectError as e:
            _fail(unreachable(self.base, e))
        except HTTPError as e:
            _fail(f"request to {self.base}{path} failed: {e}")
        if r.status_code >= 400 and r.status_code != 404:
            _fail(_error_text(r) + after)
        return r

    def kv(self, method: str, key: str, **kwargs: Any) -> Response:
        return self.call(method, "/v1/kv/" + urllib.parse.quote(key.lstrip("/")), **kwargs)

    def entries(self, prefix: str) -> list[dict[str, Any]]:
        r = self.kv("GET", prefix, params={"recurse": ""})
        return [] if r.status_code == 404 else list(r.json())

    def value(self, key: str) -> bytes | None:
        r = self.kv("GET", key)
        return None if r.status_code == 404 else _value(r.json()[0])

    def services(self, name: str) -> list[ServiceEndpoint]:
        r = self.call("GET", "/v1/health/service/" + urllib.parse.quote(name),
                      params={"passing": ""})
        if r.status_code == 404:
            _fail(f"cannot read service {name!r}: this kade has no /v1/health/service API")
        return [_endpoint(name, item) for item in r.json()]


def _endpoint(name: str, item: Mapping[str, Any]) -> ServiceEndpoint:
    from kade.templates import ServiceEndpoint

    node, svc = item.get("Node") or {}, item.get("Service") or {}
    return ServiceEndpoint(
        name=svc.get("Service") or name, id=svc.get("ID", ""),
        address=svc.get("Address") or node.get("Address", ""), port=int(svc.get("Port") or 0),
        node=node.get("Node", ""), node_address=node.get("Address", ""),
        tags=tuple(svc.get("Tags") or ()), meta=tuple(sorted((svc.get("Meta") or {}).items())))


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@kv_app.command("get")
def get_command(
    key: Annotated[str, typer.Argument(help="the key (with --recurse: a prefix)")],
    recurse: Annotated[bool, typer.Option("--recurse", "-r", help="every key under KEY")] = False,
    as_json: AsJson = False,
    api_addr: ApiAddr = None,
) -> None:
    """Print a key's value (exactly, for scripts), or a table of every key under a prefix."""
    with KvApi(api_addr) as api:
        if recurse:
            entries = [_entry_out(e) for e in api.entries(key)]
        else:
            r = api.kv("GET", key)
    if recurse:
        if as_json:
            _print_json(entries)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("KEY", "FLAGS", "VALUE", box=None)
        for e in entries:
            shown = e["value"] if "encoding" not in e else "<binary>"
            table.add_row(e["key"], str(e["flags"]), shown.replace("\n", "\\n"))
        Console().print(table, soft_wrap=True)
        return
    if r.status_code == 404:
        _fail(f"key not found: {key}")
    if as_json:
        _print_json(_entry_out(r.json()[0]))
        return
    out = sys.stdout.buffer
    value = _value(r.json()[0])
    out.write(value)
    if sys.stdout.isatty() and not value.endswith(b"\n"):
        out.write(b"\n")
    out.flush()


@kv_app.command("put")
def put_command(
    key: Annotated[str, typer.Argument(help="the key")],
    value: Annotated[str, typer.Argument(help="the value; - reads stdin, @FILE reads a file")]
    = "",
    flags: Annotated[int | None, typer.Option(min=0, help="Consul's flags number")] = None,
    cas: Annotated[int | None, typer.Option(
        min=0, help="write only if the key's modify index is this (0: only if absent)")] = None,
    api_addr: ApiAddr = None,
) -> None:
    """Write a key."""
    from kade.templates.kvdata import MAX_VALUE_BYTES

    if value == "-":
        data = sys.stdin.buffer.read()
    elif value.startswith("@"):
        try:
            data = Path(value[1:]).read_bytes()
        except OSError as e:
            _fail(f"cannot read {value[1:]}: {e.strerror}")
    else:
        data = value.encode()
    if len(data) > MAX_VALUE_BYTES:
        _fail(f"{key}: the value is {len(data)} bytes; a KV value is at most {MAX_VALUE_BYTES} "
              "bytes (Consul's limit)")
    params: dict[str, Any] = {}
    if flags is not None:
        params["flags"] = flags
    if cas is not None:
        params["cas"] = cas
    with KvApi(api_addr) as api:
        r = api.kv("PUT", key, content=data, params=params)
    if r.json() is not True:
        _fail(f"{key} was not written: its modify index is not {cas} (check-and-set failed)")
    typer.echo(f"Success! Data written to: {key.lstrip('/')}")


@kv_app.command("rm")
def rm_command(
    key: Annotated[str, typer.Argument(help="the key (with --recurse: a prefix)")],
    recurse: Annotated[bool, typer.Option("--recurse", "-r", help="every key under KEY")] = False,
    api_addr: ApiAddr = None,
) -> None:
    """Delete a key, or every key under a prefix."""
    if recurse and key.strip("/") == "":
        _fail("refusing to delete the whole tree; name a prefix")
    if recurse and not key.endswith("/"):
        key += "/"  # the directory: `rm -r web` leaves `webapp` alone
    with KvApi(api_addr) as api:
        api.kv("DELETE", key, params={"recurse": ""} if recurse else {})
    what = "keys with prefix" if recurse else "key"
    typer.echo(f"Success! Deleted {what}: {key.lstrip('/')}")


@kv_app.command("ls")
def ls_command(
    prefix: Annotated[str, typer.Argument(help="list under this prefix")] = "",
    recurse: Annotated[bool, typer.Option("--recurse", "-r", help="all keys, not one level")]
    = False,
    api_addr: ApiAddr = None,
) -> None:
    """List the keys one level under PREFIX (sub-directories end in /)."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    params = {"keys": ""} if recurse else {"keys": "", "separator": "/"}
    with KvApi(api_addr) as api:
        r = api.kv("GET", prefix, params=params)
    for name in [] if r.status_code == 404 else r.json():
        typer.echo(name)


def _as_tree(prefix: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    from kade.templates.encode import export_tree

    try:
        return export_tree(prefix, [(e["Key"], _value(e)) for e in entries])
    except ValueError as e:
        _fail(str(e))


@kv_app.command("export")
def export_command(
    prefix: Annotated[str, typer.Argument(help="export the tree under this prefix")] = "",
    format: Annotated[str, typer.Option("--format", "-f", help="json or yaml")] = "json",
    api_addr: ApiAddr = None,
) -> None:
    """Print the tree under PREFIX as nested JSON or YAML (keys relative to PREFIX)."""
    if format not in ("json", "yaml"):
        _fail(f"--format: {format!r} is not json or yaml")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    prefix = prefix.lstrip("/")
    with KvApi(api_addr) as api:
        entries = api.entries(prefix)
    flagged = [e["Key"] for e in entries if e.get("Flags")]
    if flagged:
        _note(f"note: flags are not exported ({len(flagged)} keys have them, e.g. {flagged[0]})")
    tree = _as_tree(prefix, entries)
    if format == "json":
        _print_json(tree)
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(tree, default_flow_style=False, sort_keys=True,
                                        allow_unicode=True) if tree else "{}\n")


def flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """A nested JSON/YAML tree → (key, value) pairs; an empty map becomes a directory key."""
    if not isinstance(tree, Mapping):
        raise ValueError("the file must hold a map of keys")
    if not tree and prefix:
        yield prefix, b""
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from flatten(v, key + "/")
        elif isinstance(v, list):
            raise ValueError(f"{key}: a list cannot be stored as a key; quote it as a string")
        elif v is None:
            yield key, b""
        elif isinstance(v, bool):
            yield key, b"true" if v else b"false"
        else:
            yield key, str(v).encode()


def _load(file: Path) -> Any:
    import yaml

    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as e:
        _fail(f"cannot read {file}: {e.strerror}")
    try:
        if file.suffix == ".json" or text.lstrip().startswith(("{", "[")):
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as e:
        _fail(f"{file}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")
    except yaml.YAMLError as e:
        _fail(f"{file}: invalid YAML: {e}")


@kv_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="a JSON or YAML tree (- = stdin)")],
    prefix: Annotated[str, typer.Option(help="put the keys under this prefix")] = "",
    api_addr: ApiAddr = None,
) -> None:
    """Write every key of a nested tree (what `export` prints) in one transaction."""
    from kade.templates.kvdata import MAX_KEY_BYTES, MAX_TXN_OPS, MAX_VALUE_BYTES

    if prefix and not prefix.endswith("/"):
        prefix += "/"
    try:
        pairs = list(flatten(_load(file), prefix.lstrip("/")))
    except ValueError as e:
        _fail(f"{file}: {e}")
    for key, value in pairs:
        if len(key.encode()) > MAX_KEY_BYTES:
            _fail(f"{key}: the key is longer than {MAX_KEY_BYTES} bytes")
        if len(value) > MAX_VALUE_BYTES:
            _fail(f"{key}: the value is larger than {MAX_VALUE_BYTES} bytes")
    if not pairs:
        _fail(f"{file}: no keys to import")
    chunks = txn_chunks(pairs)
    if len(chunks) > 1:
        _note(f"note: {len(pairs)} keys are written in {len(chunks)} transactions of at most "
              f"{MAX_TXN_OPS} keys and {TXN_BODY_BYTES // 1024} KiB (the API's limits):"
              " each is all-or-nothing, the import as a whole is not")
    written = 0
    with KvApi(api_addr) as api:
        for chunk in chunks:
            ops = [{"KV": {"Verb": "set", "Key": k, "Value": base64.b64encode(v).decode()}}
                   for k, v in chunk]
            after = f" ({written} of {len(pairs)} keys were written before)" if written else ""
            api.call("PUT", "/v1/txn", json=ops, after=after)
            written += len(chunk)
    typer.echo(f"Success! Imported {len(pairs)} keys")


def txn_chunks(pairs: list[tuple[str, bytes]]) -> list[list[tuple[str, bytes]]]:
    """`pairs` in order, cut into transactions the API accepts: at most MAX_TXN_OPS keys and
    a JSON body of at most TXN_BODY_BYTES (base64 makes a value a third larger)."""
    from kade.templates.kvdata import MAX_TXN_OPS

    chunks: list[list[tuple[str, bytes]]] = []
    size = 0
    for key, value in pairs:
        op = len(json.dumps(key)) + (len(value) + 2) // 3 * 4 + 64
        if not chunks or len(chunks[-1]) >= MAX_TXN_OPS or size + op > TXN_BODY_BYTES:
            chunks.append([])
            size = 2
        chunks[-1].append((key, value))
        size += op
    return chunks


def render_command(
    template_file: Annotated[Path, typer.Argument(help="the template (- = stdin)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write here, not stdout")]
    = None,
    syntax: Annotated[str | None, typer.Option(
        help="consul-template or jinja [default: jinja for .j2/.jinja files]")] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", "-e", help="NAME=VALUE for env \"NAME\" (repeatable)")] = None,
    api_addr: ApiAddr = None,
) -> None:
    """Render a template once against the live KV tree and services (`consul-template -once`)."""
    from kade.templates import InlineTemplate

    try:
        source = sys.stdin.read() if str(template_file) == "-" else template_file.read_text()
    except OSError as e:
        _fail(f"cannot read {template_file}: {e.strerror}")
    if syntax is None:
        syntax = "jinja" if template_file.suffix in (".j2", ".jinja", ".jinja2") else \
            "consul-template"
    if syntax not in ("consul-template", "jinja"):
        _fail(f"--syntax: {syntax!r} is not consul-template or jinja")
    variables = {}
    for item in env or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            _fail(f"--env: {item!r} is not NAME=VALUE")
        variables[name] = value
    template = InlineTemplate(str(template_file), source, syntax)  # type: ignore[arg-type]
    with KvApi(api_addr) as api:
        text = render_live(template, api, variables)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


def render_live(template: InlineTemplate, api: KvApi, env: Mapping[str, str]) -> str:
    """Render, fetch what the render read but was not fetched yet, and again, until nothing
    new is read (consul-template's dependency loop, done once)."""
    from kade.templates import Reads, TemplateError, render

    kv: dict[str, bytes] = {}
    services: dict[str, list[ServiceEndpoint]] = {}
    fetched = Reads()
    for _ in range(RENDER_PASSES):
        error: TemplateError | None = None
        try:
            rendered = render(template, kv=kv, services=services, env=env)
            reads = rendered.reads
        except TemplateError as e:
            if e.reads is None:  # a syntax error: no data would change it
                _fail(str(e))
            error, reads = e, e.reads
        new = Reads(reads.keys - fetched.keys, reads.prefixes - fetched.prefixes,
                    reads.services - fetched.services)
        if not (new.keys or new.prefixes or new.services):
            if error is not None:
                _fail(str(error))
            return rendered.text
        for key in new.keys:
            value = api.value(key)
            if value is not None:
                kv[key] = value
        for prefix in new.prefixes:
            for entry in api.entries(prefix):
                kv[entry["Key"]] = _value(entry)
        for name in new.services:
            services[name] = api.services(name)
        fetched = fetched | new
    _fail(f"template {template.destination}: still reading new data after {RENDER_PASSES} "
          "passes")
