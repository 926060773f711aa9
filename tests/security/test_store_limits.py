"""The store never grows without bound, and no other local user reads it.

Attacks replayed: big values written over and over (memory and disk), a KV filled with keys
and bytes, a 10 MB body, and a data dir that every local user could read.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kade.store import LimitExceeded, Put, SqliteStore, StoreError, open_store
from kade.store.base import Entry, Event
from kade.store.files import private_dir, write_private
from kade.store.limits import (
    ANY_MAX_VALUE_BYTES,
    KV_MAX_BYTES,
    KV_MAX_KEYS,
    KV_MAX_VALUE_BYTES,
    Quota,
    Usage,
    check_usage,
    compaction_point,
    default_quotas,
    kv_quota,
    parse_size,
    usage_delta,
)
from tests.integration.harness import Kade

pytestmark = pytest.mark.timeout(180)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def put(key: str, value: bytes, rev: int, prev: bytes | None = None) -> Event:
    old = Entry(key, prev, 1, rev - 1, 1) if prev is not None else None
    return Event(rev, "put", key, Entry(key, value, 1, rev, 2 if old else 1), old)


def delete(key: str, value: bytes, rev: int) -> Event:
    return Event(rev, "delete", key, None, Entry(key, value, 1, rev - 1, 1))


# -- what a quota counts (plain values) ------------------------------------------------------


def test_usage_counts_keys_and_bytes_under_the_prefix_only() -> None:
    events = [
        put("kv/a", b"12345", 2),  # new: 1 key, 4 + 5 bytes
        put("kv/b", b"1", 2, prev=b"123"),  # smaller: -2 bytes
        delete("kv/c", b"xy", 2),  # gone: -1 key, -(4 + 2) bytes
        put("apps/x", b"ignored", 2),
    ]
    assert usage_delta("kv/", events) == Usage(keys=0, bytes=9 - 2 - 6)
    assert usage_delta("apps/", events) == Usage(keys=1, bytes=13)


def test_a_quota_refuses_growth_past_it_but_never_shrinking() -> None:
    q = kv_quota(max_keys=10, max_bytes=1000)
    check_usage(q, Usage(9, 900), Usage(1, 100))  # exactly at the limits
    with pytest.raises(LimitExceeded, match="KV is full: 10 keys is the limit") as info:
        check_usage(q, Usage(10, 900), Usage(1, 1))
    assert (info.value.kind, info.value.limit) == ("keys", 10)
    with pytest.raises(LimitExceeded, match="KV is full: 1000 bytes is the limit") as info:
        check_usage(q, Usage(5, 990), Usage(0, 11))
    assert info.value.kind == "bytes"
    # Over the limits (they were lowered): what does not grow passes, so it can be cleaned up.
    check_usage(q, Usage(50, 5000), Usage(-1, -100))
    check_usage(q, Usage(50, 5000), Usage(0, 0))


def test_compaction_frees_whole_revisions_from_the_oldest() -> None:
    sizes = [(3, 100), (4, 100), (7, 500), (8, 10)]
    assert compaction_point(sizes, 0) is None
    assert compaction_point(sizes, 1) == 3
    assert compaction_point(sizes, 150) == 4
    assert compaction_point(sizes, 201) == 7
    assert compaction_point(sizes, 10_000) == 8


def test_limits_come_from_the_environment_with_clear_errors() -> None:
    kv, backstop = default_quotas({})
    assert (kv.prefix, kv.max_keys, kv.max_bytes) == ("kv/", KV_MAX_KEYS, KV_MAX_BYTES)
    assert kv.max_value_bytes == KV_MAX_VALUE_BYTES and KV_MAX_KEYS == 100_000
    assert (backstop.prefix, backstop.max_value_bytes) == ("", ANY_MAX_VALUE_BYTES)
    kv, _ = default_quotas({"KADE_KV_MAX_KEYS": "500", "KADE_KV_MAX_BYTES": "64MiB"})
    assert (kv.max_keys, kv.max_bytes) == (500, 64 * 1024 * 1024)
    assert parse_size("x", "512k") == parse_size("x", "512 KiB") == 524288
    for env, message in (
        ({"KADE_KV_MAX_KEYS": "lots"}, "KADE_KV_MAX_KEYS: must be a whole number of at least 1"),
        ({"KADE_KV_MAX_KEYS": "0"}, "KADE_KV_MAX_KEYS: must be a whole number of at least 1"),
        ({"KADE_KV_MAX_BYTES": "1e9"}, "KADE_KV_MAX_BYTES: must be a size in bytes"),
    ):
        with pytest.raises(ValueError, match=message):
            default_quotas(env)


# -- the store enforces them -----------------------------------------------------------------


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "data", quotas=[kv_quota(max_keys=3, max_bytes=200),
                                               Quota("", max_value_bytes=1000)])
    yield s
    await s.close()


async def test_the_store_refuses_writes_past_a_quota_and_writes_nothing(
        small: SqliteStore) -> None:
    await small.txn([], [Put("kv/a", b"1"), Put("kv/b", b"2"), Put("kv/c", b"3")])
    rev = await small.revision()
    with pytest.raises(LimitExceeded, match="this write would make 4; nothing was written"):
        await small.txn([], [Put("kv/d", b"4"), Put("other", b"x")])
    assert await small.get("other") is None and await small.revision() == rev
    await small.put("apps/x", b"y")  # other prefixes are not counted
    with pytest.raises(LimitExceeded) as info:
        await small.put("kv/a", b"x" * 200)
    assert info.value.kind == "bytes"
    with pytest.raises(LimitExceeded, match="value of 'kv/a' is too large") as info:
        await small.put("kv/a", b"x" * (KV_MAX_VALUE_BYTES + 1))
    assert info.value.kind == "value"
    with pytest.raises(LimitExceeded, match="value of 'apps/x' is too large: 1001 bytes"):
        await small.put("apps/x", b"x" * 1001)
    await small.delete("kv/", prefix=True)
    await small.put("kv/d", b"4")


async def test_what_a_quota_counts_survives_a_restart(tmp_path: Path) -> None:
    quotas = [kv_quota(max_keys=2)]
    s = SqliteStore(tmp_path, quotas=quotas)
    await s.put("kv/a", b"1")
    await s.put("kv/b", b"1")
    await s.close()
    s = SqliteStore(tmp_path, quotas=quotas)
    try:
        with pytest.raises(LimitExceeded):
            await s.put("kv/c", b"1")
        assert [(q.prefix, u) for q, u in s.usage()] == [("kv/", Usage(2, 10))]
    finally:
        await s.close()


async def test_a_bad_limit_in_the_environment_stops_open_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KADE_KV_MAX_BYTES", "a lot")
    with pytest.raises(StoreError, match="KADE_KV_MAX_BYTES: must be a size in bytes"):
        await open_store(tmp_path)
    monkeypatch.setenv("KADE_KV_MAX_BYTES", "1k")
    s = await open_store(tmp_path)
    with pytest.raises(LimitExceeded, match="KADE_KV_MAX_BYTES"):
        await s.put("kv/a", b"x" * 1024)
    await s.close()


# -- files -----------------------------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the worst case: modes are what kade sets, not what the umask leaves
    try:
        yield
    finally:
        os.umask(old)


STORE_FILES = ("state.db", "state.db-wal", "state.db-shm", "lock")


async def test_the_data_dir_is_0700_and_its_files_0600_whatever_the_umask(
        tmp_path: Path, open_umask: None) -> None:
    s = await open_store(tmp_path / "new" / "data")
    await s.put("kv/secret", b"x")
    data = tmp_path / "new" / "data"
    assert mode(data) == 0o700
    assert {name: mode(data / name) for name in STORE_FILES} == dict.fromkeys(STORE_FILES, 0o600)
    await s.close()


async def test_a_data_dir_open_to_others_is_tightened_and_said_so(
        tmp_path: Path, open_umask: None, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    s = await open_store(data)
    await s.put("kv/secret", b"x")
    await s.close()
    data.chmod(0o755)
    for name in STORE_FILES:
        if (data / name).exists():
            (data / name).chmod(0o644)
    with caplog.at_level(logging.WARNING):
        s = await open_store(data)
    assert f"{data} was mode 0755, open to other users: now 0700" in caplog.text
    assert f"{data / 'state.db'} was mode 0644, open to other users: now 0600" in caplog.text
    assert mode(data) == 0o700
    assert all(mode(data / name) == 0o600 for name in STORE_FILES)
    entry = await s.get("kv/secret")
    assert entry is not None and entry.value == b"x"
    await s.close()


async def test_a_shared_directory_is_refused_not_taken(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with pytest.raises(StoreError, match=f"data dir {shared}: is shared with other users "
                                         r"\(mode 1777\); use a directory of kade's own"):
        await open_store(shared)
    assert mode(shared) == 0o1777 and list(shared.iterdir()) == []


def test_private_files_are_written_whole_and_0600(tmp_path: Path, open_umask: None) -> None:
    private_dir(tmp_path / "d")
    write_private(tmp_path / "d" / "token", b"secret")
    (tmp_path / "d" / "token").chmod(0o644)
    write_private(tmp_path / "d" / "token", b"secret 2")
    assert (tmp_path / "d" / "token").read_bytes() == b"secret 2"
    assert mode(tmp_path / "d" / "token") == 0o600
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["token"]


# -- against a real `kade up` ----------------------------------------------------------------


@pytest.fixture
def kade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kade]:
    monkeypatch.setenv("KADE_KV_MAX_KEYS", "5")
    k = Kade(tmp_path / "kade", driver="exec")
    try:
        yield k.start()
    finally:
        k.cleanup()


def _client(kade: Kade) -> httpx.Client:
    """A client of kade's API, with the management token kade keeps in its data dir."""
    token_file = kade.data_dir / "management.token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    headers = {"X-Consul-Token": token} if token else {}
    return httpx.Client(base_url=f"http://{kade.addr}", headers=headers, timeout=30)


