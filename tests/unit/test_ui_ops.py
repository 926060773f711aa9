"""The operator pages' own judgement, with plain values: what a search finds, how the KV
tree is folded into folders, what an export holds, how alerts are ordered."""

from __future__ import annotations

import pytest

from kade.alerts.state import Alert
from kade.api.logs import attachment
from kade.templates.encode import export_tree
from kade.ui.kv_pages import Child, children, crumbs
from kade.ui.ops import MAX_RESOLVED, alert_groups, matching
from kade.ui.services import route_rows


def test_a_search_needs_every_word_and_is_bounded() -> None:
    apps = [("/shop/web", "running"), ("/shop/db", "running"), ("/blog/web", "deploying")]
    assert matching("web", apps) == ([("/shop/web", "running"), ("/blog/web", "deploying")],
                                     False)
    assert matching("SHOP web", apps) == ([("/shop/web", "running")], False)
    assert matching("deploying", apps) == ([("/blog/web", "deploying")], False)
    assert matching("   ", apps) == ([], False)
    found, more = matching("a", ((f"app{i}", "") for i in range(1000)), limit=3)
    assert found == [("app0", ""), ("app1", ""), ("app2", "")] and more


def test_a_folder_lists_its_subfolders_then_its_keys() -> None:
    keys = [("app/conf/greeting", 5, 7), ("app/conf/x/y", 1, 8), ("app/db", 2, 9),
            ("app/a", 0, 3), ("app/", 0, 2)]
    assert children("app/", keys) == [
        Child("conf/", "app/conf/", True), Child("a", "app/a", False, 0, 3),
        Child("db", "app/db", False, 2, 9)]
    assert [c.name for c in children("", keys)] == ["app/"]


def test_crumbs_link_every_folder_above() -> None:
    assert crumbs("") == [("kv", "/ui/kv/")]
    assert crumbs("a/b/c") == [("kv", "/ui/kv/"), ("a/", "/ui/kv/a/"), ("b/", "/ui/kv/a/b/"),
                               ("c", "/ui/kv/a/b/c")]
    assert crumbs("a/b/")[-1] == ("b/", "/ui/kv/a/b/")
    assert crumbs("a b/c?d")[-1] == ("c?d", "/ui/kv/a%20b/c%3Fd")


def test_an_export_is_the_tree_under_the_prefix() -> None:
    pairs = [("app/conf/greeting", b"hello"), ("app/db", "h\u00e9".encode())]
    assert export_tree("app/", pairs) == {"conf": {"greeting": "hello"}, "db": "h\u00e9"}
    with pytest.raises(ValueError, match=r"app/bin: a binary value cannot be exported"):
        export_tree("app/", [("app/bin", b"\xff\xfe")])


def test_a_download_is_named_by_safe_characters_only() -> None:
    """A key or app id may hold quotes, line breaks or any script: the header never does."""
    assert attachment("app/conf/", suffix="json") == 'attachment; filename="app-conf.json"'
    assert attachment("logs", "/shop/web", "20261130T170000Z", suffix="txt") == (
        'attachment; filename="logs-shop-web-20261130T170000Z.txt"')
    assert attachment('a"b\r\nc/', suffix="yaml") == 'attachment; filename="a-b-c.yaml"'
    assert attachment("\u65e5\u672c/", suffix="json") == 'attachment; filename="download.json"'


def _alert(state: str, at: float, resolved: float | None = None) -> Alert:
    return Alert(rule="cluster/r", fingerprint=f"f{at}", labels={"n": str(at)},
                 state=state, active_at=at, resolved_at=resolved, last_seen=at)  # type: ignore[arg-type]


def test_alerts_are_grouped_firing_oldest_first_resolved_latest_first() -> None:
    alerts = [_alert("firing", 5), _alert("firing", 1), _alert("pending", 3),
              *(_alert("resolved", i, resolved=100 + i) for i in range(MAX_RESOLVED + 5))]
    groups = alert_groups(alerts)
    assert [a.active_at for a in groups["firing"]] == [1, 5]
    assert [a.active_at for a in groups["pending"]] == [3]
    assert len(groups["resolved"]) == MAX_RESOLVED
    assert groups["resolved"][0].resolved_at == 100 + MAX_RESOLVED + 4


def test_routes_are_shown_highest_priority_first_with_their_servers() -> None:
    table = {"routers": [{"name": "a", "rule": "Host(`a`)", "service": "s1", "app": "/a"},
                         {"name": "b", "rule": "Host(`b`)", "service": "s2", "app": "/b",
                          "priority": 10, "tls": True}],
             "services": {"s1": {"servers": [{"url": "http://10.0.0.1:80"}]}}}
    rows = route_rows(table)
    assert [(r["name"], r["priority"], r["tls"], r["servers"]) for r in rows] == [
        ("b", 10, True, []), ("a", 0, False, ["http://10.0.0.1:80"])]
