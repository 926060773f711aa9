"""The node's log store: appends, resume points, every query field, follow, retention and
bounds, on a real SQLite database in a temporary data dir."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kade.logs.filters import MAX_PATTERN
from kade.logs.reads import QueryTooBroad
from kade.logs.record import MAX_LINE, MAX_TAIL, LogLine, LogQuery, Resume, Retention, TaskLog
from kade.logs.store import LINE_OVERHEAD, LogStore
from kade.testing.clock import FakeClock

NOW = 1_700_000_000.0
S = 10**9  # ns per second
T0 = int(NOW * S) - 3600 * S  # an hour ago


def line(i: int, text: str | None = None, *, task: str = "shop_web.1", app: str = "/shop/web",
         stream: str = "stdout", at: int | None = None, seq: int = 0) -> LogLine:
    return LogLine(time=at if at is not None else T0 + i * S, app=app, task=task, version="v1",
                   node="n1", stream=stream, line=text if text is not None else f"line {i}",
                   seq=seq)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LogStore]:
    clock = FakeClock(NOW)
    s = await LogStore(tmp_path, clock=clock.now).open()
    yield s
    await s.close()


def texts(lines: list[LogLine]) -> list[str]:
    return [ln.line for ln in lines]


# -- appends, duplicates, resume points ----------------------------------------------------

async def test_lines_come_back_in_time_order_with_their_labels(store: LogStore) -> None:
    await store.append([line(2), line(1, stream="stderr"), line(3)])
    got = await store.query(LogQuery(task="shop_web.1"))
    assert texts(got) == ["line 1", "line 2", "line 3"]
    assert got[0] == LogLine(T0 + S, "/shop/web", "shop_web.1", "v1", "n1", "stderr", "line 1")


async def test_lines_appended_twice_are_stored_once(store: LogStore) -> None:
    batch = [line(i) for i in range(5)]
    await store.append(batch)
    await store.append(batch[3:] + [line(5)])  # a capture resending after a crash
    assert texts(await store.query(LogQuery(task="shop_web.1"))) == [
        f"line {i}" for i in range(6)]


async def test_resume_point_counts_lines_sharing_the_last_stamp(store: LogStore) -> None:
    assert await store.resume_point("shop_web.1", "stdout") == Resume()
    at = T0 + 10 * S
    await store.append([line(1), line(0, "a", at=at), line(0, "b", at=at, seq=1)])
    await store.append([line(0, "b", at=at, seq=1), line(0, "c", at=at, seq=2)])
    resume = await store.resume_point("shop_web.1", "stdout")
    assert (resume.time, resume.count) == (at, 3)
    assert resume.offset == len("line 1\na\nb\nc\n")  # bytes read, for an exec output file
    assert await store.resume_point("shop_web.1", "stderr") == Resume()


async def test_a_line_longer_than_the_bound_is_cut_and_marked(store: LogStore) -> None:
    await store.append([line(1, "x" * (MAX_LINE + 10)), line(2, "é" * 40_000)])
    cut, whole = await store.query(LogQuery(task="shop_web.1"))
    assert cut.line.startswith("x" * MAX_LINE)
    assert cut.line.endswith(f"[kade: line cut, {MAX_LINE + 10} bytes]")
    assert whole.line.startswith("é" * (MAX_LINE // 2)) and "cut" in whole.line
    await store.append([line(3, "y" * 40 * 1024)])
    assert (await store.query(LogQuery(task="shop_web.1", tail=1)))[0].line == "y" * 40 * 1024


async def test_reopening_the_store_keeps_lines_tasks_and_resume_points(tmp_path: Path) -> None:
    s = await LogStore(tmp_path).open()
    await s.task_started(TaskLog("shop_web.1", "/shop/web", "v1", "n1", T0))
    await s.append([line(1), line(2)])
    await s.task_ended("shop_web.1", 3, "exited with code 3", T0 + 5 * S)
    await s.close()
    s = await LogStore(tmp_path).open()
    try:
        await s.append([line(2), line(3)])
        assert texts(await s.query(LogQuery(app="/shop/web"))) == ["line 1", "line 2", "line 3"]
        assert (await s.resume_point("shop_web.1", "stdout")).time == T0 + 3 * S
        (task,) = await s.tasks(app="/shop/web")
        assert (task.exit_code, task.reason, task.ended) == (3, "exited with code 3", T0 + 5 * S)
    finally:
        await s.close()
    assert (tmp_path / "logs" / "logs.db").exists()


# -- tasks ------------------------------------------------------------------------------------

async def test_tasks_of_an_app_and_the_previous_ones(store: LogStore) -> None:
    await store.task_started(TaskLog("shop_web.1", "/shop/web", "v1", "n1", T0))
    await store.task_started(TaskLog("shop_web.2", "/shop/web", "v2", "n1", T0 + S))
    await store.task_started(TaskLog("shop_db.1", "/shop/db", "v1", "n1", T0))
    await store.task_ended("shop_web.1", 137, "killed", T0 + 2 * S)
    await store.task_ended("nobody.1", 1, "never heard of", T0)  # ignored
    assert [t.task for t in await store.tasks(app="/shop/web")] == ["shop_web.1", "shop_web.2"]
    (old,) = await store.tasks(app="/shop/web", previous=True)
    assert (old.task, old.exit_code, old.reason) == ("shop_web.1", 137, "killed")
    assert [t.version for t in await store.tasks(task="shop_web.2")] == ["v2"]


# -- queries ----------------------------------------------------------------------------------

async def fill_two_tasks(store: LogStore) -> None:
    await store.append([line(i, f"web {i}", task="shop_web.1") for i in range(0, 20, 2)]
                       + [line(i, f"web {i}", task="shop_web.2") for i in range(1, 20, 2)]
                       + [line(i, f"db {i}", task="shop_db.1", app="/shop/db")
                          for i in range(20)])


async def test_an_app_merges_its_tasks_by_time(store: LogStore) -> None:
    await fill_two_tasks(store)
    got = await store.query(LogQuery(app="/shop/web"))
    assert texts(got) == [f"web {i}" for i in range(20)]
    assert {ln.task for ln in got} == {"shop_web.1", "shop_web.2"}


async def test_since_until_tail_and_limit(store: LogStore) -> None:
    await fill_two_tasks(store)
    q = LogQuery(app="/shop/web", since=T0 + 5 * S, until=T0 + 15 * S)
    assert texts(await store.query(q)) == [f"web {i}" for i in range(5, 15)]
    assert texts(await store.query(LogQuery(app="/shop/web", tail=3))) == [
        "web 17", "web 18", "web 19"]
    assert texts(await store.query(LogQuery(app="/shop/web", limit=2))) == ["web 0", "web 1"]
    assert await store.query(LogQuery(app="/shop/web", tail=0)) == []


async def test_streams(store: LogStore) -> None:
    await store.append([line(1, "out"), line(2, "err", stream="stderr")])
    assert texts(await store.query(LogQuery(task="shop_web.1", streams=("stderr",)))) == ["err"]
    assert texts(await store.query(LogQuery(task="shop_web.1", streams=("stdout",)))) == ["out"]


async def test_grep_is_an_re2_search(store: LogStore) -> None:
    await store.append([line(1, "GET /a 200"), line(2, "GET /b 500 timeout"),
                        line(3, "POST /c 503")])
    q = LogQuery(task="shop_web.1", grep=r"\s5\d\d\b")
    assert texts(await store.query(q)) == ["GET /b 500 timeout", "POST /c 503"]
    with pytest.raises(ValueError, match=r"grep: .*RE2 syntax"):
        await store.query(LogQuery(task="shop_web.1", grep=r"(a)\1"))


async def test_grep_sees_each_line_alone(store: LogStore) -> None:
    # lines of one chunk are searched together first: a match across two lines must neither
    # count nor hide one that starts on the next line
    await store.append([line(1, "x 1"), line(2, "2 3"), line(3, "ab"), line(4, "ab"),
                        line(5, "été"), line(6, "ça é"), line(7, "z")])
    assert texts(await store.query(LogQuery(task="shop_web.1", grep="é$"))) == ["été", "ça é"]
    assert texts(await store.query(LogQuery(task="shop_web.1", grep="^.a"))) == ["ça é"]
    assert texts(await store.query(LogQuery(task="shop_web.1", grep=r"\d\s\d"))) == ["2 3"]
    assert texts(await store.query(LogQuery(task="shop_web.1", grep=r"\Aab\z"))) == ["ab", "ab"]
    assert texts(await store.query(LogQuery(task="shop_web.1", grep=r"b$"))) == ["ab", "ab"]
    assert texts(await store.query(LogQuery(task="shop_web.1", grep=r"(?s)1.2"))) == []


async def test_full_text_words_and_quoted_phrases(store: LogStore) -> None:
    await store.append([line(1, "Payment FAILED for order 17"), line(2, "payment ok"),
                        line(3, "failed payment retried"), line(4, "order_failed payments")])
    q = LogQuery(app="/shop/web", text="payment failed")
    assert texts(await store.query(q)) == ["Payment FAILED for order 17",
                                           "failed payment retried"]
    q = LogQuery(app="/shop/web", text='"payment failed"')
    assert texts(await store.query(q)) == ["Payment FAILED for order 17"]
    q = LogQuery(app="/shop/web", text="order_failed")  # the phrase "order failed"
    assert texts(await store.query(q)) == ["order_failed payments"]
    q = LogQuery(app="/shop/web", text="payment", tail=1, streams=("stdout",))
    assert texts(await store.query(q)) == ["failed payment retried"]
    await store.append([line(5, "repayment, then PAYMENT"), line(6, "repayments")])
    q = LogQuery(app="/shop/web", text="payment", since=T0 + 5 * S)
    assert texts(await store.query(q)) == ["repayment, then PAYMENT"]
    with pytest.raises(ValueError, match="text: .* no word"):
        await store.query(LogQuery(app="/shop/web", text="!!"))


async def test_full_text_honours_time_tasks_and_tail_across_hours(store: LogStore) -> None:
    hour = 3600 * S
    await store.append([line(0, f"error {h}", at=T0 + h * hour) for h in range(5)]
                       + [line(0, "error other", task="shop_db.1", app="/shop/db", at=T0)])
    q = LogQuery(app="/shop/web", text="error", since=T0 + hour, until=T0 + 3 * hour)
    assert texts(await store.query(q)) == ["error 1", "error 2"]
    assert texts(await store.query(LogQuery(app="/shop/web", text="error", tail=2))) == [
        "error 3", "error 4"]
    assert texts(await store.query(LogQuery(app="/shop/web", text="error", limit=1))) == [
        "error 0"]


async def test_where_parses_json_lines(store: LogStore) -> None:
    rows = [{"level": "error", "msg": "a", "http": {"status": 500}, "city": "Zürich/Nord"},
            {"level": "info", "msg": "b", "ok": True},
            {"level": "error", "msg": "timed out", "http": {"status": 504}}]
    await store.append([line(i, json.dumps(r).replace("/", "\\/")) for i, r in enumerate(rows)]
                       + [line(5, "level=error not json"), line(6, "[1, 2]")])

    async def msgs(*where: tuple[str, str, str]) -> list[str]:
        got = await store.query(LogQuery(task="shop_web.1", where=tuple(where)))  # type: ignore[arg-type]
        return [json.loads(ln.line)["msg"] for ln in got]

    assert await msgs(("level", "=", "error")) == ["a", "timed out"]
    assert await msgs(("city", "=", "Zürich/Nord")) == ["a"]  # written \u00fc and \/
    assert await msgs(("level", "!=", "error")) == ["b"]  # lines that are not objects: never
    assert await msgs(("http.status", "=", "504")) == ["timed out"]
    assert await msgs(("msg", "~", "^time")) == ["timed out"]
    assert await msgs(("ok", "=", "true")) == ["b"]
    assert await msgs(("msg", "=", "timed out")) == ["timed out"]
    assert await msgs(("http.status", "!=", "500"), ("level", "=", "error")) == ["timed out"]
    with pytest.raises(ValueError, match="where: msg: .*RE2"):
        await msgs(("msg", "~", "(?=x)"))
    with pytest.raises(ValueError, match="where: 'a b' is not a field name"):
        await msgs(("a b", "=", "x"))


async def test_previous_reads_only_tasks_that_ended(store: LogStore) -> None:
    await fill_two_tasks(store)
    await store.task_ended("shop_web.1", 1, "exited with code 1", T0 + 30 * S)
    got = await store.query(LogQuery(app="/shop/web", previous=True))
    assert {ln.task for ln in got} == {"shop_web.1"} and len(got) == 10
    assert await store.query(LogQuery(task="shop_web.2", previous=True)) == []


async def test_bounds_are_refused_naming_the_field(store: LogStore) -> None:
    for q, message in [
        (LogQuery(), "app, task: give exactly one"),
        (LogQuery(app="/a", task="t"), "app, task: give exactly one"),
        (LogQuery(app="/a", tail=MAX_TAIL + 1), "tail: must be 0 to"),
        (LogQuery(app="/a", limit=MAX_TAIL + 1), "limit: must be 0 to"),
        (LogQuery(app="/a", grep="x" * (MAX_PATTERN + 1)), "grep: is"),
        (LogQuery(app="/a", text="x " * 600), "text: is"),
        (LogQuery(app="/a", text=" ".join(f"w{i}" for i in range(17))), "text: 17 words"),
        (LogQuery(app="/a", where=(("a", "=", "1"),) * 17), "where: 17 conditions"),
        (LogQuery(app="/a", where=(("a", "<", "1"),)), "where: a: the operator"),  # type: ignore[arg-type]
        (LogQuery(app="/a", streams=("stdin",)), "streams: must be"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(ValueError, match=message):
            await store.query(q)


async def test_a_query_that_would_scan_too_much_is_refused(store: LogStore,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr("kade.logs.reads.MAX_SCAN", 100)
    await store.append([line(i) for i in range(300)])
    with pytest.raises(QueryTooBroad, match="query: examined 100 lines .* narrow it"):
        await store.query(LogQuery(task="shop_web.1", grep="nothing like it"))
    assert len(await store.query(LogQuery(task="shop_web.1", grep="line", limit=10))) == 10


# -- follow -----------------------------------------------------------------------------------

async def test_follow_gives_history_then_new_lines_that_match(store: LogStore) -> None:
    await store.append([line(1, "old error"), line(2, "old ok")])
    seen: list[str] = []
    q = LogQuery(app="/shop/web", grep="error")

    async def follow() -> None:
        async for ln in store.follow(q):
            seen.append(ln.line)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    assert seen == ["old error"]
    await store.append([line(3, "new error", task="shop_web.2"), line(4, "new ok")])
    for _ in range(100):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.01)
    assert seen == ["old error", "new error"]  # a task that started since is followed too
    await store.close()
    await asyncio.wait_for(task, 5)  # the follow ends when the store closes


async def test_follow_sees_each_line_once_while_small_chunks_are_merged(
        store: LogStore) -> None:
    seen: list[str] = []

    async def follow() -> None:
        async for ln in store.follow(LogQuery(task="shop_web.1", streams=("stdout",))):
            seen.append(ln.line)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.02)
    for i in range(100):  # one line per append: chunks of one line, merged now and then
        await store.append([line(i), line(i, f"err {i}", stream="stderr")])
        if i % 30 == 29:
            assert await store.compact() == 30
            assert await store.compact() == 0
    for _ in range(200):
        if len(seen) == 100:
            break
        await asyncio.sleep(0.01)
    assert seen == [f"line {i}" for i in range(100)]
    assert texts(await store.query(LogQuery(task="shop_web.1", streams=("stdout",)))) == seen
    assert texts(await store.query(LogQuery(task="shop_web.1", text="err", tail=2))) == [
        "err 98", "err 99"]
    await store.close()
    await asyncio.wait_for(task, 5)


# -- retention --------------------------------------------------------------------------------

async def test_retention_by_age_removes_the_oldest_lines(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    s = await LogStore(tmp_path, Retention(max_age=3600.0), clock=clock.now).open()
    try:
        await s.append([line(0, "old", at=int((NOW - 7200) * S)),
                        line(0, "recent", at=int((NOW - 60) * S)),
                        line(0, "db old", task="shop_db.1", app="/shop/db",
                             at=int((NOW - 7200) * S))])
        await s.set_retention("/shop/db", Retention(max_age=3 * 3600.0))
        assert await s.enforce_retention() == 1
        assert texts(await s.query(LogQuery(app="/shop/web"))) == ["recent"]
        assert texts(await s.query(LogQuery(app="/shop/db"))) == ["db old"]
        await clock.advance(2 * 3600)
        assert await s.enforce_retention() == 2
        assert await s.query(LogQuery(app="/shop/db")) == []
        # an ended task with no line left is forgotten once it is older than the age
        await s.task_ended("shop_web.1", 0, "exited with code 0", int((NOW - 60) * S))
        await clock.advance(3600)
        await s.enforce_retention()
        assert await s.tasks(app="/shop/web") == []
    finally:
        await s.close()


async def test_retention_by_bytes_per_app_and_for_the_node(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kade.logs.chunks.MAX_LINES", 1)  # lines go by whole chunks
    size = 1000 + LINE_OVERHEAD  # accounted bytes of each line below
    s = await LogStore(tmp_path, Retention(max_bytes=10 * size), FakeClock(NOW).now,
                       max_bytes=15 * size).open()
    try:
        for i in range(20):
            await s.append([line(i, f"{i:04d}" + "x" * 996),
                            line(i, f"{i:04d}" + "y" * 996, task="shop_db.1", app="/shop/db")])
        await s.set_retention("/shop/db", Retention(max_bytes=100 * size))
        # web keeps 9 (down to 99% of its 10); then the node (15) is over: 29 lines, the
        # oldest go whatever their app, down to 14
        await s.enforce_retention()
        web = await s.query(LogQuery(app="/shop/web"))
        db = await s.query(LogQuery(app="/shop/db"))
        assert [ln.line[:4] for ln in web] == [f"{i:04d}" for i in range(13, 20)]
        assert [ln.line[:4] for ln in db] == [f"{i:04d}" for i in range(13, 20)]
        assert (await s.resume_point("shop_web.1", "stdout")).time == T0 + 19 * S
    finally:
        await s.close()


async def test_run_enforces_retention_on_its_timer(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    s = await LogStore(tmp_path, Retention(max_age=3600.0), clock=clock.now).open()
    runner = asyncio.create_task(s.run(interval=60, sleep=clock.sleep))
    try:
        await s.append([line(0, "soon old", at=int((NOW - 3500) * S))])
        await clock.advance(60)
        await asyncio.sleep(0.05)
        assert texts(await s.query(LogQuery(app="/shop/web"))) == ["soon old"]
        await clock.advance(120)
        for _ in range(100):
            if not await s.query(LogQuery(app="/shop/web")):
                break
            await asyncio.sleep(0.01)
        assert await s.query(LogQuery(app="/shop/web")) == []
    finally:
        await s.close()
        await clock.advance(60)
        await asyncio.wait_for(runner, 5)


async def test_lines_of_chunks_that_overlap_in_time_come_back_in_order(store: LogStore) -> None:
    # 150 stdout lines in one append (three chunks), then the stderr lines of the same
    # seconds flushed late in two appends: chunks overlap in time
    await store.append([line(i, f"out {i}") for i in range(0, 300, 2)])
    await store.append([line(i, f"err {i}", stream="stderr") for i in range(1, 151, 2)])
    await store.append([line(i, f"err {i}", stream="stderr") for i in range(151, 300, 2)])
    await store.append([line(i, f"db {i}", task="shop_db.1", app="/shop/db")
                        for i in range(300)])
    every = [f"{'out' if i % 2 == 0 else 'err'} {i}" for i in range(300)]
    assert texts(await store.query(LogQuery(task="shop_web.1"))) == every
    assert texts(await store.query(LogQuery(app="/shop/web", tail=101))) == every[-101:]
    q = LogQuery(app="/shop/web", since=T0 + 99 * S, until=T0 + 201 * S, limit=100)
    assert texts(await store.query(q)) == every[99:199]
    q = LogQuery(app="/shop/web", since=T0 + 99 * S, until=T0 + 201 * S, tail=100)
    assert texts(await store.query(q)) == every[101:201]
    q = LogQuery(app="/shop/web", text="err", tail=3)
    assert texts(await store.query(q)) == ["err 295", "err 297", "err 299"]
    q = LogQuery(app="/shop/web", grep="^out 1[0-9]$")
    assert texts(await store.query(q)) == ["out 10", "out 12", "out 14", "out 16", "out 18"]


async def test_the_index_of_removed_lines_goes_with_them(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr("kade.logs.text_index.PART_LINES", 10)
    clock = FakeClock(NOW)
    s = await LogStore(tmp_path, Retention(max_age=3600.0), clock=clock.now).open()

    def parts() -> int:
        with contextlib.closing(sqlite3.connect(s.path)) as db:
            return int(db.execute("SELECT count(*) FROM text_parts").fetchone()[0])

    try:
        for i in range(60):  # a line a minute, five a batch
            await s.append([line(0, f"error {i}", at=int((NOW - 3600 + 60 * i) * S))]
                           + [line(0, f"ok {i}.{k}", at=int((NOW - 3600 + 60 * i) * S),
                                   seq=k + 1) for k in range(4)])
        assert parts() == 30
        await s.compact()
        assert texts(await s.query(LogQuery(app="/shop/web", text="error", tail=2))) == [
            "error 58", "error 59"]
        await clock.advance(1800)  # the older half goes, and the index of it
        await s.enforce_retention()
        assert parts() < 20
        got = texts(await s.query(LogQuery(app="/shop/web", text="error")))
        # lines go by whole chunks: a chunk (10 minutes at most) across the limit stays
        assert got[-30:] == [f"error {i}" for i in range(30, 60)] and len(got) <= 40
    finally:
        await s.close()


async def test_an_app_whose_lines_are_all_gone_leaves_no_index(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    s = await LogStore(tmp_path, Retention(max_age=3600.0), clock=clock.now).open()
    try:
        await s.append([line(1, "old words", at=int((NOW - 60) * S))])
        await clock.advance(3600)
        await s.enforce_retention()
        with contextlib.closing(sqlite3.connect(s.path)) as db:
            assert db.execute("SELECT count(*) FROM text_parts").fetchone()[0] == 0
        await s.append([line(2, "new words", at=int(NOW * S) + 3600 * S)])  # a new part
        assert texts(await s.query(LogQuery(app="/shop/web", text="words"))) == ["new words"]
    finally:
        await s.close()


async def test_a_full_text_answer_is_the_first_or_last_lines_of_many(store: LogStore) -> None:
    # more hits in one hour than are kept while reading it
    await store.append([line(0, f"hit {i}", task=f"shop_web.{i % 3}", at=T0 + i * 100_000)
                        for i in range(12_000)])
    got = await store.query(LogQuery(app="/shop/web", text="hit", limit=5))
    assert texts(got) == [f"hit {i}" for i in range(5)]
    got = await store.query(LogQuery(app="/shop/web", text="hit", tail=5))
    assert texts(got) == [f"hit {i}" for i in range(11_995, 12_000)]
