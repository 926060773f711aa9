"""A system app ("type": "system") through a real `kade up`: one task on the node, a
deployment that succeeds, a new version rolled out, and `instances` refused by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kade.client.http import ClientError
from tests.integration.harness import Kade, wait_for


@pytest.fixture
def exec_kade(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade", driver="exec")
    try:
        yield k.start()
    finally:
        k.cleanup()


def exporter(text: str) -> dict[str, object]:
    return {"id": "/ops/exporter", "type": "system", "cpus": 0.01, "mem": 16,
            "cmd": f"mkdir -p www && echo {text} > www/index.html && "
                   "exec busybox httpd -f -p 127.0.0.1:$PORT0 -h www",
            "healthChecks": [{"protocol": "HTTP", "intervalSeconds": 1, "timeoutSeconds": 2}]}


def succeeded(k: Kade, version: str) -> dict[str, object] | None:
    deployments = k.get("/v1/deployments", app="/ops/exporter")["deployments"]
    return next((d for d in deployments if d["version"] == version
                 and d["status"] == "succeeded"), None)


def test_a_system_app_runs_on_the_node_and_rolls_out(exec_kade: Kade) -> None:
    k = exec_kade
    first = k.deploy(exporter("one"))
    (task,) = k.wait_healthy("/ops/exporter", 1)
    assert httpx.get(f"http://127.0.0.1:{task['ports'][0]}/", timeout=5).text.strip() == "one"
    wait_for(lambda: succeeded(k, str(first["version"])), 60, "the deployment to succeed")

    second = k.deploy(exporter("two"))
    (task,) = k.wait_healthy("/ops/exporter", 1)
    assert httpx.get(f"http://127.0.0.1:{task['ports'][0]}/", timeout=5).text.strip() == "two"
    wait_for(lambda: succeeded(k, str(second["version"])), 60, "the new version to succeed")
    assert k.app("/ops/exporter")["type"] == "system"

    with pytest.raises(ClientError) as refused:
        k.deploy({**exporter("three"), "instances": 3})
    assert refused.value.status == 422
    assert "instances: 3 does not apply to a system app" in str(refused.value)
