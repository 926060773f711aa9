"""The Docker driver against the real Docker Engine, with the local kade/site images."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import pytest

from kade.drivers import (
    LABEL_TASK,
    SUPPORTED_PARAMETERS,
    DockerDriver,
    DriverError,
    LaunchSpec,
    Mount,
    WorkloadEvent,
)
from kade.drivers.docker import PullProgress, container_config
from kade.spec import AppSpec, parse_app

pytestmark = pytest.mark.timeout(120)
DOCKER_SOCK = "/var/run/docker.sock"
SITE_V1 = "<html><body><h1>kade example site, version 1</h1></body></html>\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(app: dict[str, Any], *, ports: list[int] | None = None,
           env: dict[str, str] | None = None, mounts: list[Mount] | None = None) -> LaunchSpec:
    app = {"id": "/kadetest/drv", "cpus": 0.2, "mem": 32, **app}
    spec = parse_app(app).app
    return LaunchSpec(
        task_id=f"kadetest_drv.{uuid.uuid4().hex[:12]}", app=spec, version="v1",
        spec_hash="h1", node="testnode", host="127.0.0.1", host_ports=ports or [],
        env=env or {}, mounts=mounts or [],
    )


def site(mode: str = "host", **extra: Any) -> dict[str, Any]:
    app: dict[str, Any] = {"container": {"docker": {"image": "kade/site:1"}}, **extra}
    if mode == "bridge":
        app["networks"] = [{"mode": "container/bridge"}]
        app["container"]["portMappings"] = [{"containerPort": 8080}]
    return app


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await check()
            if value:
                return value
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def driver(docker: aiodocker.Docker) -> AsyncIterator[DockerDriver]:
    """The driver under test; every container of its tests is removed afterwards."""
    d = DockerDriver(publish_ip="127.0.0.1")
    try:
        yield d
    finally:
        await d.close()
        for c in await docker.containers.list(
                all=True, filters=json.dumps({"label": [LABEL_TASK]})):
            with contextlib.suppress(aiodocker.DockerError):  # others' may vanish meanwhile
                info = await c.show()
                if info["Config"]["Labels"].get(LABEL_TASK, "").startswith("kadetest_drv."):
                    await c.delete(force=True)


async def get_text(port: int, path: str = "/index.html") -> str:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{port}{path}", timeout=2)
        return r.text if r.status_code == 200 else ""


class Events:
    """Collects a driver's events for one task in the background, from `open` on."""

    def __init__(self, driver: DockerDriver, task_id: str) -> None:
        self.seen: list[WorkloadEvent] = []
        self._subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._run(driver, task_id))

    @classmethod
    async def open(cls, driver: DockerDriver, task_id: str) -> Events:
        events = cls(driver, task_id)
        await events._subscribed.wait()
        return events

    async def _run(self, driver: DockerDriver, task_id: str) -> None:
        stream = driver.events()
        self._subscribed.set()  # its first step (below) notes the time it starts from
        async for ev in stream:
            if ev.task_id == task_id:
                self.seen.append(ev)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.seen]

    async def wait(self, kinds: list[str]) -> None:
        async def arrived() -> bool:
            return self.kinds()[:len(kinds)] == kinds and len(self.seen) >= len(kinds)
        await until(arrived, f"events {kinds}, have {self.kinds()}")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_host_mode_site_serves_and_carries_labels_and_limits(
        driver: DockerDriver, docker: aiodocker.Docker) -> None:
    port = free_port()
    spec = launch(site(labels={"team": "web"}), ports=[port], env={"PORT0": str(port)})
    lines: list[str] = []
    w = await driver.start(spec, lines.append)
    assert w.state == "running" and w.task_id == spec.task_id and w.started_at
    assert await until(lambda: get_text(port), "the site") == SITE_V1

    info = await docker.containers.container(w.id).show()
    assert info["Name"] == f"/kade-{spec.task_id}"
    labels = info["Config"]["Labels"]
    assert labels["team"] == "web"
    assert labels["kade.task-id"] == spec.task_id and labels["kade.app-id"] == "/kadetest/drv"
    assert labels["kade.spec-hash"] == "h1" and labels["kade.node"] == "testnode"
    host = info["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["CpuShares"] == 204 and host["Memory"] == 32 * 1024 * 1024
    assert host["Init"] is True and host["RestartPolicy"]["Name"] == "no"
    assert info["Config"]["StopTimeout"] == 10

    listed = {x.task_id: x for x in await driver.list()}
    assert listed[spec.task_id].state == "running"
    assert listed[spec.task_id].id == w.id

    # 143 = ended by the SIGTERM (through the init); a SIGKILL after the grace would be 137.
    assert await driver.stop(w.id, grace=30) == 143
    listed = {x.task_id: x for x in await driver.list()}
    assert listed[spec.task_id].state == "exited" and listed[spec.task_id].exit_code == 143
    await driver.remove(w.id)
    assert spec.task_id not in {x.task_id for x in await driver.list()}


async def test_bridge_mode_publishes_the_container_port(
        driver: DockerDriver, docker: aiodocker.Docker) -> None:
    port = free_port()
    spec = launch(site("bridge"), ports=[port])
    w = await driver.start(spec, lambda _: None)
    assert await until(lambda: get_text(port), "the site via bridge") == SITE_V1
    info = await docker.containers.container(w.id).show()
    assert info["HostConfig"]["PortBindings"]["8080/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert await get_text(port, "/health") == "ok\n"


async def test_container_network_mode_joins_the_named_network(
        driver: DockerDriver, docker: aiodocker.Docker) -> None:
    name = f"kadetest-net-{uuid.uuid4().hex[:8]}"
    net = await docker.networks.create({"Name": name})
    try:
        port = free_port()
        app = site("bridge")
        app["networks"] = [{"mode": "container", "name": name}]
        w = await driver.start(launch(app, ports=[port]), lambda _: None)
        assert await until(lambda: get_text(port), "the site on a user network") == SITE_V1
        info = await docker.containers.container(w.id).show()
        assert list(info["NetworkSettings"]["Networks"]) == [name]
        await driver.remove(w.id)
    finally:
        await net.delete()


async def test_events_report_start_die_destroy_in_order(
        driver: DockerDriver, docker: aiodocker.Docker) -> None:
    spec = launch({"cmd": "sleep 300", "container": {"docker": {"image": "kade/busybox"}}})
    events = await Events.open(driver, spec.task_id)
    try:
        w = await driver.start(spec, lambda _: None)
        await events.wait(["started"])
        await docker.containers.container(w.id).kill(signal="SIGKILL")
        await events.wait(["started", "exited"])
        assert events.seen[1].exit_code == 137 and events.seen[1].id == w.id
        listed = {x.task_id: x for x in await driver.list()}
        assert listed[spec.task_id].state == "exited" and listed[spec.task_id].exit_code == 137
        await driver.remove(w.id)
        await events.wait(["started", "exited", "removed"])
        assert len(events.seen) == 3
    finally:
        await events.close()


class CuttableProxy:
    """TCP 127.0.0.1 → the Docker socket; can drop every connection and refuse new ones."""

    def __init__(self) -> None:
        self.refusing = False
        self.accepted = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.accepted += 1
        up_r, up_w = await asyncio.open_unix_connection(DOCKER_SOCK)
        self.writers |= {writer, up_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.transport.abort()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self.writers -= {writer, up_w}

    def cut(self) -> None:
        for w in list(self.writers):
            w.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_events_survive_a_broken_stream_without_missing_a_die(
        driver: DockerDriver, docker: aiodocker.Docker) -> None:
    proxy = CuttableProxy()
    await proxy.start()
    watcher = DockerDriver(docker_url=f"tcp://127.0.0.1:{proxy.port}")
    spec = launch({"cmd": "sleep 300", "container": {"docker": {"image": "kade/busybox"}}})
    events = await Events.open(watcher, spec.task_id)
    try:
        w = await driver.start(spec, lambda _: None)
        await events.wait(["started"])
        proxy.refusing = True
        before = proxy.accepted
        proxy.cut()  # the engine's stream breaks; reconnects are refused for a while
        await docker.containers.container(w.id).kill(signal="SIGKILL")
        await asyncio.sleep(0.5)
        proxy.refusing = False
        await events.wait(["started", "exited"])
        assert events.seen[1].exit_code == 137
        assert proxy.accepted > before  # it did reconnect
        await asyncio.sleep(0.3)
        assert events.kinds() == ["started", "exited"]  # the replayed start is not repeated
    finally:
        await events.close()
        await watcher.close()
        await proxy.close()


async def test_exec_exit_codes_output_and_timeout(driver: DockerDriver) -> None:
    spec = launch({"cmd": "sleep 300", "container": {"docker": {"image": "kade/busybox"}}},
                  env={"GREETING": "hello"})
    w = await driver.start(spec, lambda _: None)
    ok = await driver.exec(w.id, "echo $GREETING; echo oops >&2", timeout=10)
    assert ok.exit_code == 0 and sorted(ok.output.splitlines()) == ["hello", "oops"]
    failed = await driver.exec(w.id, "exit 3", timeout=10)
    assert failed.exit_code == 3
    big = await driver.exec(w.id, "i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done",
                            timeout=10)
    assert big.exit_code == 0 and len(big.output) <= 4096 and big.output.endswith("line1999\n")
    slow = await driver.exec(w.id, "sleep 77", timeout=0.5)
    assert slow.exit_code == 124 and slow.output == "timed out after 0.5s"

    async def sleeper_gone() -> bool:
        ps = await driver.exec(w.id, "ps", timeout=10)
        return "sleep 77" not in ps.output
    await until(sleeper_gone, "the timed-out command to be killed")


async def test_signal_reaches_the_app_through_the_init(driver: DockerDriver) -> None:
    spec = launch({"cmd": "trap 'echo got-hup' HUP; echo ready; while true; do sleep 0.1; done",
                   "container": {"docker": {"image": "kade/busybox"}}})
    w = await driver.start(spec, lambda _: None)

    async def logged(text: bytes) -> bool:
        return text in b"".join([c async for c in driver.logs(w.id, follow=False, tail=None)])
    await until(lambda: logged(b"ready"), "the trap to be set")
    await driver.signal(w.id, "SIGHUP")
    await until(lambda: logged(b"got-hup"), "the app to get SIGHUP")
    await driver.stop(w.id, grace=5)
    await driver.signal(w.id, "SIGHUP")  # stopped or missing: nothing to do, no error
    await driver.signal("kadetest-no-such-container", "SIGHUP")


async def test_exec_in_a_missing_container_is_a_driver_error(driver: DockerDriver) -> None:
    with pytest.raises(DriverError):
        await driver.exec("kadetest-no-such-container", "true", timeout=5)


async def test_pull_failure_names_the_image_and_dockers_reason(driver: DockerDriver) -> None:
    spec = launch({"container": {"docker": {"image": "kade/nope:1"}}})
    lines: list[str] = []
    with pytest.raises(DriverError) as e:
        await driver.start(spec, lines.append)
    assert str(e.value).startswith("image kade/nope:1 not found and could not be pulled: ")
    assert len(str(e.value)) > len("image kade/nope:1 not found and could not be pulled: ")
    assert lines == ["pulling kade/nope:1"]


async def test_cmd_runs_in_a_shell_and_args_do_not(
        driver: DockerDriver, docker: aiodocker.Docker) -> None:
    busybox = {"container": {"docker": {"image": "kade/busybox"}}}
    with_cmd = launch({**busybox, "cmd": "echo \"$FOO\"; echo to-stderr >&2"}, env={"FOO": "bar"})
    w1 = await driver.start(with_cmd, lambda _: None)
    with_args = launch({**busybox, "args": ["echo", "$FOO", "a b"]}, env={"FOO": "bar"})
    w2 = await driver.start(with_args, lambda _: None)
    plain = launch(busybox)
    w3 = await driver.start(plain, lambda _: None)

    async def exited(wid: str) -> bool:
        info = await docker.containers.container(wid).show()
        return bool(info["State"]["Status"] == "exited")
    await until(lambda: exited(w1.id), "the cmd container to exit")
    await until(lambda: exited(w2.id), "the args container to exit")
    out = b"".join([c async for c in driver.logs(w1.id, follow=False, tail=None)])
    assert sorted(out.splitlines()) == [b"bar", b"to-stderr"]  # stdout and stderr both
    assert b"".join([c async for c in driver.logs(w2.id, follow=False, tail=None)]) == (
        b"$FOO a b\n")
    i1 = await docker.containers.container(w1.id).show()
    assert i1["Config"]["Entrypoint"] == ["/bin/sh", "-c"]
    i2 = await docker.containers.container(w2.id).show()
    assert i2["Config"]["Entrypoint"] is None and i2["Config"]["Cmd"] == ["echo", "$FOO", "a b"]
    i3 = await docker.containers.container(w3.id).show()  # neither: the image's own command
    assert i3["Config"]["Entrypoint"] is None and i3["Config"]["Cmd"] == ["/bin/sh"]


async def test_logs_tail_and_follow(driver: DockerDriver) -> None:
    spec = launch({"cmd": "echo one; echo two; echo three; sleep 1; echo four",
                   "container": {"docker": {"image": "kade/busybox"}}})
    w = await driver.start(spec, lambda _: None)
    followed = b"".join([c async for c in driver.logs(w.id, follow=True, tail=None)])
    assert followed == b"one\ntwo\nthree\nfour\n"  # follow ends when the container stops
    tail = b"".join([c async for c in driver.logs(w.id, follow=False, tail=2)])
    assert tail == b"three\nfour\n"
    with pytest.raises(DriverError):
        async for _ in driver.logs("kadetest-no-such-container", follow=False, tail=None):
            pass


async def test_leftover_container_of_the_same_task_is_replaced(driver: DockerDriver) -> None:
    spec = launch({"cmd": "sleep 300", "container": {"docker": {"image": "kade/busybox"}}})
    first = await driver.start(spec, lambda _: None)
    second = await driver.start(spec, lambda _: None)
    assert second.id != first.id and second.state == "running"
    ids = [x.id for x in await driver.list() if x.task_id == spec.task_id]
    assert ids == [second.id]


async def test_parameters_volumes_and_privileged(
        driver: DockerDriver, docker: aiodocker.Docker, tmp_path: Path) -> None:
    (tmp_path / "conf.txt").write_text("from the host\n")
    params = [
        {"key": "label", "value": "tier=backend"}, {"key": "env", "value": "EXTRA=1"},
        {"key": "hostname", "value": "kadebox"}, {"key": "workdir", "value": "/tmp"},
        {"key": "ulimit", "value": "nofile=1024:2048"}, {"key": "cap-add", "value": "NET_ADMIN"},
        {"key": "add-host", "value": "db.local:10.1.2.3"},
    ]
    app = {"cmd": "sleep 300", "networks": [{"mode": "container/bridge"}], "container": {
        "docker": {"image": "kade/busybox", "parameters": params},
        "volumes": [{"containerPath": "/conf", "hostPath": str(tmp_path), "mode": "RO"}]}}
    data = tmp_path / "data"
    data.mkdir()
    spec = launch(app, mounts=[Mount(str(data), "/data", read_only=False)])
    w = await driver.start(spec, lambda _: None)
    info = await docker.containers.container(w.id).show()
    assert info["Config"]["Labels"]["tier"] == "backend"
    assert "EXTRA=1" in info["Config"]["Env"]
    assert info["HostConfig"]["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert info["HostConfig"]["CapAdd"] == ["NET_ADMIN"]
    result = await driver.exec(
        w.id, "hostname; pwd; ulimit -n; cat /conf/conf.txt; grep db.local /etc/hosts;"
              " echo x > /data/out; (echo y > /conf/no) 2>/dev/null || echo read-only", timeout=10)
    lines = result.output.splitlines()
    assert lines[:4] == ["kadebox", "/tmp", "1024", "from the host"]
    assert lines[4].split() == ["10.1.2.3", "db.local"]
    assert lines[5:] == ["read-only"]
    assert (data / "out").read_text() == "x\n"


async def test_bad_settings_are_refused_before_anything_runs(driver: DockerDriver) -> None:
    good = launch({"container": {"docker": {"image": "kade/busybox"}}})
    # The app API rejects this key already; an app stored before must still not run half-set.
    unchecked = AppSpec.model_validate({**good.app.wire(), "container": {"docker": {
        "image": "kade/busybox", "parameters": [{"key": "env-file", "value": "x"}]}}})
    bad = replace(good, app=unchecked)
    with pytest.raises(DriverError, match="'env-file' is not supported"):
        await driver.start(bad, lambda _: None)
    tiny = launch({"mem": 4, "container": {"docker": {"image": "kade/busybox"}}})
    with pytest.raises(DriverError, match="below Docker's minimum of 6 MiB"):
        await driver.start(tiny, lambda _: None)
    assert "ulimit" in SUPPORTED_PARAMETERS
    names = {x.task_id for x in await driver.list()}
    assert bad.task_id not in names and tiny.task_id not in names


async def test_a_container_that_cannot_start_is_not_left_behind(driver: DockerDriver) -> None:
    with socket.socket() as taken:  # the host port is in use: Docker cannot publish it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spec = launch(site("bridge"), ports=[taken.getsockname()[1]])
        with pytest.raises(DriverError, match="starting kade-kadetest_drv"):
            await driver.start(spec, lambda _: None)
    assert spec.task_id not in {x.task_id for x in await driver.list()}


async def test_missing_containers_are_not_errors(driver: DockerDriver) -> None:
    assert await driver.stop("kadetest-no-such-container", grace=1) is None
    await driver.remove("kadetest-no-such-container")
    cpus, mem = await driver.resources()
    assert cpus >= 1 and mem > 100


def test_container_config_publishes_both_protocols_and_keeps_zero_limits_unset() -> None:
    spec = launch({"cpus": 0, "mem": 0, "networks": [{"mode": "container/bridge"}],
                   "container": {"docker": {"image": "x"},
                                 "portMappings": [{"containerPort": 53, "protocol": "udp,tcp"}]}},
                  ports=[31000])
    config = container_config(spec, publish_ip="10.0.0.5")
    binding = [{"HostIp": "10.0.0.5", "HostPort": "31000"}]
    assert config["HostConfig"]["PortBindings"] == {"53/udp": binding, "53/tcp": binding}
    assert "CpuShares" not in config["HostConfig"] and "Memory" not in config["HostConfig"]


def test_pull_progress_reports_overall_percent() -> None:
    p = PullProgress("redis:7")
    assert p.feed({"status": "Pulling from library/redis", "id": "7"}) is None
    assert p.feed({"status": "Downloading", "id": "a",
                   "progressDetail": {"current": 10, "total": 100}}) == "pulling redis:7: 10%"
    assert p.feed({"status": "Downloading", "id": "b",
                   "progressDetail": {"current": 60, "total": 100}}) == "pulling redis:7: 35%"
    assert p.feed({"status": "Downloading", "id": "b",
                   "progressDetail": {"current": 61, "total": 100}}) is None  # same percent
    assert p.feed({"status": "Status: Downloaded newer image for redis:7"}) == (
        "pulling redis:7: Status: Downloaded newer image for redis:7")


async def test_every_container_gets_kades_defaults(
        driver: DockerDriver, docker: aiodocker.Docker) -> None:
    spec = launch({"cmd": "sleep 300", "container": {"docker": {"image": "kade/busybox"}}})
    w = await driver.start(spec, lambda _: None)
    host = (await docker.containers.container(w.id).show())["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 1024
    assert host["LogConfig"] == {"Type": "json-file",
                                 "Config": {"max-size": "10m", "max-file": "3"}}
    assert host["CpuShares"] == 204 and host["Memory"] == 32 * 1024 * 1024
    result = await driver.exec(w.id, "grep NoNewPrivs /proc/self/status", timeout=10)
    assert result.output.split() == ["NoNewPrivs:", "1"]


async def test_an_apps_own_limits_and_log_options_replace_the_defaults(
        driver: DockerDriver, docker: aiodocker.Docker) -> None:
    params = [{"key": "pids-limit", "value": "64"}, {"key": "log-opt", "value": "max-size=1m"},
              {"key": "log-driver", "value": "json-file"}]
    spec = launch({"cmd": "sleep 300", "container": {"docker": {
        "image": "kade/busybox", "parameters": params}}})
    w = await driver.start(spec, lambda _: None)
    host = (await docker.containers.container(w.id).show())["HostConfig"]
    assert host["PidsLimit"] == 64
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert host["SecurityOpt"] == ["no-new-privileges"]


def test_namespace_and_device_parameters_reach_the_host_config() -> None:
    params = [{"key": "pid", "value": "host"}, {"key": "ipc", "value": "private"},
              {"key": "uts", "value": "host"}, {"key": "userns", "value": "host"},
              {"key": "device", "value": "/dev/fuse"},
              {"key": "device", "value": "/dev/sdb:/dev/xvdb:r"},
              {"key": "security-opt", "value": "no-new-privileges=false"}]
    spec = launch({"container": {"docker": {"image": "x", "parameters": params}}})
    host = container_config(spec)["HostConfig"]
    assert (host["PidMode"], host["IpcMode"], host["UTSMode"], host["UsernsMode"]) == (
        "host", "private", "host", "host")
    assert host["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/sdb", "PathInContainer": "/dev/xvdb", "CgroupPermissions": "r"}]
    assert host["SecurityOpt"] == ["no-new-privileges=false"]  # the app's choice, if allowed
    # admission refuses this value; a record stored before must still not run half-set
    unchecked = AppSpec.model_validate({**spec.app.wire(), "container": {"docker": {
        "image": "x", "parameters": [{"key": "device", "value": "sda"}]}}})
    with pytest.raises(DriverError, match="device: 'sda' is not /dev/host"):
        container_config(replace(spec, app=unchecked))


async def test_container_port_zero_listens_on_the_assigned_host_port(
        driver: DockerDriver) -> None:
    """Marathon: containerPort 0 in BRIDGE mode is "the same as hostPort", and so $PORT0."""
    port = free_port()
    app = {"cmd": "mkdir -p /w && echo zero > /w/index.html && exec httpd -f -p $PORT0 -h /w",
           "container": {"docker": {"image": "kade/busybox", "network": "BRIDGE",
                                    "portMappings": [{"containerPort": 0, "hostPort": 0}]}}}
    spec = launch(app, ports=[port], env={"PORT0": str(port)})
    assert container_config(spec)["ExposedPorts"] == {f"{port}/tcp": {}}
    await driver.start(spec, lambda _: None)
    assert await until(lambda: get_text(port), "the app on its host port") == "zero\n"


async def test_docker_run_flags_reach_the_container(
        driver: DockerDriver, docker: aiodocker.Docker) -> None:
    """A sample of `parameters` as `docker inspect` shows them on real containers."""
    network = f"kadetest-net-{uuid.uuid4().hex[:8]}"
    await docker.networks.create({"Name": network, "Labels": {"kadetest": "1"}})
    try:
        source = await driver.start(launch({"cmd": "sleep 300", "container": {
            "docker": {"image": "kade/busybox"}, "volumes": [
                {"containerPath": "/shared", "hostPath": f"kadetest-vol-{network}"}]}}),
            lambda _: None)
        params = [
            ("memory-swap", "64m"), ("shm-size", "16m"), ("cpuset-cpus", "0"),
            ("entrypoint", "/bin/sh"), ("network-alias", "db"), ("dns-opt", "ndots:2"),
            ("mac-address", "02:42:ac:11:00:99"), ("group-add", "4242"), ("init", "false"),
            ("read-only", "true"), ("tmpfs", "/scratch:size=1m"), ("device", "/dev/null:/dev/nil"),
            ("volumes-from", source.id), ("ulimit", "nproc=64"), ("label", "tier=db"),
            ("oom-score-adj", "100"), ("stop-timeout", "3"),
        ]
        app = {"args": ["-c", "sleep 300"], "networks": [{"mode": "container", "name": network}],
               "container": {"docker": {"image": "kade/busybox", "parameters": [
                   {"key": k, "value": v} for k, v in params]}}}
        w = await driver.start(launch(app), lambda _: None)
        info = await docker.containers.container(w.id).show()
        host, config = info["HostConfig"], info["Config"]
        assert (host["MemorySwap"], host["ShmSize"], host["CpusetCpus"]) == (
            64 << 20, 16 << 20, "0")
        assert config["Entrypoint"] == ["/bin/sh"] and config["Labels"]["tier"] == "db"
        assert "db" in info["NetworkSettings"]["Networks"][network]["Aliases"]
        assert info["NetworkSettings"]["Networks"][network]["MacAddress"] == "02:42:ac:11:00:99"
        assert host["DnsOptions"] == ["ndots:2"] and host["GroupAdd"] == ["4242"]
        assert host["Init"] is False and host["ReadonlyRootfs"] is True
        assert host["Tmpfs"] == {"/scratch": "size=1m"} and host["VolumesFrom"] == [source.id]
        assert host["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/nil",
                                    "CgroupPermissions": "rwm"}]
        assert host["OomScoreAdj"] == 100 and config["StopTimeout"] == 3
        result = await driver.exec(
            w.id, "ls -d /shared; test -c /dev/nil && echo device; "
                  "(touch /x 2>/dev/null || echo read-only); ulimit -u", timeout=10)
        assert result.output.split() == ["/shared", "device", "read-only", "64"]
    finally:
        for c in await docker.containers.list(
                all=True, filters=json.dumps({"label": [LABEL_TASK]})):
            with contextlib.suppress(aiodocker.DockerError):
                if (await c.show())["Config"]["Labels"][LABEL_TASK].startswith("kadetest_drv."):
                    await c.delete(force=True)
        await (await docker.networks.get(network)).delete()
        with contextlib.suppress(aiodocker.DockerError):
            await (await docker.volumes.get(f"kadetest-vol-{network}")).delete()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server with an archive and a script, as an app's `fetch` names them."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "run.sh").write_text("#!/bin/sh\necho ran\n")
    with tarfile.open(root / "app.tgz", "w:gz") as tar:
        data = b"hello from the tgz\n"
        info = tarfile.TarInfo("app/hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(SimpleHTTPRequestHandler, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_docker_apps_fetch_is_in_its_mesos_sandbox(
        driver: DockerDriver, served: str) -> None:
    """Marathon fetches for Docker apps too: the files are at $MESOS_SANDBOX."""
    spec = launch({"cmd": "sleep 300", "container": {"docker": {"image": "kade/busybox"}},
                   "fetch": [{"uri": f"{served}/app.tgz"},
                             {"uri": f"{served}/run.sh", "executable": True}]})
    w = await driver.start(spec, lambda _: None)
    result = await driver.exec(
        w.id, "echo $MESOS_SANDBOX; cat $MESOS_SANDBOX/app/hello.txt; $MESOS_SANDBOX/run.sh; "
              "stat -c %a $MESOS_SANDBOX $MESOS_SANDBOX/run.sh", timeout=10)
    assert result.output.splitlines() == [
        "/mnt/mesos/sandbox", "hello from the tgz", "ran", "1777", "755"]
    missing = launch({"cmd": "sleep 300", "container": {"docker": {"image": "kade/busybox"}},
                      "fetch": [{"uri": f"{served}/nothing.tgz"}]})
    with pytest.raises(DriverError, match=r"fetch http://127\.0\.0\.1:\d+/nothing\.tgz: HTTP 404"):
        await driver.start(missing, lambda _: None)
    assert missing.task_id not in {x.task_id for x in await driver.list()}
