"""The node's metrics store: samples kept, found by matchers, closed into chunks and
rollups, bounded by retention, and nothing appended lost across a `kill -9`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kade.metrics.promql import instant_query, range_query
from kade.metrics.series import Matcher
from kade.metrics.tsdb import SPAN, TSDB, Retention, decode, encode, rollup

HOUR = 3_600_000


class Clock:
    """Seconds, set by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fill(db: TSDB, clock: Clock, minutes: int, start: int = 0) -> None:
    for i in range(start * 6, (start + minutes) * 6):  # every 10 s
        t = i * 10_000
        clock.now = t / 1000
        db.append([({"__name__": "cpu_seconds_total", "task": "a"}, t, i * 0.5),
                   ({"__name__": "cpu_seconds_total", "task": "b"}, t, i * 0.25),
                   ({"__name__": "mem_bytes", "task": "a"}, t, 1e6 + i)])
        if i % 60 == 0:
            db.flush()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_chunks_encode_and_decode() -> None:
    times, values = [5, 15_000, 30_001], [1.5, -2.0, float("inf")]
    assert decode(encode(times, values), 3) == (times, values)


def test_a_rollup_keeps_each_minutes_last_sample() -> None:
    assert rollup([0, 30_000, 61_000, 119_000, 120_000], [1, 2, 3, 4, 5]) == (
        [30_000, 119_000, 120_000], [2, 4, 5])


def test_samples_are_found_by_matchers_across_chunks_and_head(tmp_path: Path,
                                                                clock: Clock) -> None:
    db = TSDB(tmp_path, clock=clock).open()
    _fill(db, clock, 150)  # three hours: two closed into chunks, one in the head
    [a] = db.select([Matcher.of("__name__", "=", "cpu_seconds_total"),
                     Matcher.of("task", "=", "a")], 0, 2 * HOUR)
    assert len(a.times) == 900 and a.times == sorted(a.times)
    assert a.values[-1] == 899 * 0.5
    got = db.select([Matcher.of("task", "=~", "a|b")], 45 * 60_000, 46 * 60_000)
    assert sorted(dict(s.labels)["__name__"] for s in got) == [
        "cpu_seconds_total", "cpu_seconds_total", "mem_bytes"]
    assert db.label_names() == ["__name__", "task"]
    assert db.label_values("task") == ["a", "b"]
    db.close()


def test_the_engine_reads_the_store(tmp_path: Path, clock: Clock) -> None:
    db = TSDB(tmp_path, clock=clock).open()
    _fill(db, clock, 60)
    got = instant_query(db, "sum(rate(cpu_seconds_total[5m]))", 59 * 60_000)
    assert got.samples[0].value == pytest.approx(0.075)  # type: ignore[union-attr]
    matrix = range_query(db, 'mem_bytes{task="a"}', 10 * 60_000, 50 * 60_000, 60_000)
    assert len(matrix.series[0].values) == 41
    db.close()


def test_reopening_keeps_everything(tmp_path: Path, clock: Clock) -> None:
    db = TSDB(tmp_path, clock=clock).open()
    _fill(db, clock, 40)
    db.close()
    again = TSDB(tmp_path, clock=clock).open()
    [a] = again.select([Matcher.of("task", "=", "b")], 0, HOUR)
    assert len(a.times) == 240
    _fill(again, clock, 10, start=40)  # appends go on where they stopped
    [a] = again.select([Matcher.of("task", "=", "b")], 0, HOUR)
    assert len(a.times) == 300
    again.close()


def test_out_of_order_and_repeated_samples_are_dropped(tmp_path: Path,
                                                        clock: Clock) -> None:
    db = TSDB(tmp_path, clock=clock).open()
    assert db.append([({"__name__": "x"}, 1000, 1.0), ({"__name__": "x"}, 1000, 2.0),
                      ({"__name__": "x"}, 500, 3.0)]) == 1
    db.close()


def test_retention_keeps_rollups_longer_than_raw_samples(tmp_path: Path,
                                                          clock: Clock) -> None:
    db = TSDB(tmp_path, Retention(raw=3600, rollups=3 * 3600), clock=clock).open()
    _fill(db, clock, 150)
    clock.now = 4 * 3600  # every raw sample is past its hour, rollups past 3 hours too
    db.flush()
    assert db.enforce_retention() > 0
    [a] = db.select([Matcher.of("task", "=", "a"), Matcher.of("__name__", "=", "mem_bytes")],
                    0, 3 * HOUR)
    assert a.times[0] >= HOUR  # the first hour is gone
    assert all(b - a == 60_000 for a, b in zip(a.times, a.times[1:], strict=False))
    assert len(a.times) == 90  # one value a minute from 1:00 to 2:30
    clock.now = 10 * 3600
    db.enforce_retention()
    assert db.select([Matcher.of("task", "=", "a")], 0, 3 * HOUR) == []
    db.close()


def test_nothing_appended_is_lost_across_kill_9(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from kade.metrics.tsdb import TSDB
        db = TSDB({str(tmp_path)!r}).open()
        now = int(time.time() * 1000)
        for i in range(100_000):
            db.append([({{"__name__": "n", "task": str(i % 7)}}, now + i, float(i))])
            if i % 500 == 0:
                db.flush(force=True)
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 3000:
            break
    proc.kill()
    proc.wait()
    proc.stdout.close()
    db = TSDB(tmp_path).open()
    got = sorted(v for s in db.select([Matcher.of("__name__", "=", "n")], 0, 2**62)
                 for v in s.values)
    assert got[: acked + 1] == [float(i) for i in range(acked + 1)]
    assert len(got) == len(set(got))
    db.close()


def test_spans_are_hours() -> None:
    assert SPAN == 3_600_000
