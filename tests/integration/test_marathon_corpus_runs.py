"""A few real Marathon definitions (tests/corpus/marathon) run by a real `kade up`.

No registry can be reached here, so images are replaced by the local `kade/busybox` and the
commands by ones that serve on the same ports; what each definition says about ports and
networks is kept as published. The fetched command app keeps its command unchanged: its URI is
served by a local HTTP server with an archive of the same name and layout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Kade, wait_for

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "marathon"
pytestmark = pytest.mark.timeout(240)


def corpus(name: str, **changes: Any) -> dict[str, Any]:
    app: dict[str, Any] = json.loads((CORPUS / name).read_text())
    app.update(changes)
    return app


def with_image(app: dict[str, Any], cmd: str) -> dict[str, Any]:
    app["container"]["docker"]["image"] = "kade/busybox"
    app["container"]["docker"]["forcePullImage"] = False
    return {**app, "cmd": cmd, "mem": 32, "cpus": 0.05, "instances": 1}


def text(port: int, path: str = "/") -> str:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except httpx.HTTPError:
        return ""
    return r.text if r.status_code == 200 else ""


def serve(port: str, body: str) -> str:
    """A shell snippet: busybox httpd answering `body` on `port` (inside the container)."""
    return (f"mkdir -p /w{port} && echo {body} > /w{port}/index.html && "
            f"httpd -p {port} -h /w{port}")


@pytest.fixture
def kade(tmp_path: Path) -> Iterator[Kade]:
    k = Kade(tmp_path / "kade")
    try:
        yield k.start()
    finally:
        k.cleanup()


def test_container_port_zero_legacy_ports_and_bridged_definitions_serve(kade: Kade) -> None:
    # FundingCircle/eremetic: containerPort 8000, and containerPort 0 = the host port
    eremetic = with_image(corpus("public-fundingcircle-eremetic.json"),
                          serve("8000", "eremetic") + " && " + serve("$PORT1", "zero") +
                          " && sleep 3600")
    # amuraru/docker-dynamic-ports: "ports": [0, 0, 0] on the host network
    dynamic = with_image(corpus("public-amuraru-docker-dynamic-ports.json"),
                         " && ".join(serve(f"$PORT{i}", f"port{i}") for i in range(3)) +
                         " && sleep 3600")
    # marathon-lb's bridged nginx backend
    bridged = with_image(corpus("marathon-lb-docker_bridge.json"),
                         serve("80", "nginx-docker-bridge") + " && sleep 3600")
    for app in (eremetic, dynamic, bridged):
        kade.deploy(app)
    [task] = kade.wait_healthy("/eremetic", 1)
    assert len(task["ports"]) == 2
    assert wait_for(lambda: text(task["ports"][0]), 30, "eremetic's port") == "eremetic\n"
    assert wait_for(lambda: text(task["ports"][1]), 30, "the port 0 mapping") == "zero\n"
    [task] = kade.wait_healthy("/dynamic-ports", 1)
    assert len(task["ports"]) == 3
    for i, port in enumerate(task["ports"]):
        assert wait_for(lambda p=port: text(p), 30, f"port {i}") == f"port{i}\n"
    [task] = kade.wait_healthy("/nginx-docker-bridge", 1)
    assert wait_for(lambda: text(task["ports"][0]), 30, "nginx") == "nginx-docker-bridge\n"


def test_ip_address_puts_the_task_on_its_named_docker_network(kade: Kade) -> None:
    """marathon-lb's IP-per-container backend: `ipAddress.networkName` is the Docker network."""
    created = subprocess.run(["docker", "network", "create", "--label", "kadetest=1", "dcos"],
                             capture_output=True, text=True).returncode == 0
    try:
        app = with_image(corpus("marathon-lb-docker_ippc.json"),
                         serve("80", "nginx-docker-ippc") + " && sleep 3600")
        kade.deploy(app)
        [task] = kade.wait_healthy("/nginx-docker-ippc", 1)
        assert wait_for(lambda: text(task["ports"][0]), 30, "the app") == "nginx-docker-ippc\n"
        info = json.loads(subprocess.run(["docker", "inspect", task["containerId"]],
                                         capture_output=True, text=True, check=True).stdout)[0]
        assert list(info["NetworkSettings"]["Networks"]) == ["dcos"]
    finally:
        kade.cleanup()
        if created:
            subprocess.run(["docker", "network", "rm", "dcos"], capture_output=True)


# -- a command app with `uris`, as published ------------------------------------------------

SERVER_SCRIPT = """#!/bin/sh
# stands in for the released binary: `--listen ":PORT"`, answers /ping
mkdir -p www && echo pong > www/ping
exec busybox httpd -f -p "127.0.0.1:${2#:}" -h www
"""


@pytest.fixture
def release(tmp_path: Path) -> Iterator[str]:
    """An HTTP server with simple-webserver's release archive, at the published path."""
    root = tmp_path / "served"
    path = root / "andygrunwald/simple-webserver/releases/download/v0.0.1"
    path.mkdir(parents=True)
    with tarfile.open(path / "simple-webserver-v0.0.1-linux-amd64.tar.gz", "w:gz") as tar:
        data = SERVER_SCRIPT.encode()
        info = tarfile.TarInfo("simple-webserver-v0.0.1-linux-amd64/simple-webserver")
        info.size, info.mode = len(data), 0o644  # the app's cmd runs chmod +x itself
        tar.addfile(info, io.BytesIO(data))
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_command_app_runs_what_its_uris_fetch(release: str) -> None:
    """Unchanged, the command `cd`s into the fetched directory as `nobody`: a shell does that
    from `/`, through every directory above (so not under the test's private tmp dir)."""
    app = corpus("public-andygrunwald-simple-webserver.json")
    app["uris"] = [u.replace("https://github.com", release) for u in app["uris"]]
    top = Path(tempfile.mkdtemp(prefix="kadetest-fetch-"))
    top.chmod(0o711)
    k = Kade(top / "kade", driver="exec")
    try:
        k.start()
        k.deploy({**app, "mem": 16, "cpus": 0.01})
        [task] = wait_for(lambda: k.running_tasks("/simple-webserver"), 60, "the task")
        assert wait_for(lambda: text(task["ports"][0], "/ping"), 30, "/ping") == "pong\n"
    finally:
        k.cleanup()
        for proc in Path("/proc").iterdir():  # the task's processes
            try:
                environ = (proc / "environ").read_bytes() if proc.name.isdigit() else b""
            except OSError:
                continue
            if f"KADE_NODE={k.node}".encode() in environ.split(b"\0"):
                with contextlib.suppress(OSError):
                    os.killpg(int(proc.name), signal.SIGKILL)
        shutil.rmtree(top, ignore_errors=True)


def test_a_fetch_that_fails_is_the_tasks_failure_reason(release: str, tmp_path: Path) -> None:
    app = corpus("marathon-examples-Rails.json")
    uri = app["fetch"][0]["uri"].replace("http://downloads.mesosphere.com", release)
    app["fetch"][0]["uri"] = uri
    k = Kade(tmp_path / "kade", driver="exec")
    try:
        k.start()
        k.deploy({**app, "mem": 16, "cpus": 0.01})
        failure = wait_for(lambda: k.app("/hello-rails").get("lastTaskFailure"), 60,
                           "the task's failure")
        assert failure["message"] == f"fetch {uri}: HTTP 404"
        assert not k.running_tasks("/hello-rails")
    finally:
        k.cleanup()
