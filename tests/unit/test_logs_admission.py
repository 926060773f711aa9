"""Admission of log queries: each refusal names the parameter; what passes is bounded."""

from __future__ import annotations

import pytest

from kade.admission.logs import LogQueryError, admit_log_query, query_params
from kade.logs.record import MAX_TAIL, LogQuery

NOW = 1_764_522_000.0


def admit(**params: str | list[str]) -> LogQuery:
    pairs = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
    return admit_log_query(pairs, NOW)


def refused(**params: str | list[str]) -> str:
    with pytest.raises(LogQueryError) as e:
        admit(**params)
    return str(e.value)


def test_an_app_query_with_every_filter() -> None:
    q = admit(app="shop/web", since="10m", grep="ERROR|timeout", stream="stderr",
              where=["level=error", "code!=200", "msg~time.*out"], q="payment declined",
              tail="200", previous="true")
    assert q == LogQuery(app="/shop/web", since=int((NOW - 600) * 1e9), streams=("stderr",),
                         grep="ERROR|timeout", text="payment declined",
                         where=(("level", "=", "error"), ("code", "!=", "200"),
                                ("msg", "~", "time.*out")),
                         tail=200, previous=True)


def test_times_are_durations_rfc3339_or_unix_seconds() -> None:
    assert admit(task="t.1", since="2025-11-30T17:00:00Z").since == 1_764_522_000 * 10**9
    assert admit(task="t.1", since="1764522000.5").since == 1_764_522_000_500_000_000
    assert admit(task="t.1", until="1h").until == int((NOW - 3600) * 1e9)
    assert refused(task="t.1", since="10x").startswith(
        "since: '10x' is neither a duration ago (10m, 1d) nor a time")
    assert refused(task="t.1", since="1h", until="2h") == "until: must be after since"


def test_exactly_one_of_app_and_task() -> None:
    assert refused().startswith("app, task: give exactly one")
    assert refused(app="/a", task="a.1").startswith("app, task: give exactly one")
    assert refused(app="/Shop web").startswith("app: '/Shop web' is not an app id")
    assert refused(task="../etc").startswith("task: '../etc' is not a task id")


def test_bounds() -> None:
    assert refused(app="/a", tail=str(MAX_TAIL + 1)) == f"tail: at most {MAX_TAIL}"
    assert refused(app="/a", tail="-1") == "tail: '-1' must be a whole number of lines"
    assert refused(app="/a", grep="x" * 1025).startswith("grep: is 1025 characters long")
    assert refused(app="/a", grep="(unclosed").startswith("grep: missing ")
    assert refused(app="/a", grep=r"(a)\1").endswith("(RE2 syntax: no backreferences or "
                                                     "lookaround)")
    assert refused(app="/a", q="y" * 1025).startswith("q: is 1025 characters long")
    assert refused(app="/a", q='"open') == 'q: a "quoted phrase" is not closed'
    assert refused(app="/a", where=["level"]).startswith("where: 'level' needs =, != or ~")
    assert refused(app="/a", where=["a b=c"]).startswith("where: 'a b' is not a field name")
    assert refused(app="/a", where=["m~(x"]).startswith("where: m: missing ")
    assert refused(app="/a", where=[f"f{i}=1" for i in range(17)]) == (
        "where: at most 16 filters")
    assert refused(app="/a", stream="stdin") == "stream: 'stdin' must be stdout or stderr"
    assert refused(app="/a", previous="maybe") == "previous: 'maybe' must be true or false"
    assert refused(app="/a", format="xml") == "format: 'xml' must be text or json"
    assert refused(app="/a", tial="5").startswith("tial: unknown parameter")
    assert refused(app="/a", tail=["1", "2"]) == "tail: given twice"


def test_forwarded_parameters_admit_to_the_same_query() -> None:
    q = admit(app="/shop/web", since="1764521000.123456789", until="1m", grep="E",
              q="x y", stream="stdout", where=["a=b", "c~d"], tail="5", previous="1")
    assert admit_log_query(query_params(q), NOW + 999) == q
    one = admit(task="t.1")
    assert admit_log_query(query_params(one), NOW) == one
