"""The node's log store: its tasks' output, kept on the node, bounded by bytes and age.

One SQLite database per node, `<data_dir>/logs/logs.db` (`kade.sqlite_db`: one writer thread,
read-only connections for queries), in WAL mode with `synchronous=FULL`: `append` returns
after a commit that survives `kill -9` and a power cut. The capture appends a batch (up to
~1000 lines, or what ~100 ms brought) in one transaction, so the fsync is paid per batch,
not per line; NORMAL would save that fsync but may lose acknowledged batches on power loss
(`docs/benchmarks.md` has both), and an acknowledged line must never be lost.

Layout (Loki's lesson: few labels, lines not indexed one by one, parsed at query time):

- `tasks`: one row per task (app, version, node, how it ended, its lines' count, bytes and
  first/last time); chunks refer to it by a small integer, the labels are stored once.
- `chunks` (`kade.logs.chunks`): up to 64 lines of one task from one append, sorted by
  time, as one row (the lines' text joined by newlines, their times, seqs and streams
  packed); ids grow as chunks are stored. The indexes (task, first) and (task, last) serve
  a task's time range forwards and, for a tail, backwards. Quiet tasks' one-line chunks are
  merged by `compact()`.
- `text_parts` (`kade.logs.text_index`): FTS5 indexes per app with one document per chunk
  (words only, `detail=none`: the smallest and cheapest to write), each over a range of
  chunk ids, dropped whole when its chunks are gone (forgetting documents one by one cost
  more than indexing them). The index finds the chunks that hold every word; their lines
  are then checked (whole words, phrases, grep, where). Indexing chunks rather than lines
  halved the CPU of an append (`docs/benchmarks.md`).
- `spans`: per hour of line time, the chunk ids stored for it: a time-bounded full-text
  query asks the index only for that id range, so it reads its hour, not the whole history.
- `streams`: per task and stream, the last stored (time, seq), how many lines share that
  stamp and the bytes read (each line's UTF-8 length plus its newline): the capture's
  `resume_point`, and the duplicate check — a line at or before its stream's last
  (time, seq) is already stored and is ignored, so a capture that re-sends lines after a
  crash stores each once. A stream's lines must therefore be appended in (time, seq) order,
  `seq` counting the lines that share one stamp (0, 1, ...).

Bounds: a line is kept up to `MAX_LINE` bytes, then cut and marked (`chunks.CUT_MARK`); a newline
inside a line is stored as `\\n`; answers hold at most `MAX_TAIL` lines; patterns, words and
where conditions are bounded (`kade.logs.filters`); a query examines at most
`reads.MAX_SCAN` lines, else it is refused (`reads.QueryTooBroad`) saying how to narrow it.

Retention (per app: `set_retention`, else the node's defaults, 7 days and 256 MiB per app;
and 4 GiB for the whole node) removes the oldest lines first, by the lines' own time, a
chunk at a time; bytes are the lines' UTF-8 text plus `LINE_OVERHEAD` each (rows, index
entries). `run()` enforces it and compacts chunks every minute, and at once when the node
goes over its cap: the owner of the store (the node side) runs it beside the store. A
task's record stays while it has lines, and while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from kade.logs import chunks, reads, retention, text_index
from kade.logs.filters import check_query, compile_filter
from kade.logs.record import STREAMS, LogLine, LogQuery, Resume, Retention, TaskLog
from kade.sqlite_db import SQLiteDB, transaction

log = logging.getLogger("kade.logs")

DB_FILE = "logs.db"
DEFAULT_MAX_AGE = 7 * 24 * 3600.0  # seconds an app's lines are kept, unless the app says
DEFAULT_MAX_BYTES = 256 * 1024**2  # bytes of one app's lines, unless the app says
NODE_MAX_BYTES = 4 * 1024**3  # bytes of all lines on the node
LINE_OVERHEAD = chunks.LINE_OVERHEAD
MAX_REASON = 1024  # characters of a task's end reason
MAX_TASKS = 10_000  # tasks in one answer of `tasks`
RETENTION_INTERVAL = 60.0  # seconds between two enforcements
FOLLOW_BATCH = 1000  # lines read per wake-up of a follow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    ref INTEGER PRIMARY KEY,
    task TEXT NOT NULL UNIQUE,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    node TEXT NOT NULL,
    started INTEGER NOT NULL,
    ended INTEGER,
    exit_code INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    lines INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    first INTEGER,
    last INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_app ON tasks(app);
CREATE TABLE IF NOT EXISTS streams (
    ref INTEGER NOT NULL, stream INTEGER NOT NULL, time INTEGER NOT NULL,
    seq INTEGER NOT NULL, count INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (ref, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    ref INTEGER NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    n INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    meta BLOB NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_first ON chunks(ref, first);
CREATE INDEX IF NOT EXISTS chunks_last ON chunks(ref, last);
CREATE INDEX IF NOT EXISTS chunks_ref ON chunks(ref);
CREATE TABLE IF NOT EXISTS retention (app TEXT PRIMARY KEY, max_bytes INTEGER, max_age REAL);
"""

