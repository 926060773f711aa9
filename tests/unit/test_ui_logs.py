"""The logs page's own judgement, with plain values: which parameters it passes on to
/v1/logs, and the refusal it shows before anything is read."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from kade.ui.logs import admitted, api_url, log_params

NOW = 1_764_522_000.0


def test_the_form_becomes_the_api_query_without_empty_fields() -> None:
    form = [("grep", "ERROR"), ("app", "/shop/web"), ("task", ""), ("where", "level=error"),
            ("stream", "stderr"), ("q", "  "), ("where", ""), ("previous", "true"),
            ("fragment", "live_x"), ("where", "http.status=500")]
    assert log_params(form) == [("app", "/shop/web"), ("stream", "stderr"), ("grep", "ERROR"),
                                ("previous", "true"), ("where", "level=error"),
                                ("where", "http.status=500")]


def test_a_refused_query_is_named_before_anything_is_read() -> None:
    assert admitted([("app", "/shop/web"), ("grep", "ERROR|timeout")], NOW) == ""
    assert admitted([], NOW) == ""  # nothing chosen yet: the page asks for an app
    assert admitted([("stream", "stderr")], NOW) == ""
    assert admitted([("app", "/shop/web"), ("since", "10x")], NOW).startswith(
        "since: '10x' is neither a duration ago")
    assert admitted([("app", "/shop/web"), ("task", "shop_web.a")], NOW).startswith(
        "app, task: give exactly one")
    assert admitted([("app", "/shop/web"), ("where", "level")], NOW).startswith(
        "where: 'level' needs =, != or ~")
    assert admitted([("app", "/shop/web"), ("tail", "20000")], NOW) == "tail: at most 10000"


def test_links_to_the_api_keep_every_filter_encoded() -> None:
    url = api_url("/v1/logs", [("app", "/shop/web"), ("grep", "a&b=c d"), ("where", "x=1"),
                               ("where", "y~z")], download="1")
    parts = urlsplit(url)
    assert parts.path == "/v1/logs"
    assert parse_qsl(parts.query) == [("app", "/shop/web"), ("grep", "a&b=c d"),
                                      ("where", "x=1"), ("where", "y~z"), ("download", "1")]
