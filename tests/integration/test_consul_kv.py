"""The KV API against the real py-consul client, served by uvicorn over a real SqliteStore."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import consul  # type: ignore[import-untyped]
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from kade.api.consul_catalog import catalog_router
from kade.api.consul_kv import MAX_KEY_BYTES, MAX_VALUE_BYTES, kv_router
from kade.catalog.view import CatalogView
from kade.store import Quota, SqliteStore
from kade.store.limits import kv_quota


def enc(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WatchedStore(SqliteStore):
    """The real store, telling the test when a blocking query starts to wait."""

    def __init__(self, data_dir: Path, waiting: threading.Event,
                 quotas: Sequence[Quota] | None = None) -> None:
        super().__init__(data_dir, quotas=quotas)
        self.waiting = waiting

    async def wait(self, prefix: str, after: int, timeout: float) -> int:
        self.waiting.set()
        return await super().wait(prefix, after, timeout)


class KvServer:
    """A FastAPI app with the KV router and a SqliteStore, on its own thread and event loop;
    with `catalog`, also the Consul catalog and health API over a live CatalogView."""

    def __init__(self, data_dir: Path, *, catalog: bool = False,
                 quotas: Sequence[Quota] | None = None) -> None:
        self.data_dir = data_dir
        self.catalog = catalog
        self.quotas = quotas
        self.waiting = threading.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self.store: SqliteStore
        self.loop: asyncio.AbstractEventLoop
        self.view: CatalogView
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        store = WatchedStore(self.data_dir, self.waiting, self.quotas)
        try:
            app = FastAPI()
            app.include_router(kv_router(store))
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                    lifespan="off", timeout_graceful_shutdown=2)
            self._server = uvicorn.Server(config)
            self.store = store
            self.loop = asyncio.get_running_loop()
            if not self.catalog:
                await self._server.serve()
                return
            async with CatalogView(store).running() as view:
                self.view = view
                app.include_router(catalog_router(view, node_name="n1"))
                await self._server.serve()
        finally:
            await store.close()

    def put(self, key: str, value: bytes) -> None:
        """Write a store record directly (what the scheduler and agents would write)."""
        asyncio.run_coroutine_threadsafe(self.store.put(key, value), self.loop).result(10)

    def sync_catalog(self) -> None:
        """Wait until the catalog has applied every write so far."""
        done = asyncio.run_coroutine_threadsafe(self.view.sync(), self.loop).result(30)
        assert done, "the catalog did not catch up"

    def start(self) -> KvServer:
        self._thread.start()
        for _ in range(200):
            if self._server is not None and self._server.started:
                return self
            self._thread.join(0.05)
        raise AssertionError("KV server did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(15)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KvServer]:
    s = KvServer(tmp_path / "data").start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def c(server: KvServer) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=server.port)


def test_put_and_get_one_key(c: consul.Consul) -> None:
    assert c.kv.put("config/mijndomein/example", "data") is True
    index, item = c.kv.get("config/mijndomein/example")
    assert item["Key"] == "config/mijndomein/example"
    assert item["Value"] == b"data"
    assert item["Flags"] == 0 and item["LockIndex"] == 0
    assert "Session" not in item
    assert item["CreateIndex"] == item["ModifyIndex"] >= 1
    assert int(index) >= item["ModifyIndex"]

    c.kv.put("config/mijndomein/example", "more")
    _, again = c.kv.get("config/mijndomein/example")
    assert again["Value"] == b"more"
    assert again["CreateIndex"] == item["CreateIndex"]
    assert again["ModifyIndex"] > item["ModifyIndex"]


def test_binary_and_empty_values(c: consul.Consul) -> None:
    c.kv.put("bin", b"\x00\x01\xff")
    c.kv.put("empty", None)
    assert c.kv.get("bin")[1]["Value"] == b"\x00\x01\xff"
    assert c.kv.get("empty")[1]["Value"] is None  # Consul answers null for an empty value


def test_missing_key_is_404_with_index_headers(c: consul.Consul, server: KvServer) -> None:
    index, item = c.kv.get("nope")
    assert item is None
    assert int(index) >= 1
    r = httpx.get(f"{server.url}/v1/kv/nope")
    assert r.status_code == 404
    assert int(r.headers["X-Consul-Index"]) >= 1
    assert r.headers["X-Consul-KnownLeader"] == "true"


def test_recurse_lists_a_tree_in_key_order(c: consul.Consul) -> None:
    for key in ("app/b", "app/a/x", "app/a/y", "other"):
        c.kv.put(key, key.upper())
    _, items = c.kv.get("app/", recurse=True)
    assert [i["Key"] for i in items] == ["app/a/x", "app/a/y", "app/b"]
    assert [i["Value"] for i in items] == [b"APP/A/X", b"APP/A/Y", b"APP/B"]
    assert c.kv.get("none/", recurse=True)[1] is None


def test_keys_with_separator(c: consul.Consul) -> None:
    for key in ("web/config/port", "web/config/host", "web/name", "webapp"):
        c.kv.put(key, "v")
    _, keys = c.kv.get("web/", keys=True, separator="/")
    assert keys == ["web/config/", "web/name"]
    _, everything = c.kv.get("", keys=True)
    assert everything == ["web/config/host", "web/config/port", "web/name", "webapp"]


def test_flags_are_kept_with_the_value(c: consul.Consul) -> None:
    c.kv.put("flagged", "v", flags=42)
    assert c.kv.get("flagged")[1]["Flags"] == 42
    c.kv.put("big", "v", flags=2**64 - 1)
    assert c.kv.get("big")[1]["Flags"] == 2**64 - 1
    c.kv.put("flagged", "w")  # a put without flags sets them to 0, as Consul does
    assert c.kv.get("flagged")[1]["Flags"] == 0


def test_cas_on_put_and_delete(c: consul.Consul) -> None:
    assert c.kv.put("lock", "a", cas=0) is True
    assert c.kv.put("lock", "b", cas=0) is False  # exists already
    modify = c.kv.get("lock")[1]["ModifyIndex"]
    assert c.kv.put("lock", "c", cas=modify) is True
    assert c.kv.put("lock", "d", cas=modify) is False  # stale
    assert c.kv.get("lock")[1]["Value"] == b"c"

    current = c.kv.get("lock")[1]["ModifyIndex"]
    assert c.kv.delete("lock", cas=current - 1) is False
    assert c.kv.get("lock")[1] is not None
    assert c.kv.delete("lock", cas=current) is True
    assert c.kv.get("lock")[1] is None


def test_delete_recurse(c: consul.Consul) -> None:
    for key in ("tree/a", "tree/b/c", "treehouse"):
        c.kv.put(key, "v")
    assert c.kv.delete("tree/", recurse=True) is True
    assert c.kv.get("tree/", recurse=True)[1] is None
    assert c.kv.get("treehouse")[1]["Value"] == b"v"
    assert c.kv.delete("never-there") is True


def test_blocking_get_returns_on_change(c: consul.Consul, server: KvServer) -> None:
    c.kv.put("watched", "1")
    index, _ = c.kv.get("watched")
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(c.kv.get, "watched", index=index, wait="60s")
        assert server.waiting.wait(30), "the query never started to block"
        c.kv.put("other-key", "x")  # unrelated writes do not wake it
        c.kv.put("watched", "2")
        new_index, item = waiting.result(timeout=30)
    assert int(new_index) > int(index)
    assert item["Value"] == b"2"


def test_blocking_get_returns_after_wait(c: consul.Consul) -> None:
    c.kv.put("quiet", "1")
    index, _ = c.kv.get("quiet")
    same_index, item = c.kv.get("quiet", index=index, wait="200ms")
    assert same_index == index
    assert item["Value"] == b"1"


def test_blocking_on_a_missing_key_wakes_when_it_appears(c: consul.Consul,
                                                         server: KvServer) -> None:
    index, item = c.kv.get("later")
    assert item is None
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(c.kv.get, "later", index=index, wait="60s")
        assert server.waiting.wait(30), "the query never started to block"
        c.kv.put("later", "here")
        _, item = waiting.result(timeout=30)
    assert item["Value"] == b"here"


def test_txn_applies_all_and_answers_like_consul(c: consul.Consul) -> None:
    c.kv.put("t/existing", "old")
    modify = c.kv.get("t/existing")[1]["ModifyIndex"]
    result = c.txn.put([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": enc("A"), "Flags": 7}},
        {"KV": {"Verb": "cas", "Key": "t/existing", "Value": enc("new"), "Index": modify}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
        {"KV": {"Verb": "check-not-exists", "Key": "t/absent"}},
        {"KV": {"Verb": "get-tree", "Key": "t/"}},
    ])
    assert result["Errors"] is None
    kvs = [r["KV"] for r in result["Results"]]
    assert kvs[0]["Key"] == "t/a" and kvs[0]["Value"] is None and kvs[0]["Flags"] == 7
    assert kvs[1]["ModifyIndex"] > modify
    assert kvs[2]["Value"] == enc("A")
    assert [k["Key"] for k in kvs[3:]] == ["t/a", "t/existing"]
    # one transaction, one index
    assert kvs[0]["ModifyIndex"] == kvs[1]["ModifyIndex"] == kvs[2]["ModifyIndex"]
    assert c.kv.get("t/existing")[1]["Value"] == b"new"


def test_failed_txn_changes_nothing_and_is_409(c: consul.Consul, server: KvServer) -> None:
    c.kv.put("f/keep", "v")
    ops = [
        {"KV": {"Verb": "set", "Key": "f/new", "Value": base64.b64encode(b"x").decode()}},
        {"KV": {"Verb": "delete", "Key": "f/keep"}},
        {"KV": {"Verb": "check-index", "Key": "f/keep", "Index": 999999}},
        {"KV": {"Verb": "get", "Key": "f/absent"}},
    ]
    with pytest.raises(consul.ConsulException):  # py-consul's error for a 409
        c.txn.put(ops)
    r = httpx.put(f"{server.url}/v1/txn", content=json.dumps(ops))
    assert r.status_code == 409
    body = r.json()
    assert body["Results"] is None
    assert body["Errors"] == [
        {"OpIndex": 2, "What": "key \"f/keep\" doesn't exist"},  # deleted earlier in the txn
        {"OpIndex": 3, "What": "key \"f/absent\" doesn't exist"},
    ]
    assert c.kv.get("f/new")[1] is None
    assert c.kv.get("f/keep")[1]["Value"] == b"v"


def test_txn_limits_and_bad_bodies(server: KvServer) -> None:
    ops = [{"KV": {"Verb": "set", "Key": f"k{i}", "Value": ""}} for i in range(65)]
    r = httpx.put(f"{server.url}/v1/txn", content=json.dumps(ops))
    assert r.status_code == 413 and "too many operations (65 > 64)" in r.text
    for body in (b"{not json", b"[" * 100_000):
        r = httpx.put(f"{server.url}/v1/txn", content=body)
        assert r.status_code == 400 and "Failed to parse body" in r.text
    r = httpx.put(f"{server.url}/v1/txn", json=[{"KV": {"Verb": "set", "Key": "a",
                                                        "Value": "***"}}])
    assert r.status_code == 400 and "Value" in r.text
    r = httpx.put(f"{server.url}/v1/txn", json=[{"KV": {"Verb": "lock", "Key": "a"}}])
    assert r.status_code == 409
    assert "no sessions" in r.json()["Errors"][0]["What"]
    r = httpx.put(f"{server.url}/v1/txn", json=[{"Node": {"Verb": "get"}}])
    assert r.status_code == 400 and "only KV" in r.text


def test_raw_and_leading_slash(server: KvServer, c: consul.Consul) -> None:
    c.kv.put("raw/key", "plain text")
    r = httpx.get(f"{server.url}/v1/kv/raw/key", params={"raw": ""})
    assert r.status_code == 200 and r.content == b"plain text"
    assert r.headers["content-type"].startswith("text/plain")
    # UTF-8 keys, percent-encoded or not
    assert httpx.put(f"{server.url}/v1/kv/caf%C3%A9/%E2%9C%93", content=b"v").json() is True
    assert c.kv.get("café/✓")[1]["Value"] == b"v"
    # a leading slash is dropped, as the consul CLI does
    r = httpx.put(f"{server.url}/v1/kv//slashed", content=b"v")
    assert r.json() is True
    assert c.kv.get("slashed")[1]["Value"] == b"v"


@pytest.mark.parametrize(("method", "path", "params", "status", "names"), [
    ("GET", "/v1/kv/a", {"index": "x"}, 400, "index"),
    ("GET", "/v1/kv/a", {"index": "1", "wait": "soon"}, 400, "wait"),
    ("PUT", "/v1/kv/a", {"cas": "-1"}, 400, "cas"),
    ("PUT", "/v1/kv/a", {"flags": "abc"}, 400, "flags"),
    ("PUT", "/v1/kv/a", {"cas": "\u00b2"}, 400, "cas"),
    ("PUT", "/v1/kv/a", {"flags": str(2**64)}, 400, "flags"),
    ("PUT", "/v1/kv/a", {"acquire": "s1"}, 400, "acquire"),
    ("PUT", "/v1/kv/", {}, 400, "Missing key"),
    ("DELETE", "/v1/kv/", {}, 400, "Missing key"),
    ("DELETE", "/v1/kv/a", {"cas": "1", "recurse": ""}, 400, "cas"),
    ("GET", "/v1/kv/" + "k" * (MAX_KEY_BYTES + 1), {}, 400, "too long"),
    ("PUT", "/v1/kv/bad%FFkey", {}, 400, "not valid UTF-8"),
    ("PUT", "/v1/kv/nul%00key", {}, 400, "NUL"),
])
def test_bad_requests_name_the_parameter(server: KvServer, method: str, path: str,
                                         params: dict[str, str], status: int,
                                         names: str) -> None:
    r = httpx.request(method, server.url + path, params=params, content=b"v")
    assert r.status_code == status
    assert names in r.text


def test_value_size_limit(server: KvServer, c: consul.Consul) -> None:
    r = httpx.put(f"{server.url}/v1/kv/huge", content=b"x" * (MAX_VALUE_BYTES + 1))
    assert r.status_code == 413
    assert r.text == "Value exceeds 524288 byte limit (the body is 524289 bytes)"
    assert c.kv.get("huge")[1] is None
    assert c.kv.put("fits", b"x" * MAX_VALUE_BYTES) is True
    big = base64.b64encode(b"x" * (MAX_VALUE_BYTES + 1)).decode()
    r = httpx.put(f"{server.url}/v1/txn", json=[{"KV": {"Verb": "set", "Key": "t",
                                                        "Value": big}}])
    assert r.status_code == 413 and "too large (524289 > 524288 bytes)" in r.text
    assert c.kv.get("t")[1] is None


def _raw_request(port: int, head: bytes, body: bytes) -> bytes:
    """Send `head` and part of a body, never the rest; return what the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_large_body_is_refused_before_it_is_read_whole(server: KvServer,
                                                        c: consul.Consul) -> None:
    # Announced: refused on the headers, although not one byte of the 10 MB came.
    head = (b"PUT /v1/kv/big HTTP/1.1\r\nHost: kade\r\nContent-Length: 10485760\r\n\r\n")
    assert _raw_request(server.port, head, b"").startswith(b"HTTP/1.1 413 ")
    # Chunked (no length): refused once past the limit, while the client is still sending.
    head = b"PUT /v1/kv/big HTTP/1.1\r\nHost: kade\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    assert _raw_request(server.port, head, chunk * 9).startswith(b"HTTP/1.1 413 ")
    head = b"PUT /v1/txn HTTP/1.1\r\nHost: kade\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert _raw_request(server.port, head, chunk * 65).startswith(b"HTTP/1.1 413 ")
    assert c.kv.get("big")[1] is None


