"""The store's values in etcd's JSON gateway, both ways: pure functions, tested with plain values.

Keys live under a namespace (`kade/` by default), so that several kades, or tests, share one
etcd; the store's key `apps/web` is etcd's `kade/apps/web`. Beside the namespace, `kade!/`
holds the store's own bookkeeping (delete marks, see `kade.store.etcd`), out of every range a
reader of the namespace asks for.

etcd refuses a transaction that puts a key twice, or puts a key inside a range it deletes
("duplicate key given in txn request"); `plan_ops` rewrites a sequence of ops into the same
end state without either (a later op wins), so a transaction means what it does on SQLite.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kade.store.base import Compare, Entry, Event, Op, Put
from kade.store.keys import parent_dir

Json = dict[str, Any]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def range_end(prefix: bytes) -> bytes:
    """etcd's end of the range of keys starting with `prefix` (b"\\0": to the end of all)."""
    stem = prefix.rstrip(b"\xff")
    if not stem:
        return b"\0"
    return stem[:-1] + bytes([stem[-1] + 1])


@dataclass(frozen=True, slots=True)
class Namespace:
    """Where the store's keys live in etcd: `root` + key, and `root!/` beside it."""

    root: str

    def __post_init__(self) -> None:
        if not self.root.endswith("/") or len(self.root) < 2:
            raise ValueError(f"namespace: must end with '/' and name something, "
                             f"not {self.root!r}")

    def key(self, key: str) -> bytes:
        return (self.root + key).encode()

    def range(self, prefix: str) -> tuple[bytes, bytes]:
        start = self.key(prefix)
        return start, range_end(start)

    def strip(self, raw: bytes) -> str:
        return raw.decode()[len(self.root):]

    @property
    def meta(self) -> str:
        return self.root[:-1] + "!/"

    def mark(self, directory: str) -> bytes:
        """The key whose mod_revision is the last delete of a key in `directory`."""
        return (self.meta + "del/" + directory).encode()

    def marks(self, prefix: str) -> tuple[bytes, bytes]:
        start = self.mark(prefix)
        return start, range_end(start)

    @property
    def leases(self) -> str:
        return self.meta + "lease/"


def to_int(value: Any) -> int:
    """etcd's int64 fields are JSON strings, and absent when 0."""
    return int(value) if value else 0


def entry(ns: Namespace, kv: Json) -> Entry:
    return Entry(
        ns.strip(unb64(kv.get("key"))),
        unb64(kv.get("value")),
        to_int(kv.get("create_revision")),
        to_int(kv.get("mod_revision")),
        to_int(kv.get("version")),
    )


def watch_event(ns: Namespace, raw: Json) -> Event:
    kv = entry(ns, raw["kv"])
    prev = entry(ns, raw["prev_kv"]) if raw.get("prev_kv") else None
    if raw.get("type") == "DELETE":
        return Event(kv.mod_revision, "delete", kv.key, None, prev)
    return Event(kv.mod_revision, "put", kv.key, kv, prev)


def compare(ns: Namespace, c: Compare) -> Json:
    return {"key": b64(ns.key(c.key)), "target": "MOD", "result": "EQUAL",
            "mod_revision": str(c.mod_revision)}


# -- transactions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Delete `start` (end None) or [start, end) (end b"\\0": every key from start)."""

    start: bytes
    end: bytes | None = None

    def holds(self, key: bytes) -> bool:
        if self.end is None:
            return key == self.start
        return self.start <= key and (self.end == b"\0" or key < self.end)

    def without(self, key: bytes) -> list[DeleteRange]:
        """This range, less `key`."""
        if not self.holds(key):
            return [self]
        if self.end is None:
            return []
        parts = []
        if self.start < key:
            parts.append(DeleteRange(self.start, key))
        after = key + b"\0"
        if self.end == b"\0" or after < self.end:
            parts.append(DeleteRange(after, self.end))
        return parts


@dataclass(frozen=True, slots=True)
class PutKey:
    key: bytes
    value: bytes
    lease: int = 0


EtcdOp = PutKey | DeleteRange


def plan_ops(ns: Namespace, ops: Sequence[Op]) -> list[EtcdOp]:
    """`ops` as etcd ops with the same end state and no key written twice (see the module
    docstring). A put after a delete of its key keeps the key's life (create_revision) where
    SQLite starts a new one; nothing else differs."""
    planned: list[EtcdOp] = []
    for op in ops:
        if isinstance(op, Put):
            key = ns.key(op.key)
            kept: list[EtcdOp] = []
            for p in planned:
                if isinstance(p, PutKey):
                    if p.key != key:
                        kept.append(p)
                else:
                    kept.extend(p.without(key))
            kept.append(PutKey(key, bytes(op.value), op.lease))
            planned = kept
        else:
            dr = DeleteRange(*ns.range(op.key)) if op.prefix else DeleteRange(ns.key(op.key))
            planned = [p for p in planned if not (isinstance(p, PutKey) and dr.holds(p.key))]
            planned.append(dr)
    return planned


def request_op(op: EtcdOp) -> Json:
    if isinstance(op, PutKey):
        put: Json = {"key": b64(op.key), "value": b64(op.value), "prev_kv": True}
        if op.lease:
            put["lease"] = str(op.lease)
        return {"request_put": put}
    delete: Json = {"key": b64(op.start), "prev_kv": True}
    if op.end is not None:
        delete["range_end"] = b64(op.end)
    return {"request_delete_range": delete}


def deleted_dirs(ns: Namespace, ops: Sequence[EtcdOp]) -> list[str]:
    """The directories whose delete marks the deletes of `ops` move: the parent directory of a
    deleted key, or of a deleted range's start (which covers every key in the range: a mark
    counts for the prefixes under its directory and above it)."""
    dirs = {parent_dir(ns.strip(op.start)) for op in ops if isinstance(op, DeleteRange)}
    return sorted(dirs)


def txn_events(ns: Namespace, ops: Sequence[EtcdOp], responses: Sequence[Json],
               revision: int) -> list[Event]:
    """The events a transaction's `ops` made, from its responses (one per op, in order)."""
    events: list[Event] = []
    for op, response in zip(ops, responses, strict=False):
        if isinstance(op, PutKey):
            raw_prev = response.get("response_put", {}).get("prev_kv")
            prev = entry(ns, raw_prev) if raw_prev else None
            key = ns.strip(op.key)
            new = Entry(key, op.value, prev.create_revision if prev else revision, revision,
                        prev.version + 1 if prev else 1)
            events.append(Event(revision, "put", key, new, prev))
        else:
            gone = response.get("response_delete_range", {}).get("prev_kvs", [])
            for raw in gone:
                old = entry(ns, raw)
                events.append(Event(revision, "delete", old.key, None, old))
    return events


def header_revision(response: Mapping[str, Any]) -> int:
    return to_int(response.get("header", {}).get("revision"))
