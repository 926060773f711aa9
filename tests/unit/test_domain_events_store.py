"""Domain events: the search language, making events from what publishers send, and the
SQLite store (dedup, filters, full text, histogram, around, retention)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kade.domain_events.query import Query, parse_query
from kade.domain_events.record import Malformed, make_event, parse_body
from kade.domain_events.store import EventStore, Retention, Window
from kade.testing.clock import FakeClock

NOW = 1_700_000_000.0


def event(i: int, kind: str = "order.paid", **body: object) -> object:
    return make_event(body={"order": i, **body}, received=NOW, message_id=f"m{i}",
                      time=NOW - 1000 + i, type=kind, source="shop", routing_key=kind)


@pytest.fixture
async def events(tmp_path: Path) -> AsyncIterator[EventStore]:
    clock = FakeClock(NOW)
    store = await EventStore(tmp_path, clock=clock.now).open()
    yield store
    await store.close()


# -- the search language -----------------------------------------------------------------

def test_query_splits_fields_columns_and_text() -> None:
    q = parse_query('order.paid customer:4711 type:order.* "card declined" app:shop-*')
    assert q.columns == (("type", "order.*"), ("source", "shop-*"))
    assert q.fields == (("customer", "4711"),)
    assert q.text == ("order.paid", "card declined")


def test_query_nested_fields_and_quoted_values() -> None:
    q = parse_query('customer.address.city:"Den Haag"')
    assert q.fields == (("customer.address.city", "Den Haag"),)


@pytest.mark.parametrize(("q", "message"), [
    ("x" * 2000, "q: is 2000 characters long"),
    ("customer:", "q: customer: needs a value"),
    ("a\x00b", "q: control characters are not allowed"),
    (" ".join(f"w{i}" for i in range(20)), "q: more than 16 terms"),
])
def test_bad_queries_say_what_is_wrong(q: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_query(q)


# -- events from publishers --------------------------------------------------------------

def test_type_and_source_come_from_properties_headers_or_body() -> None:
    e = make_event(body={"type": "order.paid", "source": "/shop"}, received=NOW)
    assert (e.type, e.source, e.time) == ("order.paid", "/shop", NOW)
    e = make_event(body={}, received=NOW, headers={"type": b"user.created"},
                   routing_key="users")
    assert e.type == "user.created"
    assert make_event(body=[1], received=NOW, routing_key="order.shipped").type == \
        "order.shipped"


def test_events_without_a_message_id_get_one_from_their_content() -> None:
    a = make_event(body={"order": 1}, received=NOW, type="t", time=NOW - 5)
    b = make_event(body={"order": 1}, received=NOW + 30, type="t", time=NOW - 5)
    c = make_event(body={"order": 2}, received=NOW, type="t", time=NOW - 5)
    assert a.message_id == b.message_id != c.message_id


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"body": {}}, "type: is required"),
    ({"body": {}, "type": "t", "time": "yesterday"}, "time: 'yesterday' is not an ISO 8601"),
    ({"body": {}, "type": "t" * 300}, "type: is 300 characters long"),
    ({"body": {}, "type": "a\nb"}, "type: control characters"),
])
def test_malformed_events_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(Malformed, match=message):
        make_event(received=NOW, **kwargs)  # type: ignore[arg-type]


def test_a_body_must_be_json() -> None:
    with pytest.raises(Malformed, match="body: is not JSON"):
        parse_body(b"<xml/>")
    with pytest.raises(Malformed, match="body: is not JSON"):
        parse_body(b'{"x": NaN}')
    assert parse_body(b'{"x": 1}') == {"x": 1}


# -- the store ---------------------------------------------------------------------------

async def test_duplicates_are_dropped_and_counted(events: EventStore) -> None:
    first = await events.append([event(i) for i in range(10)])
    again = await events.append([event(i) for i in range(5, 15)])
    assert (first.stored, first.duplicates) == (10, 0)
    assert (again.stored, again.duplicates) == (5, 5)
    stats = await events.stats()
    assert (stats["events"], stats["duplicates"]) == (15, 5)


async def test_field_filters_globs_and_full_text(events: EventStore) -> None:
    await events.append([event(1, customer=4711, note="card declined"),
                         event(2, customer=4712),
                         event(3, "order.shipped", customer=4711),
                         event(4, "user.created", customer={"city": "Den Haag"})])

    async def ids(q: str) -> list[int]:
        return sorted(e.body["order"] for e in await events.search(Window(parse_query(q))))

    assert await ids("customer:4711") == [1, 3]
    assert await ids("type:order.* customer:4711") == [1, 3]
    assert await ids("type:order.paid") == [1, 2]
    assert await ids('"card declined"') == [1]
    assert await ids("declined card") == [1]
    assert await ids("order.shipped") == [3]
    assert await ids("customer.city:Den*") == [4]
    assert await ids("customer:47*") == [1, 2, 3]
    assert await ids("nothing:here") == []
    assert await ids("customer:4711 type:order.paid declined") == [1]


async def test_field_values_of_every_json_kind(events: EventStore) -> None:
    await events.append([event(1, paid=True, total=12.5, tags=["a"]),
                         event(2, paid=False, total=7, tags=None)])

    async def ids(q: str) -> list[int]:
        return sorted(e.body["order"] for e in await events.search(
            Window(parse_query(q), since=NOW - 2000, until=NOW)))

    assert await ids("paid:true") == [1]
    assert await ids("paid:false") == [2]
    assert await ids("total:12.5") == [1]
    assert await ids("total:7") == [2]
    assert await ids("order:1*") == [1]


async def test_search_reads_a_time_range_newest_first(events: EventStore) -> None:
    await events.append([event(i) for i in range(100)])
    found = await events.search(Window(Query(), since=NOW - 1000 + 10, until=NOW - 1000 + 20))
    assert [e.body["order"] for e in found] == list(range(19, 9, -1))
    assert len(await events.search(Window(Query()), limit=7)) == 7


async def test_histogram_counts_every_interval(events: EventStore) -> None:
    await events.append([event(i) for i in range(30)])
    buckets = await events.histogram(
        Window(parse_query("type:order.*"), since=NOW - 1000, until=NOW - 1000 + 40), 10)
    assert [count for _, count in buckets] == [10, 10, 10, 0]
    with pytest.raises(ValueError, match="interval: 4001 intervals"):
        await events.histogram(Window(Query(), since=NOW - 4000, until=NOW), 1)


async def test_events_around_one(events: EventStore) -> None:
    await events.append([event(i) for i in range(20)])
    middle = (await events.search(Window(parse_query("order:10"))))[0]
    got = await events.get(middle.id)
    assert got == middle
    before, after = await events.around(middle, 3)
    assert [e.body["order"] for e in before] == [7, 8, 9]
    assert [e.body["order"] for e in after] == [11, 12, 13]


async def test_retention_by_age_and_size(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    store = await EventStore(tmp_path, Retention(max_age=500, max_bytes=10**9),
                             clock=clock.now).open()
    try:
        await store.append([event(i) for i in range(1000)])  # times NOW-1000 .. NOW-1
        left = await store.search(Window(Query()), limit=10_000)
        assert min(e.body["order"] for e in left) == 500
    finally:
        await store.close()
    small = await EventStore(tmp_path / "small", Retention(max_bytes=20_000),
                             clock=clock.now).open()
    try:
        await small.append([event(i) for i in range(400, 1000)])
        stats = await small.stats()
        assert 0 < stats["bytes"] <= 20_000
        newest = await small.search(Window(Query()), limit=1)
        assert newest[0].body["order"] == 999
    finally:
        await small.close()


async def test_follow_sees_what_is_stored_after_an_id(events: EventStore) -> None:
    await events.append([event(i) for i in range(3)])
    mark = events.last_id
    assert not await events.wait_newer(mark, 0.01)
    await events.append([event(3, "user.created"), event(4)])
    assert await events.wait_newer(mark, 0.01)
    assert [e.body["order"] for e in await events.newer(mark, parse_query("type:order.*"))] \
        == [4]


async def test_stored_events_survive_reopening(tmp_path: Path) -> None:
    store = await EventStore(tmp_path, clock=lambda: NOW).open()
    await store.append([event(i) for i in range(5)])
    await store.close()
    again = await EventStore(tmp_path, clock=lambda: NOW).open()
    try:
        assert (await again.append([event(i) for i in range(10)])).stored == 5
        assert (await again.stats())["events"] == 10
    finally:
        await again.close()


async def test_time_windows_of_text_searches_hold_when_events_come_late(
        events: EventStore) -> None:
    """Ids follow arrival, not event time: a late event (stored after newer ones) is still
    found in its hour by a full-text search bounded in time."""
    await events.append([event(i) for i in range(3000, 3600, 60)])  # an hour, in order
    await events.append([event(i) for i in range(0, 600, 60)])  # an hour earlier, late
    await events.append([event(i) for i in range(3600, 4200, 60)])
    window = Window(parse_query("order.paid"), since=NOW - 1000, until=NOW - 1000 + 600)
    found = await events.search(window)
    assert sorted(e.body["order"] for e in found) == list(range(0, 600, 60))
    counts = await events.histogram(window, 300)
    assert [n for _, n in counts] == [5, 5]
