"""What `kade nodes` and `kade node drain` print, from the API's answers."""

from __future__ import annotations

from typing import Any

from kade.cli.nodes import attributes_text, json_lines, progress_line


def drain(left: int, moving: int, done: int, kept: int = 0, complete: bool = False,
          passed: bool = False) -> dict[str, Any]:
    return {"tasks": {"total": left + moving + done + kept, "left": left, "moving": moving,
                      "done": done, "kept": kept},
            "complete": complete, "deadline": "2026-11-30T12:05:00.000Z",
            "deadlinePassed": passed}


def test_ndjson_cut_anywhere_with_keepalives() -> None:
    chunks = [b'{"a": 1}\n{"b"', b': 2}\n', b"\n", b'{"c": [3]}\n']
    assert list(json_lines(chunks)) == [{"a": 1}, {"b": 2}, {"c": [3]}]


def test_progress_lines() -> None:
    assert progress_line({"node": "n1", "status": "draining", "drain": drain(2, 1, 3)}) == (
        "n1: draining, 2 left, 1 moving, 3 done (deadline 2026-11-30T12:05:00.000Z)")
    assert progress_line({"node": "n1", "status": "draining",
                          "drain": drain(1, 0, 0, kept=1, passed=True)}) == (
        "n1: draining, 1 left, 0 moving, 0 done, 1 kept (deadline passed)")
    assert progress_line({"node": "n1", "status": "drained",
                          "drain": drain(0, 0, 3, kept=1, complete=True)}) == (
        "n1: drained, 3 moved, 1 kept")
    assert progress_line({"node": "n1", "status": "ready", "drain": None}) == (
        "n1: ready, no drain")


def test_the_zone_comes_first_among_attributes() -> None:
    assert attributes_text({"rack": "r1", "az": "1a", "disk": "ssd"}) == (
        "az=1a,disk=ssd,rack=r1")
    assert attributes_text({}) == ""
