"""What the store lets grow, and by how much.

History (the in-memory watch ring and the change log table) is bounded by revisions *and*
bytes: a count alone lets a few big values pin gigabytes (1,500 revisions of a 512 KiB value
held 1.5 GB of memory and 1.5 GB of log). Past a budget the oldest history goes; a watcher
behind it gets `Compacted` and re-reads a snapshot, as after any compaction.

Live data under a prefix is bounded by a `Quota`: the size of one value, the number of keys,
their total bytes. A write that would pass a quota raises `LimitExceeded` and writes nothing.
A write that does not grow what a quota counts (a delete, a smaller value) always passes, so a
KV over a lowered limit can still be cleaned up.

The defaults are for a small machine. `kade up` idles at ~75 MiB; a ring of at most 64 MiB
keeps its 10,000 revisions of ordinary records (a few KiB each: the count binds first) and
about 60 revisions of 512 KiB values. The log keeps 100,000 revisions or 256 MiB on disk,
whichever is less: a watcher (an agent after a restart) resumes from that far back. The KV
itself may hold 100,000 keys and 256 MiB, so the database stays near half a GiB at worst.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kade.store.base import Delete, Event, LimitExceeded, Put

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

RING_REVISIONS = 10_000  # revisions of events kept in memory for live watchers
RING_BYTES = 64 * MIB
LOG_REVISIONS = 100_000  # revisions of change log kept for watches that resume
LOG_BYTES = 256 * MIB
RING_EVENT_OVERHEAD = 400  # Python objects of one event beside its key and values
LOG_ROW_OVERHEAD = 64  # a log row's header, numbers and index entry
LOG_ROW_BYTES_SQL = (
    f"(length(CAST(key AS BLOB)) + coalesce(length(value), 0)"
    f" + coalesce(length(prev_value), 0) + {LOG_ROW_OVERHEAD})"
)

KV_PREFIX = "kv/"  # the user's Consul KV tree (kade.model.KV)
KV_MAX_VALUE_BYTES = 512 * KIB + 9  # Consul's kv_max_value_size, plus the flags header
KV_MAX_KEYS = 100_000
KV_MAX_BYTES = 256 * MIB
ANY_MAX_VALUE_BYTES = 16 * MIB  # no record kade writes comes near; a backstop for all keys

ENV_KV_MAX_KEYS = "KADE_KV_MAX_KEYS"
ENV_KV_MAX_BYTES = "KADE_KV_MAX_BYTES"


@dataclass(frozen=True, slots=True)
class Quota:
    """Bounds on the keys under `prefix`; None leaves that bound off.

    `name` is what a message calls the tree; the hints say how an operator raises a bound."""

    prefix: str
    max_value_bytes: int | None = None
    max_keys: int | None = None
    max_bytes: int | None = None
    name: str = ""
    keys_hint: str = ""
    bytes_hint: str = ""


@dataclass(slots=True)
class Usage:
    keys: int = 0
    bytes: int = 0


def entry_bytes(key: str, value: bytes) -> int:
    """What a live key counts against a quota's byte budget: its key and value."""
    return len(key.encode()) + len(value)


def usage_delta(prefix: str, events: Iterable[Event]) -> Usage:
    """How `events` (one transaction's, each with its prev) change keys and bytes under
    `prefix`."""
    delta = Usage()
    for e in events:
        if not e.key.startswith(prefix):
            continue
        if e.entry is not None:
            delta.bytes += entry_bytes(e.key, e.entry.value)
            delta.keys += e.prev is None
        if e.prev is not None:
            delta.bytes -= entry_bytes(e.key, e.prev.value)
            delta.keys -= e.entry is None
    return delta


def _what(quota: Quota) -> str:
    return quota.name or f"keys under {quota.prefix!r}"


def _hint(hint: str) -> str:
    return f" (set {hint} to change it)" if hint else ""


def check_value(quotas: Sequence[Quota], key: str, size: int) -> None:
    """Refuse a value of `size` bytes for `key` that is larger than a quota allows."""
    for q in quotas:
        if q.max_value_bytes is not None and size > q.max_value_bytes and \
                key.startswith(q.prefix):
            raise LimitExceeded(
                f"value of {key!r} is too large: {size} bytes, the limit of {_what(q)} is "
                f"{q.max_value_bytes} bytes; nothing was written",
                kind="value", limit=q.max_value_bytes, prefix=q.prefix)


