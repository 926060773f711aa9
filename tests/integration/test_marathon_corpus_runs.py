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
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from kade.admission import ContainerPolicy, admit
from kade.spec.groups import is_group, resolve_id
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


@contextlib.contextmanager
def http_files(root: Path) -> Iterator[str]:
    """An HTTP server of the files under `root`: where fetched URIs point instead of the
    internet."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
    with http_files(root) as url:
        yield url


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
        k.cleanup()  # kade stopped, and its command apps' processes
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


# -- every admitted definition that fits one Docker host, deployed together ------------------

# Docker apps, deployed at once on one kade, images replaced by `kade/busybox` serving each of
# their TCP ports (the definitions above run in their own tests). Two ask for health checks that
# run curl inside the image, which the stand-in has not: they are checked running and serving.
# Not here: higino/bind-server's privileged container, which a Docker Engine that itself runs
# in a container (as here) cannot start.
TOGETHER = [
    "marathon-docs-basics-3-docker.json", "marathon-docs-native-docker-inky.json",
    "marathon-examples-Docker.json", "marathon-examples-Tomcat-Docker.json",
    "marathon-examples-bridge.json", "marathon-lb-1-nginx.json",
    "marathon-lb-1-nginx-marathon1.5.json", "marathon-lb-1.9-docker_bridge.json",
    "marathon-lb-1.9-ucr_host.json", "marathon-lb-docker_host.json",
    "marathon-lb-ucr_bridge.json", "marathon-lb-ucr_host.json", "marathon-lb-ucr_ippc.json",
    "public-abhayaggarwal-cd-demo.json", "public-alanbover-grafana-dcos.json",
    "public-alanniu99-movie-microservice.json", "public-anners-cat-service.json",
    "public-anthonymoralez-sa-dcos-example.json", "public-arangodb-zdf-lobby-radar-restore.json",
    "public-arthurstrokov-eureka-server.json", "public-aslanbakirov-fibonacci-service.json",
    "public-auduny-opstest.json", "public-bankofse-mon-accounts.json",
    "public-capgemini-mesos-ui.json", "public-containersolutions-cd-demo-app.json",
    "public-generalelectric-dcosb-cassandra.json", "public-globallogic-robotshop-web.json",
    "public-henriquemcastro-mesos-ui.json", "public-hulikeji-kafka.json",
    "public-jessezhen-petclinic.json",
    "public-laisky-go-fluentd.json", "public-los-essnet-odile.json",
    "public-luganotechtalks-newscron-crawler.json", "public-schibsted-polyglot-api.json",
    "public-sergeydz-jenkins-status-api.json", "public-seventy-two-tweeter-go.json",
    "public-tracyhe-weather-service.json",
]
CURL_CHECKS = {"/bridged-webapp", "/eureka-server"}
# Each asks for host port 80 (the router also 443): deployed one after the other.
PORT_80 = ["public-ack-mesosphere-router.json", "public-higino-simplewebapp.json",
           "public-simonpnorra-cd-demo-app.json", "public-stevelasker-dockercon-group.json"]
DOCKER_NETWORKS = ("dcos", "microservice")  # named by ipAddress/networks/a network parameter


def body_of(app_id: str) -> str:
    return app_id.strip("/").replace("/", "-")


def stand_in(app: dict[str, Any], app_id: str) -> tuple[str, list[int]]:
    """A busybox command serving what the app's own would: each TCP port (inside the container
    where a port mapping says so), with a file at each HTTP health check's path. Returns the
    command and the indexes of the ports it serves."""
    spec = admit({**app, "id": app_id}, policy=ContainerPolicy.permissive()).app
    body, parts, served = body_of(app_id), [], []
    for p in spec.ports():
        if "tcp" not in p.protocol:
            continue
        port = str(p.container_port) if p.container_port else f"$PORT{p.index}"
        www = f"/w{p.index}"
        files = [f"mkdir -p {www} && echo {body} > {www}/index.html"]
        files += [f"mkdir -p {www}{posixpath.dirname(hc.path)} && echo {body} > {www}{hc.path}"
                  for hc in spec.health_checks
                  if hc.kind == "HTTP" and (hc.port_index or 0) == p.index and hc.path != "/"]
        parts.append(" && ".join([*files, f"httpd -p {port} -h {www}"]))
        served.append(p.index)
    return " && ".join([*parts, "sleep 3600"]), served


class Runs:
    """The definitions of one kade, changed only where this machine differs from theirs: the
    image, the command serving their ports, small cpus/mem, host paths under the test's
    directory, fetched URIs from a local server and the host a `hostname` constraint names.
    Ids shared by two files get a suffix."""

    def __init__(self, hostpaths: Path, served_at: str, node: str) -> None:
        self.hostpaths, self.served_at, self.node = hostpaths, served_at, node
        self.ports: dict[str, list[int]] = {}  # app id -> indexes of the ports it serves

    def app(self, app: dict[str, Any], app_id: str | None = None) -> dict[str, Any]:
        given = app_id or resolve_id(app["id"], "/")
        full = given
        while full in self.ports:
            full += "-2"
        app.pop("args", None)
        cmd, self.ports[full] = stand_in(app, full)
        app = with_image(app, cmd)
        app.update(cpus=0.01, mem=16)
        if full != given:
            app["id"] = full
        for volume in app["container"].get("volumes") or []:
            if "hostPath" in volume:
                path = self.hostpaths / volume["hostPath"].strip("/")
                path.mkdir(parents=True, exist_ok=True)
                volume["hostPath"] = str(path)
        if app.get("uris"):
            app["uris"] = [self.local(u) for u in app["uris"]]
        for entry in app.get("fetch") or []:
            entry["uri"] = self.local(entry["uri"])
        app["constraints"] = [[f, op, self.node] if f == "hostname" and len(rest) == 1
                              else [f, op, *rest] for f, op, *rest in app.get("constraints") or []]
        return app

    def local(self, uri: str) -> str:
        return self.served_at + "/" + uri.split("://", 1)[1].partition("/")[2]

    def group(self, group: dict[str, Any], parent: str = "/") -> dict[str, Any]:
        gid = resolve_id(group["id"], parent)
        group["apps"] = [self.app(a, resolve_id(a["id"], gid)) | {"id": a["id"]}
                         for a in group.get("apps", [])]
        group["groups"] = [self.group(g, gid) for g in group.get("groups", [])]
        return group


def loaded(name: str) -> dict[str, Any]:
    data = json.loads((CORPUS / name).read_text())
    return data[0] if isinstance(data, list) else data  # a list of one app


def serves(k: Kade, runs: Runs, app_id: str) -> list[int]:
    """The app's task turned healthy (running, for curl checks) and answers on each port its
    command serves; its host ports."""
    if app_id in CURL_CHECKS:
        [task] = wait_for(lambda: k.running_tasks(app_id), 90, f"a task of {app_id}")
    else:
        [task] = k.wait_healthy(app_id, 1)
    for i in runs.ports[app_id]:
        port = task["ports"][i]
        assert wait_for(lambda p=port: text(p), 30, f"{app_id} on {port}") == (
            body_of(app_id) + "\n")
    return list(task["ports"])


def containers_of(k: Kade, app_id: str) -> list[str]:
    return subprocess.run(["docker", "ps", "-q", "--filter", f"label=kade.node={k.node}",
                           "--filter", f"label=kade.app-id={app_id}"],
                          capture_output=True, text=True, check=True).stdout.split()


def test_every_docker_definition_that_fits_one_host_runs(tmp_path: Path) -> None:
    hostpaths, root = tmp_path / "hostpaths", tmp_path / "served"
    (root / "90d2a58b7f59").mkdir(parents=True)
    (root / "90d2a58b7f59/.dockercfg").write_text("{}")  # anners/cat-service's credentials
    created = [n for n in DOCKER_NETWORKS if subprocess.run(
        ["docker", "network", "create", "--label", "kadetest=1", n],
        capture_output=True).returncode == 0]
    k = Kade(tmp_path / "kade", extra=["--allow-devices", "--allow-caps", "SYS_ADMIN",
                                       "--allow-host-paths", str(hostpaths)])
    try:
        with http_files(root) as served_at:
            k.start()
            runs = Runs(hostpaths, served_at, k.node)
            apps = [runs.app(loaded(name)) for name in TOGETHER]
            for app in apps:
                k.deploy(app)
            for app in apps:
                serves(k, runs, resolve_id(app["id"], "/"))
            for name in PORT_80:
                data = loaded(name)
                if is_group(data):
                    k.client.request("POST", "/v2/groups", json=runs.group(data))
                    [app_id] = [a for a in runs.ports if a.startswith("/vscode/")]
                else:
                    app = runs.app(data)
                    app_id = resolve_id(app["id"], "/")
                    k.deploy(app)
                assert serves(k, runs, app_id)[0] == 80
                k.client.request("DELETE", "/v1/apps" + app_id)
                wait_for(lambda i=app_id: not containers_of(k, i), 60, f"{app_id} stopped")
                del runs.ports[app_id]
    finally:
        k.cleanup()
        for n in created:
            subprocess.run(["docker", "network", "rm", n], capture_output=True)


# Command apps and groups, on a node with both drivers, run as published but for the Python 2
# `python -m SimpleHTTPServer`, which is `python3 -m http.server` here, URIs served locally and
# cpus that fit this machine's two cores.
# basic-1 runs what its fetched script prints: here, a server. Not here: Tomcat (a JVM and
# Tomcat from the internet), basic-4 (its fetched script is not executable, on Marathon too),
# the 1.5 apps (one depends on an app the file does not define, so it waits, as it should).
UNCHANGED = ["marathon-docs-basics-0.json", "marathon-docs-app-simple.json",
             "marathon-docs-app-check-http-example.json"]
PYTHON2 = ["marathon-examples-PythonSimpleHTTPServer.json", "marathon-examples-labels.json"]
FETCHED = ["marathon-docs-basics-1.json", "marathon-docs-basics-2.json",
           "marathon-docs-basics-3-cache.json"]
COOL_SCRIPT = '#!/bin/sh\nexec python3 -m http.server "$PORT0"\n'
PRINTS_A_SERVER = '#!/bin/sh\necho python3 -m http.server "$PORT0"\n'


def python3(app: dict[str, Any]) -> dict[str, Any]:
    return {**app, "cmd": app["cmd"].replace("python -m SimpleHTTPServer",
                                             "python3 -m http.server")}


def small(app: dict[str, Any]) -> dict[str, Any]:
    return {**app, "cpus": 0.01}


def test_command_apps_and_groups_run(tmp_path: Path) -> None:
    """Unchanged commands run as `nobody` in their sandbox: the data directory lies where
    every directory above it may be crossed (not under the test's private tmp dir)."""
    root = tmp_path / "served"
    root.mkdir()
    with zipfile.ZipFile(root / "app.zip", "w") as z:  # basic-2's app.zip: app/cool-script.sh
        info = zipfile.ZipInfo("app/cool-script.sh")
        info.external_attr = 0o755 << 16
        z.writestr(info, COOL_SCRIPT)
    (root / "app").mkdir()  # basic-1's app/cool-script.sh
    (root / "app/cool-script.sh").write_text(PRINTS_A_SERVER)
    top = Path(tempfile.mkdtemp(prefix="kadetest-corpus-"))
    top.chmod(0o711)
    k = Kade(top / "kade", driver="docker,exec")
    try:
        with http_files(root) as served_at:
            k.start()
            apps = [small(loaded(n)) for n in UNCHANGED] + [
                small(python3(loaded(n))) for n in PYTHON2]
            for name in FETCHED:
                app = small(loaded(name))
                app["fetch"] = [{**f, "uri": f["uri"].replace("https://example.com", served_at)}
                                for f in app["fetch"]]
                apps.append(app)
            for app in apps:
                k.deploy(app)
            department_a = loaded("marathon-examples-Group-1.json")
            for group in [department_a, *department_a["groups"]]:
                group["apps"] = [small(python3(a)) for a in group["apps"]]
            k.client.request("POST", "/v2/groups", json=department_a)
            department_1 = loaded("marathon-examples-Group-2.json")
            database = department_1["groups"][0]["apps"][0]
            runs = Runs(tmp_path / "unused", served_at, k.node)
            department_1["groups"][0]["apps"][0] = runs.app(database) | {"id": database["id"]}
            department_1["groups"][1]["apps"][0]["cpus"] = 0.01
            k.client.request("POST", "/v2/groups", json=department_1)

            for app in apps:  # each serves its sandbox on its port, but the first two
                tasks = k.wait_healthy(resolve_id(app["id"], "/"), app.get("instances", 1))
                for task in tasks if app in apps[2:] else []:
                    assert wait_for(lambda p=task["ports"][0]: text(p), 30, app["id"])
            for app_id in ("/department-a/service-common", "/department-a/product-a/service-a",
                           "/department-a/product-a/service-b"):
                for task in k.wait_healthy(app_id, 2):
                    assert wait_for(lambda p=task["ports"][0]: text(p), 30, app_id)
            [db] = k.wait_healthy("/department-1/database/mesos-docker", 1)
            assert text(db["ports"][0]) == "department-1-database-mesos-docker\n"
            [sleeper] = k.wait_healthy("/department-1/service/basic-app-1", 1)
            assert sleeper["stagedAt"] >= db["startedAt"]  # started once its dependency ran
    finally:
        k.cleanup()  # kade stopped, and its command apps' processes
        shutil.rmtree(top, ignore_errors=True)
