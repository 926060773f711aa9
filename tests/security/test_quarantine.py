"""A record that cannot load never stops kade: written straight into a stopped kade's
`state.db` (as an older kade, a hand edit or a bug may leave it), it is quarantined and
reported on the next start, the rest runs, and the user can replace or delete it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kade.client import ClientError
from tests.integration.harness import Kade, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

REASON = "mem: Input should be a valid number"
HEALTH = {"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 1,
          "timeoutSeconds": 2, "gracePeriodSeconds": 10, "maxConsecutiveFailures": 3}


def site(app_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": app_id, "instances": 1, "cpus": 0.01, "mem": 16,
            "container": {"docker": {"image": "kade/site:1"}}, "healthChecks": [HEALTH],
            **extra}


def write_record(data_dir: Path, key: str, value: bytes) -> int:
    """Put `key` into a stopped kade's store as its own write would (kv row, change log,
    revision), and return the revision it got."""
    db = sqlite3.connect(data_dir / "state.db")
    try:
        with db:
            (rev,) = db.execute("SELECT revision + 1 FROM meta").fetchone()
            db.execute("INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev, version) "
                       "VALUES (?, ?, ?, ?, 1)", (key, value, rev, rev))
            db.execute("INSERT INTO log (rev, key, value, create_rev, version) "
                       "VALUES (?, ?, ?, ?, 1)", (rev, key, value, rev))
            db.execute("UPDATE meta SET revision = ?", (rev,))
    finally:
        db.close()
    return int(rev)


def unreadable(app_id: str) -> bytes:
    """What kade stored for `"mem": Infinity` before admission refused it: `mem` is null."""
    return json.dumps(site(app_id, mem=None)).encode()


def listed(kade: Kade) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in kade.get("/v1/apps")["apps"]}


def deployment_succeeded(kade: Kade, app_id: str) -> bool:
    deps = kade.get("/v1/deployments", app=app_id)["deployments"]
    return bool(deps) and deps[0]["status"] == "succeeded"


def first_quarantine_event(kade: Kade, since: int) -> dict[str, Any]:
    buffer = b""
    chunks: Iterator[bytes] = kade.client.stream("/v1/events", since=since)
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            message, buffer = buffer.split(b"\n\n", 1)
            lines = dict(line.split(": ", 1) for line in message.decode().splitlines()
                         if ": " in line and not line.startswith(":"))
            if lines.get("event") == "quarantine":
                chunks.close()  # type: ignore[attr-defined]
                return dict(json.loads(lines["data"]))
    raise AssertionError("the event stream ended without a quarantine event")


@pytest.fixture
def kade(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade")
    try:
        yield k.start()
    finally:
        k.cleanup()


def test_an_unreadable_app_is_quarantined_and_kade_runs_on(kade: Kade) -> None:
    kade.deploy(site("/sec/good"))
    [before] = kade.wait_healthy("/sec/good", 1)
    assert kade.stop() == 0
    broken_rev = write_record(kade.data_dir, "apps/sec/broken", unreadable("/sec/broken"))
    write_record(kade.data_dir, "apps/sec/fixme", unreadable("/sec/fixme"))

    kade.start()  # up: the scheduler, the deployer, the catalog and the agent run on

    apps = listed(kade)
    broken = apps["/sec/broken"]
    assert broken["status"] == "quarantined"
    assert broken["quarantine"]["reason"] == REASON
    assert broken["quarantine"]["message"] == f"apps/sec/broken: {REASON}"
    [after] = kade.wait_healthy("/sec/good", 1)  # adopted, untouched
    assert after["containerId"] == before["containerId"]
    assert [q["key"] for q in kade.get("/v1/quarantine")["quarantined"]] == [
        "apps/sec/broken", "apps/sec/fixme"]
    event = first_quarantine_event(kade, since=broken_rev - 1)
    assert (event["key"], event["reason"]) == ("apps/sec/broken", REASON)

    kade.deploy(site("/sec/new"))  # planned, run and judged as usual
    kade.wait_healthy("/sec/new", 1)
    wait_for(lambda: deployment_succeeded(kade, "/sec/new"), 60, "the deployment judged")

    out = subprocess.run([sys.executable, "-m", "kade", "apps", "--api-addr", kade.addr],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "200", "KADE_TOKEN": kade.token})
    assert out.returncode == 0, out.stderr
    assert f"quarantined: {REASON}" in out.stdout and "/sec/good" in out.stdout

    with pytest.raises(ClientError, match=f"cannot be read .*{REASON}") as refused:
        kade.client.post("/v1/apps/sec/broken/scale", {"instances": 2})
    assert refused.value.status == 409

    kade.deploy(site("/sec/fixme"))  # a valid definition replaces it
    kade.wait_healthy("/sec/fixme", 1)
    assert kade.client.delete("/v1/apps/sec/broken") == {"deleted": "/sec/broken"}
    assert sorted(listed(kade)) == ["/sec/fixme", "/sec/good", "/sec/new"]
    assert kade.get("/v1/quarantine") == {"quarantined": []}
    assert all(a["status"] == "running" for a in listed(kade).values())
    assert kade.log.read_text().count("quarantined apps/sec/broken (revision") == 1
