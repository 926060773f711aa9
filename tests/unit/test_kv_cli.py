"""`kade kv ...` and `kade render` against a live KV API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
import typer
import yaml
from typer.testing import CliRunner, Result

from kade.cli.kv import TXN_BODY_BYTES, kv_app, render_command, txn_chunks
from kade.model import Node, Task, TaskState, TaskStatus
from kade.store.limits import kv_quota
from kade.templates.kvdata import MAX_TXN_OPS, MAX_VALUE_BYTES
from tests.integration.test_consul_kv import KvServer, free_port

runner = CliRunner()


class Run(Protocol):
    def __call__(self, *args: str, input: bytes | str | None = None, ok: bool = True
                 ) -> Result: ...


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KvServer]:
    s = KvServer(tmp_path / "data").start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def kv(server: KvServer) -> Iterator[Run]:
    def run(*args: str, input: bytes | str | None = None, ok: bool = True) -> Result:
        result = runner.invoke(kv_app, list(args), input=input,
                               env={"KADE_ADDR": f"127.0.0.1:{server.port}"})
        assert (result.exit_code == 0) == ok, (result.stdout, result.stderr)
        return result

    yield run


def render_file(server: KvServer, path: Path, *args: str, ok: bool = True) -> Result:
    app = typer.Typer()
    app.command()(render_command)
    result = runner.invoke(app, [str(path), "--api-addr", server.url, *args])
    assert (result.exit_code == 0) == ok, (result.stdout, result.stderr)
    return result


def test_put_and_get(kv: Run, tmp_path: Path) -> None:
    assert kv("put", "config/mijndomein/example", "data").stdout == \
        "Success! Data written to: config/mijndomein/example\n"
    assert kv("get", "config/mijndomein/example").stdout == "data"  # exactly the value
    kv("put", "/from-stdin", "-", input=b"line 1\nline 2\n")
    assert kv("get", "from-stdin").stdout == "line 1\nline 2\n"
    (tmp_path / "v.bin").write_bytes(b"\x00\xffbin")
    kv("put", "from-file", f"@{tmp_path / 'v.bin'}")
    assert kv("get", "from-file").stdout_bytes == b"\x00\xffbin"
    entry = json.loads(kv("get", "from-file", "--json").stdout)
    assert entry["encoding"] == "base64" and entry["key"] == "from-file"


def test_get_missing_key_fails_clearly(kv: Run) -> None:
    result = kv("get", "nope", ok=False)
    assert result.exit_code == 1
    assert "key not found: nope" in result.stderr


def test_flags_and_check_and_set(kv: Run) -> None:
    kv("put", "k", "v1", "--flags", "9", "--cas", "0")
    entry = json.loads(kv("get", "k", "--json").stdout)
    assert entry["flags"] == 9
    result = kv("put", "k", "v2", "--cas", "0", ok=False)
    assert "check-and-set failed" in result.stderr
    kv("put", "k", "v2", "--cas", str(entry["modify_index"]))
    assert kv("get", "k").stdout == "v2"


def test_recurse_as_table_and_json(kv: Run) -> None:
    kv("put", "app/b", "two")
    kv("put", "app/a", "one")
    table = kv("get", "app/", "--recurse").stdout
    assert table.index("app/a") < table.index("app/b")
    assert "one" in table and "two" in table
    entries = json.loads(kv("get", "app/", "-r", "--json").stdout)
    assert [(e["key"], e["value"]) for e in entries] == [("app/a", "one"), ("app/b", "two")]


def test_ls_and_rm(kv: Run) -> None:
    for key in ("web/config/port", "web/config/host", "web/name", "webapp"):
        kv("put", key, "v")
    assert kv("ls", "web").stdout == "web/config/\nweb/name\n"
    assert kv("ls").stdout == "web/\nwebapp\n"
    assert kv("ls", "web", "--recurse").stdout.splitlines() == [
        "web/config/host", "web/config/port", "web/name"]
    assert kv("rm", "web/name").stdout == "Success! Deleted key: web/name\n"
    kv("rm", "web", "--recurse")
    assert kv("ls").stdout == "webapp\n"
    assert "refusing" in kv("rm", "/", "-r", ok=False).stderr
    assert kv("ls").stdout == "webapp\n"


def test_export_the_talks_tree(kv: Run) -> None:
    kv("put", "config/mijndomein/example", "data")
    kv("put", "config/mijndomein/db/host", "10.0.0.5")
    kv("put", "config/other", "x")
    assert yaml.safe_load(kv("export", "config/mijndomein", "--format", "yaml").stdout) == {
        "db": {"host": "10.0.0.5"}, "example": "data"}
    assert json.loads(kv("export").stdout) == {"config": {
        "mijndomein": {"db": {"host": "10.0.0.5"}, "example": "data"}, "other": "x"}}
    kv("put", "config/other/child", "y")
    assert "'config/other' is a value and also a directory" in kv("export", ok=False).stderr


def test_import_is_one_transaction_and_round_trips(kv: Run, tmp_path: Path) -> None:
    tree = {"mijndomein": {"example": "data", "port": 8080, "debug": False, "empty": {},
                           "none": None}}
    (tmp_path / "tree.yml").write_text(yaml.safe_dump(tree))
    assert kv("import", str(tmp_path / "tree.yml"), "--prefix", "config").stdout == \
        "Success! Imported 5 keys\n"
    assert kv("get", "config/mijndomein/port").stdout == "8080"
    assert kv("get", "config/mijndomein/debug").stdout == "false"
    entries = json.loads(kv("get", "config/", "--recurse", "--json").stdout)
    assert len({e["modify_index"] for e in entries}) == 1  # written by one transaction
    exported = json.loads(kv("export", "config").stdout)
    assert exported == {"mijndomein": {"example": "data", "port": "8080", "debug": "false",
                                       "empty": {}, "none": ""}}
    (tmp_path / "again.json").write_text(json.dumps(exported))
    kv("rm", "config", "-r")
    kv("import", str(tmp_path / "again.json"), "--prefix", "config")
    assert json.loads(kv("export", "config").stdout) == exported


def test_import_rejects_what_kv_cannot_hold_and_writes_nothing(kv: Run, tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("a: 1\nb: [1, 2]\n")
    assert "b: a list cannot be stored" in kv("import", str(tmp_path / "bad.yml"),
                                               ok=False).stderr
    (tmp_path / "broken.json").write_text('{"a": ')
    assert "invalid JSON at line 1" in kv("import", str(tmp_path / "broken.json"),
                                          ok=False).stderr
    assert kv("ls").stdout == ""


def test_import_of_many_keys_is_chunked_and_says_so(kv: Run, tmp_path: Path) -> None:
    (tmp_path / "many.json").write_text(json.dumps({f"k{i:03}": str(i) for i in range(150)}))
    result = kv("import", str(tmp_path / "many.json"), "--prefix", "many")
    assert "150 keys are written in 3 transactions" in result.stderr
    assert len(kv("ls", "many").stdout.splitlines()) == 150


def test_a_too_large_value_is_refused_before_it_is_sent(kv: Run, tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (MAX_VALUE_BYTES + 1))
    result = kv("put", "big", f"@{tmp_path / 'big'}", ok=False)
    assert "big: the value is 524289 bytes; a KV value is at most 524288 bytes" in result.stderr
    assert kv("ls").stdout == ""


def test_transactions_of_an_import_fit_the_api_limits() -> None:
    pairs = [(f"k{i}", b"v" * 300_000) for i in range(30)] + \
        [(f"s{i}", b"") for i in range(100)]
    chunks = txn_chunks(pairs)
    assert [p for chunk in chunks for p in chunk] == pairs  # in order, nothing lost
    for chunk in chunks:
        body = json.dumps([{"KV": {"Verb": "set", "Key": k, "Value": "A" * (len(v) * 4 // 3 + 3)}}
                           for k, v in chunk])
        assert len(chunk) <= MAX_TXN_OPS and len(body) <= TXN_BODY_BYTES
    assert [len(c) for c in chunks] == [2] * 14 + [64, 38]  # 2 values of 300 KB per 960 KiB


def test_an_import_of_the_largest_values_fits_the_api(kv: Run, tmp_path: Path) -> None:
    tree = {f"v{i}": "x" * MAX_VALUE_BYTES for i in range(3)}
    (tmp_path / "big.json").write_text(json.dumps(tree))
    result = kv("import", str(tmp_path / "big.json"), "--prefix", "big")
    assert "3 keys are written in 3 transactions" in result.stderr
    assert kv("get", "big/v2").stdout == "x" * MAX_VALUE_BYTES


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Run]:
    server = KvServer(tmp_path / "full", quotas=[kv_quota(max_keys=100)]).start()

    def run(*args: str, input: bytes | str | None = None, ok: bool = True) -> Result:
        result = runner.invoke(kv_app, [*args, "--api-addr", server.url], input=input)
        assert (result.exit_code == 0) == ok, (result.stdout, result.stderr)
        return result

    try:
        yield run
    finally:
        server.stop()


def test_a_full_kv_is_named_by_put_and_import(full: Run, tmp_path: Path) -> None:
    (tmp_path / "many.json").write_text(json.dumps({f"k{i:03}": str(i) for i in range(150)}))
    result = full("import", str(tmp_path / "many.json"), ok=False)
    assert ("error: KV is full: 100 keys is the limit (set KADE_KV_MAX_KEYS to change it), "
            "this write would make 128; nothing was written (64 of 150 keys were written "
            "before)") in " ".join(result.stderr.split())
    assert len(full("ls").stdout.splitlines()) == 64
    (tmp_path / "rest.json").write_text(json.dumps({f"j{i:03}": str(i) for i in range(36)}))
    full("import", str(tmp_path / "rest.json"))  # 100 keys now
    result = full("put", "one-more", "v", ok=False)
    assert "error: KV is full: 100 keys is the limit" in result.stderr
    full("rm", "k000")
    full("put", "one-more", "v")


def test_render_the_talks_template_once(kv: Run, server: KvServer, tmp_path: Path) -> None:
    kv("put", "config/mijndomein/example", "data")
    tpl = tmp_path / "parameters.yml.ctmpl"
    tpl.write_text('---\n{{ tree "config/mijndomein" | explode | toYAML }}\n')
    assert render_file(server, tpl).stdout == "---\nexample: data\n"
    render_file(server, tpl, "-o", str(tmp_path / "parameters.yml"))
    assert (tmp_path / "parameters.yml").read_text() == "---\nexample: data\n"


def test_render_follows_data_that_names_other_data(kv: Run, server: KvServer,
                                                   tmp_path: Path) -> None:
    kv("put", "current", "blue")
    kv("put", "colors/blue/port", "8081")
    tpl = tmp_path / "t.ctmpl"
    tpl.write_text('{{ $c := key "current" }}{{ key (printf "colors/%s/port" $c) }} '
                   '{{ env "X" }}\n')
    assert render_file(server, tpl, "-e", "X=1").stdout == "8081 1\n"
    j2 = tmp_path / "t.j2"
    j2.write_text("{{ key('colors/' ~ key('current') ~ '/port') }}")
    assert render_file(server, j2).stdout == "8081"


def test_render_reads_services_from_the_catalog_api(tmp_path: Path) -> None:
    """`service "web"` through the real /v1/health/service of a catalog built from records."""
    srv = KvServer(tmp_path / "data", catalog=True).start()
    try:
        app = {"id": "/web", "cmd": "true", "portDefinitions": [{"port": 0}],
               "labels": {"kade.service.tags": "prod"}}
        srv.put("apps/web", json.dumps(app).encode())
        srv.put("nodes/n1", Node(name="n1", address="10.0.0.7", cpus=2, mem=1024).dump())
        states: list[tuple[int, TaskState]] = [(1, "running"), (2, "running"), (3, "staging")]
        for i, state in states:
            tid = f"web.{i}"
            srv.put(f"tasks/{tid}", Task(id=tid, app_id="/web", version="v1", spec_hash="h",
                                         node="n1", host="10.0.0.7", host_ports=[31000 + i],
                                         created_at=0).dump())
            srv.put(f"status/{tid}", TaskStatus(task_id=tid, app_id="/web", node="n1",
                                                state=state, updated_at=0).dump())
        srv.sync_catalog()
        tpl = tmp_path / "upstreams.ctmpl"
        tpl.write_text('{{ range service "web" }}server {{ .Address }}:{{ .Port }} '
                       "{{ .Tags }}\n{{ end }}")
        out = render_file(srv, tpl).stdout  # the staging task is not healthy: left out
        assert out == "server 10.0.0.7:31001 [prod]\nserver 10.0.0.7:31002 [prod]\n"
    finally:
        srv.stop()


def test_render_errors_name_line_and_cause(kv: Run, server: KvServer, tmp_path: Path) -> None:
    tpl = tmp_path / "t.ctmpl"
    tpl.write_text('ok\n{{ key "absent/key" }}\n')
    result = render_file(server, tpl, ok=False)
    assert f"template {tpl}: line 2: missing key 'absent/key'" in result.stderr
    tpl.write_text("ok\n\n{{ if }}\n")
    assert f"template {tpl}: line 3: missing value for if" in render_file(server, tpl,
                                                                          ok=False).stderr


def test_unreachable_api_is_a_clear_error() -> None:
    result = runner.invoke(kv_app, ["get", "x", "--api-addr", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "cannot reach kade" in result.stderr
