"""The store on etcd v3: the same protocol as SQLite, for kade servers that share one cluster.

Revisions are etcd's: one per write transaction, shared by every server. Keys live under a
namespace (`kade.store.etcd_codec`). Calls go through `kade.store.etcd_client.Gateway`
(failover between members, `NoQuorum` / `Unavailable` errors an operator understands).

prefix_revision() must count deletes, which leave nothing in etcd's key space. So every delete
this store makes also writes, in the same transaction, an empty *delete mark* for the
directory of what it deleted (`kade!/del/<dir>`); the mark's mod_revision is the delete's
revision. A prefix's revision is the highest of: its live keys' mod_revisions, the marks of
directories under it, and the marks of the directories above it (conservative: a delete of
`kv/a/x` also moves `kv/a/y`, so a blocking query may wake once for nothing, never sleep
through a change). One read transaction answers it. Keys deleted by etcd itself when their
lease ends get no mark: the store's follower (below) sees those deletes and counts them too.
delete() of nothing makes no revision, as on SQLite (it is guarded by a compare that the key
or range exists); a txn() whose deletes find nothing still makes one, for its marks.
So a Consul blocking query on `kv/app/` wakes on a delete under it, from any server.

One *follower* per store watches the whole namespace from the revision it opened at, and
keeps what it learns in `kade.store.etcd_follow.Followed`: it wakes `wait()`ers (one future
per prefix, as on SQLite), caches prefix_revision() answers, counts deletes, and keeps what
the quotas count (`kade.store.limits`). A write under a
quota reads the values it replaces first and is refused (LimitExceeded, nothing written) past
the bound; servers writing at once may pass it by what they write together, not more.
Each watch() is its own etcd watch, resumed on another member from its last revision.
History is compacted past `history` revisions, like SQLite's log (etcd bounds the bytes:
--quota-backend-bytes). Compaction is etcd's, for every namespace: stores sharing a cluster
should keep the same bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import httpx

from kade.store import etcd_codec as codec
from kade.store.base import (
    CasFailed,
    Compacted,
    Compare,
    Delete,
    Entry,
    Event,
    LeaseExpired,
    Op,
    Put,
    StoreError,
    TxnResult,
    validate_op,
)
from kade.store.etcd_client import (
    CHECK_EVERY,
    READ_TIMEOUT,
    WRITE_TIMEOUT,
    EtcdError,
    Gateway,
    Json,
)
from kade.store.etcd_follow import Followed
from kade.store.limits import (
    LOG_REVISIONS,
    Quota,
    Usage,
    check_usage,
    check_value,
    default_quotas,
    entry_bytes,
    ops_delta,
)

NAMESPACE = "kade/"
MAX_VALUE_BYTES = 1024 * 1024  # under etcd's default --max-request-bytes (1.5 MiB)
PAGE = 5_000  # keys per range request
RETRY = 0.5  # seconds between attempts of a watch to reach a member

TXN_READS = 120  # reads in one read transaction (etcd's --max-txn-ops is 128 by default)

log = logging.getLogger(__name__)


def _reads_of(prefix: str) -> set[tuple[str, str]]:
    """What a prefix's revision is read from: its live keys, the delete marks under it, and
    those of the directories above it."""
    above = ["", *(prefix[: i + 1] for i, c in enumerate(prefix[:-1]) if c == "/")]
    return {("live", prefix), ("marks", prefix), *(("mark", d) for d in above)}


def _retrieved(fut: asyncio.Future[tuple[int, int]]) -> None:
    if not fut.cancelled():
        fut.exception()  # seen: a reader that gave up leaves no "never retrieved" warning


class EtcdStore:
    """The Store protocol on etcd; see the module docstring. Open it with `connect()`."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        namespace: str = NAMESPACE,
        quotas: Sequence[Quota] | None = None,
        history: int = LOG_REVISIONS,
        read_timeout: float = READ_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        check_every: float = CHECK_EVERY,
    ) -> None:
        if history < 1:
            raise ValueError("history must keep at least one revision")
        self.ns = codec.Namespace(namespace)
        self._gw = Gateway(endpoints, read_timeout=read_timeout, write_timeout=write_timeout)
        base = default_quotas({}) if quotas is None else quotas
        self._quotas = (*base, Quota("", max_value_bytes=MAX_VALUE_BYTES,
                                     name="a value in etcd"))
        self._f = Followed([q for q in self._quotas if q.max_keys or q.max_bytes])
        self._history = history
        self._check_every = check_every
        self._compacted = 0
        self._reading: dict[str, asyncio.Future[tuple[int, int]]] = {}
        self._queued: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._follower: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def endpoints(self) -> list[str]:
        return list(self._gw.endpoints)

    async def connect(self) -> EtcdStore:
        """Reach etcd (Unavailable naming every endpoint when none answers) and start
        following it."""
        try:
            rev = await self.revision()
            self._f.usage = await self._count_usage(rev)
            with contextlib.suppress(StoreError):
                await self._gw.check_quorum()  # prefer the leader
        except BaseException:
            await self._gw.close()
            raise
        self._f.seen = rev
        self._follower = asyncio.get_running_loop().create_task(self._follow(rev))
        return self

    # -- reads ---------------------------------------------------------------------------

    async def revision(self) -> int:
        self._check_open()
        doc = await self._gw.read("/v3/kv/range", {
            "key": codec.b64(self.ns.meta.encode()), "limit": 1, "keys_only": True})
        return codec.header_revision(doc)

    async def get(self, key: str) -> Entry | None:
        self._check_open()
        doc = await self._gw.read("/v3/kv/range", {"key": codec.b64(self.ns.key(key))})
        kvs = doc.get("kvs") or []
        return codec.entry(self.ns, kvs[0]) if kvs else None

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        self._check_open()
        return await self._range(*self.ns.range(prefix))

    async def _range(self, start: bytes, end: bytes, at: int = 0) -> tuple[list[Entry], int]:
        """Every key in [start, end) at one revision (`at`, or the newest), read in pages."""
        entries: list[Entry] = []
        rev = at
        key = start
        while True:
            body: Json = {"key": codec.b64(key), "range_end": codec.b64(end), "limit": PAGE}
            if rev:
                body["revision"] = str(rev)
            doc = await self._gw.read("/v3/kv/range", body)
            rev = rev or codec.header_revision(doc)
            page = [codec.entry(self.ns, kv) for kv in doc.get("kvs") or []]
            entries.extend(page)
            if not doc.get("more") or not page:
                return entries, rev
            key = self.ns.key(page[-1].key) + b"\0"

    async def prefix_revision(self, prefix: str) -> int:
        self._check_open()
        found, _ = await self._prefix_revision(prefix)
        return found

    async def _prefix_revision(self, prefix: str) -> tuple[int, int]:
        """The prefix's revision (see the module docstring) and the revision it holds at.

        Answers are cached, as on SQLite: the follower and this store's own writes move a
        cached prefix to the revision of each change under it, so a blocking query that
        wakes costs no round trip. An answer is cached only when the read was at least as
        new as what the follower handled (a lagging member's answer is not kept)."""
        cached = self._f.cached(prefix)
        if cached is not None:
            return cached, self._f.seen
        # One read per prefix at a time, and the prefixes missed in one turn of the loop read
        # together: a thousand blocking queries arriving at once cost a few round trips.
        pending = self._reading.get(prefix)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.create_future()
            pending.add_done_callback(_retrieved)
            self._reading[prefix] = pending
            self._queued.append(prefix)
            if len(self._queued) == 1:
                loop.call_soon(self._read_queued)
        return await asyncio.shield(pending)

    def _read_queued(self) -> None:
        queued, self._queued = self._queued, []
        batch: list[str] = []
        reads: set[tuple[str, str]] = set()
        for prefix in queued:
            need = _reads_of(prefix)
            if batch and len(reads | need) > TXN_READS:
                self._spawn(self._read_prefix_revisions(batch, reads))
                batch, reads = [], set()
            batch.append(prefix)
            reads |= need
        if batch:
            self._spawn(self._read_prefix_revisions(batch, reads))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_prefix_revisions(self, prefixes: list[str],
                                      reads: set[tuple[str, str]]) -> None:
        """One read transaction for the revisions of `prefixes` (see the module docstring)."""
        order = sorted(reads)
        newest = {"sort_target": "MOD", "sort_order": "DESCEND", "limit": 1, "keys_only": True}
        ranges: list[Json] = []
        for kind, name in order:
            if kind == "mark":
                ranges.append({"key": codec.b64(self.ns.mark(name)), "keys_only": True})
            else:
                start, end = self.ns.range(name) if kind == "live" else self.ns.marks(name)
                ranges.append({"key": codec.b64(start), "range_end": codec.b64(end), **newest})
        try:
            doc = await self._gw.read("/v3/kv/txn", {
                "success": [{"request_range": r} for r in ranges]})
        except BaseException as e:
            for prefix in prefixes:
                fut = self._reading.pop(prefix, None)
                if fut is not None and not fut.done():
                    fut.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        found: dict[tuple[str, str], int] = {}
        for read, response in zip(order, doc.get("responses", []), strict=False):
            kvs = response.get("response_range", {}).get("kvs") or []
            found[read] = max((codec.to_int(kv.get("mod_revision")) for kv in kvs), default=0)
        read_at = codec.header_revision(doc)
        for prefix in prefixes:
            answer = max([found.get(r, 0) for r in _reads_of(prefix)]
                         + [self._f.seen_deletes(prefix)])
            self._f.remember(prefix, answer, read_at)
            fut = self._reading.pop(prefix, None)
            if fut is not None and not fut.done():
                fut.set_result((answer, read_at))

    # -- writes --------------------------------------------------------------------------

    async def put(
        self, key: str, value: bytes, *, expect: int | None = None, lease: int = 0
    ) -> int:
        compares = [] if expect is None else [Compare(key, expect)]
        result = await self.txn(compares, [Put(key, value, lease)])
        if not result.succeeded:
            raise CasFailed(f"put {key!r}: mod_revision is not {expect}")
        return result.revision

    async def delete(self, key: str, *, expect: int | None = None, prefix: bool = False) -> int:
        self._check_open()
        if prefix and expect is not None:
            raise ValueError("delete: expect cannot be combined with prefix")
        validate_op(Delete(key, prefix))
        # Delete only what exists, so that deleting nothing makes no revision (and no mark):
        # etcd compares every key of a range, and an empty range fails "create_revision > 0".
        if prefix:
            start, end = self.ns.range(key)
            exists = {"key": codec.b64(start), "range_end": codec.b64(end), "target": "CREATE",
                      "result": "GREATER", "create_revision": "0"}
            result, _ = await self._txn([exists], [Delete(key, prefix=True)], [])
            return result.revision
        raw = codec.b64(self.ns.key(key))
        compares = [{"key": raw, "target": "MOD", "result": "GREATER", "mod_revision": "0"}]
        if expect is not None:
            compares.append(codec.compare(self.ns, Compare(key, expect)))
        result, doc = await self._txn(compares, [Delete(key)], [], [
            {"request_range": {"key": raw, "keys_only": True}}])
        if result.succeeded:
            return result.revision
        kvs = doc["responses"][0]["response_range"].get("kvs") or []
        current = codec.to_int(kvs[0].get("mod_revision")) if kvs else 0
        if expect is not None and current != expect:
            raise CasFailed(f"delete {key!r}: mod_revision is not {expect}")
        return result.revision

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        result, _ = await self._txn([codec.compare(self.ns, c) for c in compares],
                                    success, failure)
        return result

    async def _txn(self, compares: list[Json], success: Sequence[Op], failure: Sequence[Op],
                   failure_reads: Sequence[Json] = ()) -> tuple[TxnResult, Json]:
        self._check_open()
        for op in (*success, *failure):
            validate_op(op)
            if isinstance(op, Put):
                check_value(self._quotas, op.key, len(op.value))
        for ops in (success, failure):
            await self._check_quotas(ops)
        planned = [codec.plan_ops(self.ns, ops) for ops in (success, failure)]

        def requests(ops: list[codec.EtcdOp]) -> list[Json]:
            marks = [codec.PutKey(self.ns.mark(d), b"")
                     for d in codec.deleted_dirs(self.ns, ops)]
            return [codec.request_op(op) for op in (*ops, *marks)]

        doc = await self._gw.write("/v3/kv/txn", {
            "compare": compares, "success": requests(planned[0]),
            "failure": [*requests(planned[1]), *failure_reads]})
        succeeded = bool(doc.get("succeeded"))
        rev = codec.header_revision(doc)
        applied = planned[0] if succeeded else planned[1]
        events = codec.txn_events(self.ns, applied, doc.get("responses") or [], rev)
        if events:
            self._f.changed([e.key for e in events], rev)
        await self._maybe_compact(rev)
        return TxnResult(succeeded, rev, tuple(events)), doc

    async def _check_quotas(self, ops: Sequence[Op]) -> None:
        """Refuse `ops` when they would grow a counted quota past its bound."""
        for quota, usage in zip(self._f.counted, self._f.usage, strict=True):
            if not any(isinstance(op, Put) and op.key.startswith(quota.prefix) for op in ops):
                continue
            current: dict[str, bytes] = {}
            for op in ops:
                touches = op.key.startswith(quota.prefix) or (
                    isinstance(op, Delete) and op.prefix and quota.prefix.startswith(op.key))
                if not touches:
                    continue
                if isinstance(op, Delete) and op.prefix:
                    current.update((e.key, e.value) for e in (await self.range(op.key))[0])
                elif (e := await self.get(op.key)) is not None:
                    current[op.key] = e.value
            check_usage(quota, usage, ops_delta(quota.prefix, ops, current))

    async def _count_usage(self, rev: int) -> list[Usage]:
        """What each counted quota holds at `rev` (where the follower starts)."""
        usage = []
        for quota in self._f.counted:
            entries, _ = await self._range(*self.ns.range(quota.prefix), at=rev)
            usage.append(Usage(len(entries), sum(entry_bytes(e.key, e.value) for e in entries)))
        return usage

    def usage(self) -> list[tuple[Quota, Usage]]:
        """Each counted quota and what the follower counts now (for metrics and tests)."""
        return [(q, Usage(u.keys, u.bytes))
                for q, u in zip(self._f.counted, self._f.usage, strict=True)]

    # -- leases --------------------------------------------------------------------------

    async def grant(self, ttl: float) -> int:
        self._check_open()
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl: must be a number of seconds above 0, not {ttl!r}")
        doc = await self._gw.write("/v3/lease/grant", {"TTL": str(math.ceil(ttl))})
        return codec.to_int(doc.get("ID"))

    async def keepalive(self, lease: int) -> float:
        self._check_open()
        doc = await self._gw.write("/v3/lease/keepalive", {"ID": str(lease)})
        ttl = codec.to_int(doc.get("result", doc).get("TTL"))
        if ttl <= 0:
            raise LeaseExpired(f"lease {lease:x} is gone: it expired or was revoked")
        return float(ttl)

    async def revoke(self, lease: int) -> None:
        self._check_open()
        with contextlib.suppress(LeaseExpired):
            await self._gw.write("/v3/lease/revoke", {"ID": str(lease)})

    # -- history -------------------------------------------------------------------------

    async def _maybe_compact(self, rev: int) -> None:
        """Compact past the history bound, by a step (a tenth), as SQLite does. The write
        that triggers it is done already: a failure is logged, and retried by the next."""
        step = max(1, min(10_000, self._history // 10))
        if rev - self._compacted >= self._history + step:
            try:
                await self.compact(rev - self._history)
            except StoreError as e:
                log.warning("etcd compaction to %d failed: %s", rev - self._history, e)

    async def compact(self, revision: int) -> None:
        """Forget history up to `revision`; watches from before it get Compacted."""
        self._check_open()
        try:
            await self._gw.write("/v3/kv/compaction", {"revision": str(revision)})
        except EtcdError as e:
            if "compacted" not in str(e):
                log.warning("etcd compaction to %d failed: %s", revision, e)
                return
        self._compacted = max(self._compacted, revision)

    # -- watching ------------------------------------------------------------------------

    async def watch(self, prefix: str, after: int) -> AsyncIterator[list[Event]]:
        self._check_open()
        start, end = self.ns.range(prefix)
        pos = max(after, 0)
        while not self._closed:
            for url in self._gw.order():
                body = {"create_request": {
                    "key": codec.b64(start), "range_end": codec.b64(end),
                    "start_revision": str(pos + 1), "prev_kv": True}}
                try:
                    async with contextlib.aclosing(self._gw.watched(
                            url, "/v3/watch", body, self._check_every)) as messages:
                        async for message in messages:
                            result = message.get("result")
                            if result is None:
                                raise EtcdError(f"etcd at {url}: {message.get('error')}", 14)
                            compacted = codec.to_int(result.get("compact_revision"))
                            if compacted:
                                self._compacted = max(self._compacted, compacted)
                                raise Compacted(pos, compacted)
                            if result.get("canceled"):
                                break
                            raw = result.get("events") or []
                            batch = [codec.watch_event(self.ns, e) for e in raw]
                            if batch:
                                pos = batch[-1].revision
                                yield batch
                except (httpx.HTTPError, EtcdError, RuntimeError) as e:
                    if self._closed:
                        return
                    log.info("watch of %r at etcd %s ended (%s); resuming from %d",
                             prefix, url, e, pos)
            if self._closed:
                return
            await asyncio.sleep(RETRY)

    async def wait(self, prefix: str, after: int, timeout: float) -> int:
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        retries = 3
        while True:
            fut = self._f.signals.acquire(prefix)
            try:
                current, read_at = await self._prefix_revision(prefix)
                left = deadline - loop.time()
                if current > after or left <= 0:
                    return current
                if self._f.seen > read_at and retries > 0:
                    retries -= 1
                    continue  # the follower moved on while a lagging member answered: ask again
                # The follower may still bring changes up to `after` (this store's own
                # writes, seen late): they wake us, and we wait again.
                await asyncio.wait({fut}, timeout=left)
            finally:
                self._f.signals.release(prefix, fut)
            self._check_open()

    async def _follow(self, rev: int) -> None:
        """Follow the whole namespace from `rev`: wake waiters, count deletes and usage."""
        while not self._closed:
            try:
                async for batch in self.watch("", rev):
                    self._f.handle(batch)
                    rev = batch[-1].revision
            except Compacted:
                log.warning("the store fell behind etcd's history; recounting from now")
                with contextlib.suppress(StoreError):
                    rev = await self.revision()
                    self._f.restart(rev, await self._count_usage(rev))
            except StoreError as e:  # etcd refused the watch: keep trying, from where it was
                if self._closed:
                    return
                log.warning("the store's follower of etcd stopped (%s); resuming from %d",
                            e, rev)
                await asyncio.sleep(RETRY)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._follower, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        self._f.signals.fire_all(self._f.seen)
        await self._gw.close()  # ends every stream, should a task still read one
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

