"""How the store's operations become etcd's, with plain values: no etcd needed."""

from __future__ import annotations

import pytest

from kade.store import Delete, Put, parse_endpoints
from kade.store.etcd_codec import (
    DeleteRange,
    Namespace,
    PutKey,
    deleted_dirs,
    plan_ops,
    range_end,
    txn_events,
)
from kade.store.limits import Usage, ops_delta

NS = Namespace("kade/")


def test_range_ends() -> None:
    assert range_end(b"kade/") == b"kade0"
    assert range_end(b"a\xff") == b"b"
    assert range_end(b"\xff\xff") == b"\0"
    assert NS.range("") == (b"kade/", b"kade0")
    assert NS.mark("kv/a/") == b"kade!/del/kv/a/"
    with pytest.raises(ValueError, match="namespace"):
        Namespace("kade")


def test_a_put_inside_a_deleted_range_splits_the_range() -> None:
    planned = plan_ops(NS, [Delete("tree/", prefix=True), Put("tree/new", b"2")])
    assert planned == [
        DeleteRange(b"kade/tree/", b"kade/tree/new"),
        DeleteRange(b"kade/tree/new\0", b"kade/tree0"),
        PutKey(b"kade/tree/new", b"2"),
    ]


def test_a_later_op_wins() -> None:
    assert plan_ops(NS, [Put("a", b"1"), Put("a", b"2", 7)]) == [PutKey(b"kade/a", b"2", 7)]
    assert plan_ops(NS, [Put("a", b"1"), Delete("a")]) == [DeleteRange(b"kade/a")]
    assert plan_ops(NS, [Delete("a"), Put("a", b"1")]) == [PutKey(b"kade/a", b"1")]
    assert plan_ops(NS, [Put("d/x", b"1"), Put("e", b""), Delete("d/", prefix=True)]) == [
        PutKey(b"kade/e", b""), DeleteRange(b"kade/d/", b"kade/d0")]


def test_deletes_mark_their_directories() -> None:
    ops = plan_ops(NS, [Delete("kv/a/x"), Delete("kv/b/", prefix=True), Put("kv/c", b"")])
    assert deleted_dirs(NS, ops) == ["kv/a/", "kv/b/"]
    assert deleted_dirs(NS, plan_ops(NS, [Delete("", prefix=True)])) == [""]


def test_txn_events_come_from_the_responses() -> None:
    ops = [PutKey(b"kade/a", b"2"), DeleteRange(b"kade/d/", b"kade/d0")]
    prev = {"key": "a2FkZS9h", "value": "MQ==", "create_revision": "3", "mod_revision": "4",
            "version": "2"}
    gone = {"key": "a2FkZS9kL3g=", "create_revision": "5", "mod_revision": "5", "version": "1"}
    events = txn_events(NS, ops, [{"response_put": {"prev_kv": prev}},
                                  {"response_delete_range": {"prev_kvs": [gone]}}], 9)
    assert [(e.kind, e.key, e.revision) for e in events] == [("put", "a", 9), ("delete", "d/x", 9)]
    put = events[0].entry
    assert put is not None and (put.create_revision, put.version, put.value) == (3, 3, b"2")
    assert events[1].prev is not None and events[1].prev.value == b""


def test_endpoints_are_parsed() -> None:
    assert parse_endpoints("http://a:2379, 10.0.0.2:2379,") == [
        "http://a:2379", "http://10.0.0.2:2379"]
    assert parse_endpoints(["https://e:1/"]) == ["https://e:1"]
    for bad in ("", "ftp://a:1", "http://a:1/path", "http://a:99999"):
        with pytest.raises(ValueError, match="etcd"):
            parse_endpoints(bad)


def test_what_ops_add_to_a_quota() -> None:
    current = {"kv/a": b"12345", "kv/d/x": b"1", "other": b"zz"}
    ops = [Put("kv/a", b"1"), Put("kv/b", b"22"), Delete("kv/d/", prefix=True), Put("x", b"")]
    assert ops_delta("kv/", ops, current) == Usage(keys=0, bytes=-4 + 6 - 7)
    assert ops_delta("kv/", [Put("kv/n", b"1"), Delete("kv/n")], {}) == Usage(0, 0)