@pytest.fixture
def small(tmp_path: Path) -> Iterator[KvServer]:
    s = KvServer(tmp_path / "small", quotas=[kv_quota(max_keys=3, max_bytes=1000)]).start()
    try:
        yield s
    finally:
        s.stop()


def test_a_full_kv_answers_507_and_writes_nothing(small: KvServer) -> None:
    c = consul.Consul(host="127.0.0.1", port=small.port)
    for key in ("a", "b", "c"):
        assert c.kv.put(key, b"1") is True
    r = httpx.put(f"{small.url}/v1/kv/d", content=b"1")
    assert r.status_code == 507
    assert r.text == ("KV is full: 3 keys is the limit (set KADE_KV_MAX_KEYS to change it), "
                      "this write would make 4; nothing was written")
    assert c.kv.get("d")[1] is None
    assert c.kv.put("a", b"rewritten") is True  # no new key: still fine
    ops = [{"KV": {"Verb": "delete", "Key": "c"}},
           {"KV": {"Verb": "set", "Key": "x", "Value": enc("1")}},
           {"KV": {"Verb": "set", "Key": "y", "Value": enc("1")}}]
    r = httpx.put(f"{small.url}/v1/txn", json=ops)
    assert r.status_code == 507 and "3 keys is the limit" in r.text
    assert [k for k in c.kv.get("", keys=True)[1]] == ["a", "b", "c"]  # all or nothing
    c.kv.delete("c")
    assert c.kv.put("d", b"1") is True  # a delete makes room

    r = httpx.put(f"{small.url}/v1/kv/a", content=b"x" * 1000)
    assert r.status_code == 507
    assert "KV is full: 1000 bytes is the limit (set KADE_KV_MAX_BYTES" in r.text
    assert c.kv.get("a")[1]["Value"] == b"rewritten"