_NODE_DEFAULTS = Retention()
_STREAM_CODES = {name: code for code, name in enumerate(STREAMS)}
Mark = tuple[int, int, int, int]  # a stream's last (time, seq), lines at that time, offset


class LogStore:
    def __init__(self, data_dir: Path, defaults: Retention = _NODE_DEFAULTS,
                 clock: Callable[[], float] = time.time, *, max_bytes: int = NODE_MAX_BYTES,
                 synchronous: str = "FULL") -> None:
        self.path = Path(data_dir) / "logs" / DB_FILE
        self.defaults = Retention(
            defaults.max_bytes if defaults.max_bytes is not None else DEFAULT_MAX_BYTES,
            defaults.max_age if defaults.max_age is not None else DEFAULT_MAX_AGE)
        self.max_bytes = max_bytes
        self.clock = clock
        self._file = SQLiteDB(self.path, self._setup, name="logs", synchronous=synchronous)
        # the writer thread's own view, loaded at open
        self._refs: dict[str, int] = {}
        self._apps: dict[int, str] = {}  # task ref → app
        self._index = text_index.TextIndex()
        self._marks: dict[tuple[int, int], Mark] = {}
        self._compacted = 0  # chunks up to this id were looked at by `compact`
        self._next_id = 1
        self._bytes = 0
        # the event loop's
        self._last_id = 0
        self._changed = asyncio.Event()
        self._over = asyncio.Event()
        self._closed = False

    async def open(self) -> LogStore:
        await self._file.open()
        self._last_id = self._next_id - 1
        return self

    def _setup(self, db: sqlite3.Connection) -> None:
        db.executescript(_SCHEMA + chunks.SPANS.schema() + text_index.SCHEMA)
        self._load(db)

    def _load(self, db: sqlite3.Connection) -> None:
        self._refs = dict(db.execute("SELECT task, ref FROM tasks").fetchall())
        self._apps = dict(db.execute("SELECT ref, app FROM tasks").fetchall())
        self._index.load(db)
        self._marks = {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in db.execute(
            "SELECT ref, stream, time, seq, count, offset FROM streams")}
        self._next_id = 1 + max(self._index.highest_id(db), db.execute(
            "SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0])
        self._compacted = self._next_id - 1  # what an earlier run left small stays so
        self._bytes = db.execute("SELECT coalesce(sum(bytes), 0) FROM tasks").fetchone()[0]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._changed.set()  # followers end
        self._over.set()
        await self._file.close()

    # -- writes ----------------------------------------------------------------------------

    async def append(self, lines: Sequence[LogLine]) -> None:
        """Store `lines` in one transaction, durable when this returns. Lines already stored
        (at or before their stream's last (time, seq)) are ignored."""
        if not lines:
            return
        last = await self._file.write(lambda db: self._append(db, lines))
        if last > self._last_id:
            self._last_id = last
            self._changed.set()
            self._changed = asyncio.Event()
        if self._bytes > self.max_bytes:
            self._over.set()

    def _append(self, db: sqlite3.Connection, lines: Sequence[LogLine]) -> int:
        try:
            return transaction(db, lambda: self._insert(db, lines))
        except BaseException:
            self._load(db)  # what the rolled back transaction had changed in the views
            raise

    def _insert(self, db: sqlite3.Connection, lines: Sequence[LogLine]) -> int:
        marks: dict[tuple[int, int], Mark] = {}
        per_task: dict[int, list[chunks.Entry]] = {}
        refs, old_marks = self._refs, self._marks
        for ln in lines:
            ref = refs.get(ln.task)
            if ref is None:
                ref = self._new_task(db, TaskLog(ln.task, ln.app, ln.version, ln.node, ln.time))
            stream = _STREAM_CODES.get(ln.stream)
            if stream is None:
                raise ValueError(f"stream: {ln.stream!r} is not one of {', '.join(STREAMS)}")
            key = (ref, stream)
            mark = marks.get(key) or old_marks.get(key)
            at, seq = ln.time, ln.seq
            if mark is not None and (at, seq) <= (mark[0], mark[1]):
                continue  # stored already
            text, raw = chunks.cut(ln.line)
            if mark is None:
                marks[key] = (at, seq, 1, raw + 1)
            else:
                marks[key] = (at, seq, mark[2] + 1 if mark[0] == at else 1, mark[3] + raw + 1)
            entry = (at, stream, seq, text, chunks.size_of(text))
            found = per_task.get(ref)
            if found is None:
                per_task[ref] = [entry]
            else:
                found.append(entry)
        if not per_task:
            return self._next_id - 1
        next_id = self._next_id
        rows, tasks, stored = [], [], 0
        for ref, entries in per_task.items():
            added = sum(e[4] for e in entries)
            lo, hi = min(e[0] for e in entries), max(e[0] for e in entries)
            stored += added
            tasks.append((len(entries), added, lo, lo, hi, hi, ref))
            for chunk in chunks.split(entries):
                rows.append(chunks.row(next_id, ref, chunk))
                next_id += 1
        chunks.insert(db, rows)
        self._index_rows(db, rows)
        db.executemany(
            "UPDATE tasks SET lines = lines + ?, bytes = bytes + ?, "
            "first = min(coalesce(first, ?), ?), last = max(coalesce(last, ?), ?) "
            "WHERE ref = ?", tasks)
        db.executemany(
            "INSERT INTO streams (ref, stream, time, seq, count, offset) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(ref, stream) DO UPDATE SET "
            "time = excluded.time, seq = excluded.seq, count = excluded.count, "
            "offset = excluded.offset", [(*k, *m) for k, m in marks.items()])
        old_marks.update(marks)
        self._next_id = next_id
        self._bytes += stored
        return next_id - 1

    def _index_rows(self, db: sqlite3.Connection, rows: list[chunks.ChunkRow]) -> None:
        by_app: dict[str, list[tuple[int, int, str]]] = {}
        for r in rows:
            by_app.setdefault(self._apps[r[1]], []).append((r[0], r[4], r[7]))
        for app, docs in by_app.items():
            self._index.add(db, app, docs)

    def _new_task(self, db: sqlite3.Connection, t: TaskLog) -> int:
        cur = db.execute("INSERT INTO tasks (task, app, version, node, started) "
                         "VALUES (?, ?, ?, ?, ?)", (t.task, t.app, t.version, t.node, t.started))
        ref = cur.lastrowid
        assert ref is not None
        self._refs[t.task] = ref
        self._apps[ref] = t.app
        return ref

    async def task_started(self, t: TaskLog) -> None:
        def write(db: sqlite3.Connection) -> None:
            def started() -> None:
                ref = self._refs.get(t.task)
                if ref is None:
                    ref = self._new_task(db, t)
                self._apps[ref] = t.app
                db.execute("UPDATE tasks SET app = ?, version = ?, node = ?, started = ?, "
                           "ended = ?, exit_code = ?, reason = ? WHERE task = ?",
                           (t.app, t.version, t.node, t.started, t.ended, t.exit_code,
                            t.reason[:MAX_REASON], t.task))

            try:
                transaction(db, started)
            except BaseException:
                self._load(db)
                raise

        await self._file.write(write)

    async def task_ended(self, task_id: str, exit_code: int | None, reason: str,
                         ended_ns: int) -> None:
        """Record how a task ended (nothing if the store never heard of it)."""
        await self._file.write(lambda db: transaction(db, lambda: db.execute(
            "UPDATE tasks SET ended = ?, exit_code = ?, reason = ? WHERE task = ?",
            (ended_ns, exit_code, reason[:MAX_REASON], task_id))))

    async def set_retention(self, app_id: str, bounds: Retention) -> None:
        """The app's bounds (its `"logs"` field); None in a field: the node's default."""
        if bounds.max_bytes is None and bounds.max_age is None:
            sql, args = "DELETE FROM retention WHERE app = ?", (app_id,)
        else:
            sql = ("INSERT INTO retention (app, max_bytes, max_age) VALUES (?, ?, ?) "
                   "ON CONFLICT(app) DO UPDATE SET max_bytes = excluded.max_bytes, "
                   "max_age = excluded.max_age")
            args = (app_id, bounds.max_bytes, bounds.max_age)  # type: ignore[assignment]
        await self._file.write(lambda db: transaction(db, lambda: db.execute(sql, args)))

    # -- retention -------------------------------------------------------------------------

    async def enforce_retention(self) -> int:
        """Remove the lines beyond each app's age and bytes, then beyond the node's bytes,
        oldest first, in steps of bounded size (appends go on in between). Lines removed."""
        removed = 0
        rules = retention.Rules(self.defaults, self.max_bytes, self.clock())
        while not self._closed:
            step = await self._file.write(lambda db: self._enforce_step(db, rules))
            removed += step.removed
            if not step.more:
                break
        return removed

    def _enforce_step(self, db: sqlite3.Connection, rules: retention.Rules) -> retention.Step:
        def run() -> retention.Step:
            step = retention.step(db, rules)
            self._index.drop_dead(db, [r[0] for r in db.execute(
                "SELECT DISTINCT app FROM text_parts")])
            return step

        try:
            step = transaction(db, run)
        except BaseException:
            self._load(db)
            raise
        self._bytes -= step.bytes
        for task in step.forgotten:
            ref = self._refs.pop(task, 0)
            self._apps.pop(ref, None)
            for s in range(len(STREAMS)):
                self._marks.pop((ref, s), None)
        return step

    async def compact(self) -> int:
        """Merge the small chunks of quiet tasks (an append makes one chunk per task) into
        chunks of up to `chunks.MAX_LINES` lines, in bounded steps. Chunks merged."""
        merged = 0
        while not self._closed:
            n, more = await self._file.write(self._compact_step)
            merged += n
            if not more:
                break
        return merged

    def _compact_step(self, db: sqlite3.Connection) -> tuple[int, bool]:
        def run() -> chunks.Compacted:
            done = chunks.compact(db, self._compacted, self._next_id)
            self._index_rows(db, done.rows)
            return done

        try:
            done = transaction(db, run)
        except BaseException:
            self._load(db)
            raise
        self._compacted, self._next_id = done.upto, done.next_id
        return done.merged, done.more

    async def run(self, interval: float = RETENTION_INTERVAL,
                  sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        """Enforce retention and compact chunks every `interval` seconds, and at once when
        the node goes over its bytes, until the store closes. The owner of the store runs it
        in its task group."""
        while not self._closed:
            try:
                removed = await self.enforce_retention()
                await self.compact()
            except (sqlite3.Error, RuntimeError) as e:
                if self._closed:
                    return
                log.error("log retention failed: %s", e)
            else:
                if removed:
                    log.info("log retention removed %d lines", removed)
            self._over.clear()
            if sleep is not None:
                await sleep(interval)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._over.wait(), interval)

    # -- reads -----------------------------------------------------------------------------

    async def resume_point(self, task_id: str, stream: str) -> Resume:
        if stream not in STREAMS:
            raise ValueError(f"stream: must be one of {', '.join(STREAMS)}")
        code = STREAMS.index(stream)
        row = await self._file.read(lambda db: db.execute(
            "SELECT s.time, s.count, s.offset FROM streams AS s JOIN tasks AS t "
            "ON t.ref = s.ref WHERE t.task = ? AND s.stream = ?", (task_id, code)).fetchone())
        return Resume(*row) if row else Resume()

    async def tasks(self, app: str | None = None, task: str | None = None,
                    previous: bool = False) -> list[TaskLog]:
        """The tasks whose output is kept, by start: an app's, or one; `previous`: ended.
        At most `MAX_TASKS`, the latest."""
        where, args = ["1"], []
        if app is not None:
            where.append("app = ?")
            args.append(app)
        if task is not None:
            where.append("task = ?")
            args.append(task)
        if previous:
            where.append("ended IS NOT NULL")
        rows = await self._file.read(lambda db: db.execute(
            "SELECT task, app, version, node, started, ended, exit_code, reason FROM tasks "
            f"WHERE {' AND '.join(where)} ORDER BY started DESC, ref DESC LIMIT ?",
            (*args, MAX_TASKS)).fetchall())
        return [TaskLog(*r) for r in reversed(rows)]

    async def query(self, q: LogQuery) -> list[LogLine]:
        """The query's lines in time order: the first `limit`, or the last `tail`.
        ValueError naming a field that is out of bounds; `reads.QueryTooBroad` (a ValueError)
        when answering would examine more than `reads.MAX_SCAN` lines."""
        check_query(q)
        flt = compile_filter(q)
        lines, _ = await self._file.read(lambda db: reads.run_query(db, q, flt))
        return lines

    async def follow(self, q: LogQuery) -> AsyncIterator[LogLine]:
        """The query's lines, then each line the query keeps as it is appended, until the
        store closes (woken by each commit: nothing polls)."""
        check_query(q)
        flt = compile_filter(q)
        lines, at = await self._file.read(lambda db: reads.run_query(db, q, flt))
        for line in lines:
            yield line
        while not self._closed:
            changed = self._changed
            if self._last_id <= at.last_id:
                await changed.wait()
                continue
            try:
                lines = await self._file.read(
                    lambda db: reads.newer(db, q, flt, at, FOLLOW_BATCH))
            except RuntimeError:  # the store closed while the read was asked for
                if self._closed:
                    return
                raise
            for line in lines:
                yield line