def test_kade_up_keeps_its_store_private_and_bounded(kade: Kade) -> None:
    data = kade.data_dir
    assert mode(data) == 0o700
    assert all(mode(data / name) == 0o600 for name in STORE_FILES)

    with _client(kade) as api:
        r = api.put("/v1/kv/big", content=b"x" * (512 * 1024 + 1))
        assert (r.status_code, r.text) == (
            413, "Value exceeds 524288 byte limit (the body is 524289 bytes)")
        head = (b"PUT /v1/kv/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10485760\r\n"
                + b"".join(f"{k}: {v}\r\n".encode() for k, v in api.headers.items()
                           if k.lower().startswith("x-consul")) + b"\r\n")
        with socket.create_connection(("127.0.0.1", kade.port), timeout=10) as sock:
            sock.sendall(head)
            assert sock.recv(100).startswith(b"HTTP/1.1 413 ")  # not one body byte was sent
        assert api.get("/v1/kv/big").status_code == 404

        for i in range(5):
            assert api.put(f"/v1/kv/k{i}", content=b"v").json() is True
        r = api.put("/v1/kv/k5", content=b"v")
        assert r.status_code == 507
        assert "KV is full: 5 keys is the limit (set KADE_KV_MAX_KEYS to change it)" in r.text
        r = api.put("/v1/txn", json=[{"KV": {"Verb": "set", "Key": "k6", "Value": "dg=="}}])
        assert r.status_code == 507
        assert api.get("/v1/kv/", params={"keys": ""}).json() == [f"k{i}" for i in range(5)]
