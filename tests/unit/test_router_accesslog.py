"""The access log's lines: JSON objects with the request's fields, as json.dumps writes them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kade.router.accesslog import AccessLog


def exchange(url: bytes, host: str = "www.example.com", routed: bool = True) -> Any:
    route = SimpleNamespace(name="web@docker", service=SimpleNamespace(name="web")) \
        if routed else None
    target = SimpleNamespace(url="http://10.0.0.5:31000") if routed else None
    return SimpleNamespace(route=route, target=target, client_ip="192.0.2.7", verb=b"GET",
                           host=host, url=url, bytes_out=13, start=100.0)


def lines(tmp_path: Path, *xs: Any) -> list[str]:
    log = AccessLog(str(tmp_path / "access.log"))
    for x in xs:
        log.add(x, 200, 100.0125)
    log.close()
    return (tmp_path / "access.log").read_text().splitlines()


def test_a_line_holds_the_fields_of_the_request(tmp_path: Path) -> None:
    [line] = lines(tmp_path, exchange(b"/shop?q=1"))
    entry = json.loads(line)
    assert entry["time"].endswith("Z") and len(entry["time"]) == 20
    del entry["time"]
    assert entry == {"client": "192.0.2.7", "method": "GET", "host": "www.example.com",
                     "path": "/shop?q=1", "status": 200, "bytes": 13, "duration_ms": 12.5,
                     "router": "web@docker", "service": "web",
                     "upstream": "http://10.0.0.5:31000"}


def test_a_line_is_what_json_dumps_writes_even_for_awkward_paths(tmp_path: Path) -> None:
    awkward = b'/a"b\\c\x01\xe9\t?x=</script>'
    [line] = lines(tmp_path, exchange(awkward, host="h\u00e9.example"))
    entry = json.loads(line)
    assert entry["path"] == awkward.decode("latin-1")
    assert line == json.dumps(entry, separators=(",", ":"))


def test_an_unrouted_request_has_empty_names(tmp_path: Path) -> None:
    [line] = lines(tmp_path, exchange(b"/", routed=False))
    entry = json.loads(line)
    assert (entry["router"], entry["service"], entry["upstream"]) == ("", "", "")