def check_usage(quota: Quota, usage: Usage, delta: Usage) -> None:
    """Refuse a transaction that grows keys or bytes under a quota past its bound."""
    keys, size = usage.keys + delta.keys, usage.bytes + delta.bytes
    if quota.max_keys is not None and delta.keys > 0 and keys > quota.max_keys:
        raise LimitExceeded(
            f"{_what(quota)} is full: {quota.max_keys} keys is the limit"
            f"{_hint(quota.keys_hint)}, this write would make {keys}; nothing was written",
            kind="keys", limit=quota.max_keys, prefix=quota.prefix)
    if quota.max_bytes is not None and delta.bytes > 0 and size > quota.max_bytes:
        raise LimitExceeded(
            f"{_what(quota)} is full: {size_text(quota.max_bytes)} is the limit"
            f"{_hint(quota.bytes_hint)}, this write would make {size} bytes; nothing was written",
            kind="bytes", limit=quota.max_bytes, prefix=quota.prefix)


def ring_bytes(events: Iterable[Event]) -> int:
    """Roughly the memory one revision's events hold in the watch ring."""
    return sum(
        RING_EVENT_OVERHEAD + len(e.key) + (len(e.entry.value) if e.entry else 0)
        + (len(e.prev.value) if e.prev else 0)
        for e in events
    )


def log_bytes(events: Iterable[Event]) -> int:
    """The bytes of the log rows of `events`, as LOG_ROW_BYTES_SQL counts them."""
    return sum(
        LOG_ROW_OVERHEAD + len(e.key.encode()) + (len(e.entry.value) if e.entry else 0)
        + (len(e.prev.value) if e.prev else 0)
        for e in events
    )


def compaction_point(sizes: Iterable[tuple[int, int]], excess: int) -> int | None:
    """The revision up to which to compact so that at least `excess` bytes go, given the
    oldest-first (revision, bytes) of the history kept; None when nothing needs to go."""
    if excess <= 0:
        return None
    freed, last = 0, None
    for rev, size in sizes:
        freed, last = freed + size, rev
        if freed >= excess:
            break
    return last


_SIZE = re.compile(r"^\s*(\d+)\s*(|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": KIB, "m": MIB, "g": GIB}


def parse_size(name: str, text: str) -> int:
    """`268435456`, `256MiB`, `512k`: a positive size in bytes (units are powers of 1024)."""
    m = _SIZE.match(text)
    value = int(m.group(1)) * _UNITS[m.group(2)[:1].lower()] if m else 0
    if value < 1:
        raise ValueError(f"{name}: must be a size in bytes of at least 1 (e.g. 256MiB), "
                         f"not {text!r}")
    return value


def parse_count(name: str, text: str) -> int:
    stripped = text.strip().replace("_", "")
    if not (stripped.isascii() and stripped.isdigit()) or int(stripped) < 1:
        raise ValueError(f"{name}: must be a whole number of at least 1, not {text!r}")
    return int(stripped)


def size_text(size: int) -> str:
    """`268435456 bytes (256 MiB)`: exact, and readable."""
    for unit, factor in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= factor:
            return f"{size} bytes ({size / factor:.4g} {unit})"
    return f"{size} bytes"


def kv_quota(*, max_keys: int = KV_MAX_KEYS, max_bytes: int = KV_MAX_BYTES) -> Quota:
    return Quota(KV_PREFIX, KV_MAX_VALUE_BYTES, max_keys, max_bytes, name="KV",
                 keys_hint=ENV_KV_MAX_KEYS, bytes_hint=ENV_KV_MAX_BYTES)


def default_quotas(env: Mapping[str, str] | None = None) -> tuple[Quota, ...]:
    """The quotas `kade up` runs with: the KV's, from $KADE_KV_MAX_KEYS / $KADE_KV_MAX_BYTES
    when set, and a backstop on every value. Raises ValueError naming a bad variable."""
    env = os.environ if env is None else env
    keys, size = env.get(ENV_KV_MAX_KEYS, ""), env.get(ENV_KV_MAX_BYTES, "")
    kv = kv_quota(
        max_keys=parse_count(ENV_KV_MAX_KEYS, keys) if keys else KV_MAX_KEYS,
        max_bytes=parse_size(ENV_KV_MAX_BYTES, size) if size else KV_MAX_BYTES,
    )
    return kv, Quota("", max_value_bytes=ANY_MAX_VALUE_BYTES, name="the store")


def ops_delta(prefix: str, ops: Iterable[Put | Delete], current: Mapping[str, bytes]) -> Usage:
    """How applying `ops` in order changes keys and bytes under `prefix`, given the `current`
    values of every key they touch (a backend that cannot count inside its transaction, etcd,
    checks a write with this before sending it)."""
    state = dict(current)
    for op in ops:
        if isinstance(op, Put):
            state[op.key] = bytes(op.value)
        elif op.prefix:
            for key in [k for k in state if k.startswith(op.key)]:
                del state[key]
        else:
            state.pop(op.key, None)

    def count(values: Mapping[str, bytes]) -> Usage:
        under = [(k, v) for k, v in values.items() if k.startswith(prefix)]
        return Usage(len(under), sum(entry_bytes(k, v) for k, v in under))

    before, after = count(current), count(state)
    return Usage(after.keys - before.keys, after.bytes - before.bytes)
