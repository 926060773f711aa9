"""Hostile app definitions against a real `kade up`: each is refused, named, and changes nothing.

One kade serves the whole module (its start is the slow part); every attack is checked by its
answer and by reading the API after: no app, no version, nothing half-written.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kade.client import ClientError
from tests.integration.harness import Kade, wait_for

pytestmark = pytest.mark.timeout(300)

SITE: dict[str, Any] = {"id": "/sec/web", "cpus": 0.05, "mem": 16,
                        "container": {"docker": {"image": "kade/busybox"}}, "cmd": "sleep 300"}
GOOD_FILE = {"id": "/sec/from-file", "cmd": "sleep 300", "cpus": 0.01, "mem": 8,
             "instances": 0, "container": {"docker": {"image": "kade/busybox"}}}


@pytest.fixture(scope="module")
def kade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kade]:
    root = tmp_path_factory.mktemp("admission")
    apps = root / "apps"
    apps.mkdir()
    (apps / "good.json").write_text(json.dumps(GOOD_FILE))
    (apps / "bad.yaml").write_text("id: /sec/privileged-file\ncmd: sleep 1\ncontainer:\n"
                                   "  docker: {image: kade/busybox, privileged: true}\n")
    k = Kade(root / "kade", extra=["--deploy", str(apps)])
    try:
        k.start()
        wait_for(lambda: any(a["id"] == "/sec/from-file" for a in k.get("/v1/apps")["apps"]),
                 60, "the apps of --deploy")
        yield k
    finally:
        k.cleanup()


def state(k: Kade) -> list[Any]:
    return [(a["id"], a["version"]) for a in k.get("/v1/apps")["apps"]]


def refused(k: Kade, method: str, path: str, body: bytes | Any) -> ClientError:
    """Sends the request; asserts it is refused and that no app changed."""
    before = state(k)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ClientError) as info:
        k.client.request(method, path, content=content,
                         headers={"Content-Type": "application/json"})
    assert k.client.get("/ping") == "pong"  # still up
    assert state(k) == before
    return info.value


def laughs() -> bytes:
    text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    return text.encode()


def test_deploy_files_pass_the_same_admission(kade: Kade) -> None:
    ids = [a["id"] for a in kade.get("/v1/apps")["apps"]]
    assert "/sec/from-file" in ids and "/sec/privileged-file" not in ids
    wait_for(lambda: "--allow-privileged" in kade.logs(), 10, "the refusal in the log")
    assert "cannot deploy" in kade.logs()


def test_billion_laughs_is_refused_before_it_is_expanded(kade: Kade) -> None:
    error = refused(kade, "POST", "/v1/apps", laughs())
    assert error.status == 400
    assert "YAML aliases (*a) are not accepted" in str(error)


def test_deep_nesting_is_a_400_naming_the_depth(kade: Kade) -> None:
    error = refused(kade, "POST", "/v1/apps", b'{"id": "/sec/deep", "x": ' + b"[" * 50_000 +
                    b"]" * 50_000 + b"}")
    assert error.status == 400 and "nested deeper than 32 levels" in str(error)
    assert "Recursion" not in str(error)


@pytest.mark.parametrize("raw, problem", [
    (b'{"id": "/sec/inf", "cmd": "x", "mem": Infinity}', "mem: must be a finite number"),
    (b'{"id": "/sec/big", "cmd": "x", "cpus": 1e999}', "cpus: must be a finite number"),
    (b"id: /sec/yinf\ncmd: x\ndisk: .inf\n", "disk: must be a finite number"),
    (b'{"id": "/sec/nan", "cmd": "x", "healthChecks": [{"intervalSeconds": NaN}]}',
     "healthChecks.0.intervalSeconds: must be a finite number"),
])
def test_numbers_json_cannot_store_are_refused(kade: Kade, raw: bytes, problem: str) -> None:
    error = refused(kade, "POST", "/v1/apps", raw)
    assert error.status == 422 and problem in str(error)


@pytest.mark.parametrize("app_id", ["/sec/scale", "/sec/versions/y", "/sec/logs"])
def test_ids_with_action_words_are_refused(kade: Kade, app_id: str) -> None:
    error = refused(kade, "POST", "/v1/apps", {**SITE, "id": app_id})
    assert error.status == 422 and "a word the API uses for actions" in str(error)


@pytest.mark.parametrize("change, problem", [
    ({"instances": 1e30}, "instances: is too large"),
    ({"instances": 20_000}, "instances: 20000 is more than the 10000 accepted"),
    ({"id": "/sec/" + "a" * 100_000}, "id: is 100005 characters long, at most 65536"),
    ({"env": {"A": "x\u0000y"}}, "env.A: the control character U+0000 is not allowed"),
])
def test_bounds(kade: Kade, change: dict[str, Any], problem: str) -> None:
    error = refused(kade, "POST", "/v1/apps", {**SITE, **change})
    assert error.status == 422 and problem in str(error)


def test_a_10_mb_body_is_refused_without_being_read(kade: Kade) -> None:
    error = refused(kade, "POST", "/v1/apps", b" " * (10 * 1024 * 1024))
    assert error.status == 413 and "larger than 1 MiB (1048576 bytes)" in str(error)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds while reading
        for _ in range(10):
            yield b" " * (1024 * 1024)
    with pytest.raises(ClientError) as info:
        kade.client.request("PUT", "/v1/apps/sec/chunked", content=chunks(),
                            headers={"Content-Type": "application/json"})
    assert info.value.status == 413
    with pytest.raises(ClientError, match="does not exist"):
        kade.app("/sec/chunked")


@pytest.mark.parametrize("change, flag", [
    ({"container": {"docker": {"image": "kade/busybox", "privileged": True}}},
     "--allow-privileged"),
    ({"container": {"docker": {"image": "kade/busybox"},
                    "volumes": [{"containerPath": "/host", "hostPath": "/", "mode": "RW"}]}},
     "--allow-host-paths /"),
    ({"container": {"docker": {"image": "kade/busybox"}, "volumes": [
        {"containerPath": "/d.sock", "hostPath": "/var/run/docker.sock"}]}},
     "--allow-docker-socket"),
    ({"container": {"docker": {"image": "kade/busybox", "parameters": [
        {"key": "cap-add", "value": "ALL"}]}}}, "--allow-caps ALL"),
    ({"container": {"docker": {"image": "kade/busybox", "parameters": [
        {"key": "security-opt", "value": "apparmor=unconfined"}]}}}, "--allow-unconfined"),
    ({"container": {"docker": {"image": "kade/busybox", "parameters": [
        {"key": "sysctl", "value": "kernel.shm_rmid_forced=1"}]}}}, "--allow-sysctls"),
    ({"container": {"docker": {"image": "kade/busybox", "parameters": [
        {"key": "pid", "value": "host"}]}}}, "--allow-host-namespaces"),
    ({"container": None, "user": "root", "cmd": "id > /tmp/x"}, "--allow-root-commands"),
])
def test_host_reaching_settings_are_refused_naming_the_flag(
        kade: Kade, change: dict[str, Any], flag: str) -> None:
    app = {k: v for k, v in {**SITE, **change}.items() if v is not None}
    for method, path in (("POST", "/v1/apps"), ("PUT", "/v1/apps/sec/web")):
        error = refused(kade, method, path, app)
        assert error.status == 422
        assert "refused by this server" in str(error) and f"(start kade with {flag})" in str(error)


def test_scale_is_bounded(kade: Kade) -> None:
    for body in ({"instances": 1e30}, {"instances": 20_000}):
        error = refused(kade, "POST", "/v1/apps/sec/from-file/scale", body)
        assert error.status == 400 and "instances" in str(error)


def test_flags_open_the_policy_and_containers_keep_the_defaults(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from the host\n")
    k = Kade(tmp_path / "kade", extra=["--allow-privileged", "--allow-caps", "net_admin",
                                       "--allow-host-paths", str(shared)])
    try:
        k.start()
        # accepted (this machine's Docker cannot run privileged containers: not started)
        k.deploy({**SITE, "id": "/sec/privileged", "instances": 0, "container": {
            "docker": {"image": "kade/busybox", "privileged": True}}})
        k.deploy({**SITE, "id": "/sec/open", "container": {
            "docker": {"image": "kade/busybox",
                       "parameters": [{"key": "cap-add", "value": "NET_ADMIN"}]},
            "volumes": [{"containerPath": "/shared", "hostPath": str(shared), "mode": "RO"}]},
            "cmd": "cat /shared/hello && sleep 300"})
        [task] = wait_for(lambda: k.running_tasks("/sec/open"), 60, "the task running")
        info = json.loads(subprocess.run(["docker", "inspect", task["containerId"]],
                                         capture_output=True, text=True, check=True).stdout)[0]
        host = info["HostConfig"]
        assert host["Privileged"] is False and host["CapAdd"] == ["NET_ADMIN"]
        assert f"{shared}:/shared:ro" in host["Binds"]
        assert host["SecurityOpt"] == ["no-new-privileges"] and host["PidsLimit"] == 1024
        assert host["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}
        # still refused: what no flag opened
        with pytest.raises(ClientError) as info_:
            k.deploy({**SITE, "id": "/sec/other", "container": {
                "docker": {"image": "kade/busybox"},
                "volumes": [{"containerPath": "/etc2", "hostPath": "/etc"}]}})
        assert info_.value.status == 422 and "--allow-host-paths /etc" in str(info_.value)
    finally:
        k.cleanup()
