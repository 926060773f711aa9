"""The store's values as JSON, for the store API that agents of a cluster use over HTTP.

Values are bytes, so they travel base64-encoded; everything else is plain JSON. Both ends
(`kade.api.store_api` and `kade.client.remote_store`) use these functions, so the wire format
exists once.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from kade.store.base import Compare, Delete, Entry, Event, Op, Put, TxnResult


class WireError(ValueError):
    """A document that is not a store value; the message names the field."""


def entry_json(e: Entry) -> dict[str, Any]:
    return {"key": e.key, "value": base64.b64encode(e.value).decode(),
            "create": e.create_revision, "mod": e.mod_revision, "version": e.version}


def entry_from(d: Any, where: str = "entry") -> Entry:
    if not isinstance(d, dict):
        raise WireError(f"{where}: must be an object")
    return Entry(key=_str(d, "key", where), value=_bytes(d, "value", where),
                 create_revision=_int(d, "create", where), mod_revision=_int(d, "mod", where),
                 version=_int(d, "version", where))


def event_json(e: Event) -> dict[str, Any]:
    return {"revision": e.revision, "kind": e.kind, "key": e.key,
            "entry": entry_json(e.entry) if e.entry is not None else None,
            "prev": entry_json(e.prev) if e.prev is not None else None}


def event_from(d: Any, where: str = "event") -> Event:
    if not isinstance(d, dict):
        raise WireError(f"{where}: must be an object")
    kind = d.get("kind")
    if kind not in ("put", "delete"):
        raise WireError(f"{where}.kind: must be put or delete")
    entry = d.get("entry")
    prev = d.get("prev")
    return Event(revision=_int(d, "revision", where), kind=kind, key=_str(d, "key", where),
                 entry=entry_from(entry, f"{where}.entry") if entry is not None else None,
                 prev=entry_from(prev, f"{where}.prev") if prev is not None else None)


def txn_result_json(r: TxnResult) -> dict[str, Any]:
    return {"succeeded": r.succeeded, "revision": r.revision,
            "events": [event_json(e) for e in r.events]}


def txn_result_from(d: Any) -> TxnResult:
    if not isinstance(d, dict) or not isinstance(d.get("succeeded"), bool):
        raise WireError("txn result: must be an object with succeeded")
    events = d.get("events", [])
    if not isinstance(events, list):
        raise WireError("txn result.events: must be a list")
    return TxnResult(succeeded=d["succeeded"], revision=_int(d, "revision", "txn result"),
                     events=tuple(event_from(e, f"events[{i}]") for i, e in enumerate(events)))


def txn_json(compares: list[Compare] | tuple[Compare, ...], success: list[Op] | tuple[Op, ...],
             failure: list[Op] | tuple[Op, ...]) -> dict[str, Any]:
    return {"compares": [{"key": c.key, "mod": c.mod_revision} for c in compares],
            "success": [op_json(op) for op in success],
            "failure": [op_json(op) for op in failure]}


def op_json(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        d: dict[str, Any] = {"put": op.key, "value": base64.b64encode(op.value).decode()}
        if op.lease:
            d["lease"] = op.lease
        return d
    return {"delete": op.key, "prefix": op.prefix}


def compare_from(d: Any, where: str) -> Compare:
    if not isinstance(d, dict):
        raise WireError(f"{where}: must be an object")
    return Compare(key=_str(d, "key", where), mod_revision=_int(d, "mod", where))


def op_from(d: Any, where: str) -> Op:
    if not isinstance(d, dict):
        raise WireError(f"{where}: must be an object")
    if "put" in d:
        lease = _int(d, "lease", where) if "lease" in d else 0
        return Put(key=_str(d, "put", where), value=_bytes(d, "value", where), lease=lease)
    if "delete" in d:
        prefix = d.get("prefix", False)
        if not isinstance(prefix, bool):
            raise WireError(f"{where}.prefix: must be true or false")
        return Delete(key=_str(d, "delete", where), prefix=prefix)
    raise WireError(f"{where}: must have put or delete")


def _str(d: dict[str, Any], name: str, where: str) -> str:
    v = d.get(name)
    if not isinstance(v, str):
        raise WireError(f"{where}.{name}: must be a string")
    return v


def _int(d: dict[str, Any], name: str, where: str) -> int:
    v = d.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise WireError(f"{where}.{name}: must be a whole number ≥ 0")
    return v


def _bytes(d: dict[str, Any], name: str, where: str) -> bytes:
    v = d.get(name)
    if not isinstance(v, str):
        raise WireError(f"{where}.{name}: must be base64 text")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"{where}.{name}: is not valid base64") from None
