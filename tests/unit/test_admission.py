"""Admission: parsing bounds, upper bounds and the container policy, with plain values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kade.admission import (
    LIMITS,
    BodyTooLarge,
    ContainerPolicy,
    admit,
    admit_body,
    admit_file,
    admit_scale,
    capability,
    check_policy,
    command_user,
    parse_body,
)
from kade.spec import DocumentRefused, SpecError, load_document, parse_app

DENY = ContainerPolicy()
SITE: dict[str, Any] = {"id": "/shop/web", "container": {"docker": {"image": "kade/site:1"}}}


def refused(data: Any, policy: ContainerPolicy = DENY) -> list[str]:
    with pytest.raises(SpecError) as info:
        admit(data, policy=policy)
    return info.value.problems


def body_refused(raw: bytes) -> SpecError:
    with pytest.raises(SpecError) as info:
        admit_body(raw, policy=DENY)
    return info.value


def docker(*params: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {**SITE, "container": {"docker": {
        "image": "kade/site:1", "parameters": [{"key": k, "value": v} for k, v in params],
        **extra}}}


def volume(host_path: str) -> dict[str, Any]:
    return {**SITE, "container": {"docker": {"image": "kade/site:1"}, "volumes": [
        {"containerPath": "/data", "hostPath": host_path, "mode": "RW"}]}}


# -- the document ---------------------------------------------------------------------------

def test_the_example_apps_are_admitted_by_the_default_policy() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples" / "apps"
    files = sorted(root.iterdir())
    assert files
    for file in files:
        for admitted in admit_file(file.read_bytes(), file.name, policy=DENY):
            assert admitted.app.id.startswith("/shop/")


def test_yaml_aliases_are_refused_before_anything_is_expanded() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    assert len(laughs) < 500
    error = body_refused(laughs.encode())
    assert isinstance(error, DocumentRefused)
    assert error.problems == [
        "line 2 column 8: YAML aliases (*a) are not accepted: write the value out"]
    with pytest.raises(DocumentRefused, match=r"aliases \(\*base\)"):
        load_document("base: &base {cpus: 1}\napp:\n  <<: *base\n")


def test_anchors_without_aliases_and_dates_are_plain_yaml() -> None:
    data = load_document("id: /a\ncmd: &c x\nlabels: {built: 2026-01-02}\n")
    assert data == {"id": "/a", "cmd": "x", "labels": {"built": "2026-01-02"}}


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 33 + "1" + "}" * 33,
                                  "a:\n" + "".join(" " * i + "- \n" for i in range(1, 40)),
                                  "[" * 50])
def test_deep_nesting_is_refused_not_a_recursion_error(text: str) -> None:
    with pytest.raises(DocumentRefused, match="nested deeper than 32 levels"):
        load_document(text)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({**SITE, "cmd": "[[[[" * 20 + '"\\\\{' * 50})
    assert load_document(text)["cmd"].startswith("[[[[")
    assert load_document(json.dumps([[[1]]] * 3)) == [[[1]]] * 3


@pytest.mark.parametrize("raw, where", [
    (b'{"id": "/a", "cmd": "x", "mem": Infinity}', "mem"),
    (b'{"id": "/a", "cmd": "x", "cpus": NaN}', "cpus"),
    (b'{"id": "/a", "cmd": "x", "healthChecks": [{"timeoutSeconds": 1e999}]}',
     "healthChecks.0.timeoutSeconds"),
    (b"id: /a\ncmd: x\ndisk: .inf\n", "disk"),
    (b"id: /a\ncmd: x\nmem: -.Inf\n", "mem"),
])
def test_numbers_must_be_finite_and_the_field_is_named(raw: bytes, where: str) -> None:
    assert body_refused(raw).problems == [f"{where}: must be a finite number"]


def test_values_json_cannot_hold_are_refused() -> None:
    assert body_refused(b"id: /a\ncmd: !!binary aGk=\n").problems == [
        "cmd: a YAML bytes value is not accepted (only strings, numbers, booleans, lists "
        "and maps)"]
    assert body_refused(b"id: /a\ncmd: x\nlabels: {1: x}\n").problems == [
        "labels: the key 1 must be a string (quote it)"]
    assert body_refused(b'{"id": "/a", "cmd": "x", "instances": 1' + b"0" * 30 + b"}"
                        ).problems == ["instances: the number is too large (at most "
                                       "9223372036854775807)"]


def test_body_cap_empty_and_not_utf8() -> None:
    with pytest.raises(BodyTooLarge, match=r"larger than 1 MiB \(1048576 bytes\)"):
        parse_body(b" " * (LIMITS.max_body_bytes + 1))
    assert body_refused(b"  \n").problems == ["body: is empty: send an app definition"]
    assert body_refused(b'{"id": "\xff"}').problems == ["body: not UTF-8 text (byte 8)"]
    assert body_refused(b"[1]").problems == ["app definition must be an object"]


# -- strings and bounds ---------------------------------------------------------------------

def test_nul_and_other_control_characters_are_refused_with_the_field() -> None:
    assert refused({**SITE, "env": {"A": "x\x00y"}}) == [
        "env.A: the control character U+0000 is not allowed"]
    assert refused({**SITE, "labels": {"a\x1bb": "x"}}) == [
        "labels.a\x1bb: control characters are not allowed in a key"]
    ok = admit({**SITE, "env": {"CERT": "-----BEGIN-----\r\n\tabc\n"}}, policy=DENY)
    assert ok.app.env["CERT"].endswith("abc\n")


def test_strings_have_a_length_limit_and_templates_a_larger_one() -> None:
    assert refused({**SITE, "cmd": "x" * 70_000}) == [
        "cmd: is 70000 characters long, at most 65536 are accepted"]
    assert refused({**SITE, "id": "/" + "a" * 100_000})[0].startswith("id: is 100001 characters")
    template = {"destination": "/etc/a", "source": "x" * 200_000}
    assert admit({**SITE, "templates": [template]}, policy=DENY).app.templates[0].source


@pytest.mark.parametrize("field, value, message", [
    ("instances", 10_001, "instances: 10001 is more than the 10000 accepted"),
    ("instances", 1e30, "instances: is too large"),
    ("cpus", 5000, "cpus: 5000 is more than the 1024 accepted"),
    ("mem", 1e12, "mem: 1e+12 is more than the 4.1943e+06 accepted"),
    ("taskKillGracePeriodSeconds", 1e300,
     "taskKillGracePeriodSeconds: 1e+300 seconds is more than the 3.16224e+07 accepted"),
    ("env", {f"K{i}": "v" for i in range(1001)}, "env: 1001 entries is more than the 1000 "
                                                 "accepted"),
    ("labels", {"a": "v" * 5000}, "labels.a: a value of 5000 characters is more than the "
                                  "4096 accepted"),
    ("constraints", [["hostname", "UNIQUE"]] * 65, "constraints: 65 entries is more than the 64 "
                                                   "accepted"),
])
def test_upper_bounds(field: str, value: Any, message: str) -> None:
    assert message in refused({**SITE, field: value})


def test_scale_requests_are_bounded() -> None:
    assert admit_scale({"instances": 3}) == 3
    for bad in ({"instances": "many"}, {"instances": -1}, {"instances": True}, [3]):
        with pytest.raises(SpecError, match="instances: must be a whole number >= 0"):
            admit_scale(bad)
    with pytest.raises(SpecError, match="instances: 20000 is more than the 10000 accepted"):
        admit_scale({"instances": 20_000})


def test_a_file_of_apps_is_admitted_whole_or_not_at_all() -> None:
    good = {"id": "/a", "cmd": "x"}
    raw = json.dumps([good, {**SITE, "container": {"docker": {"image": "i",
                                                             "privileged": True}}}]).encode()
    with pytest.raises(SpecError) as info:
        admit_file(raw, "apps.json", policy=DENY)
    assert info.value.problems[0].startswith("[1] container.docker.privileged:")
    assert [a.app.id for a in admit_file(json.dumps([good]).encode(), "a.json",
                                         policy=DENY)] == ["/a"]


# -- the container policy -------------------------------------------------------------------

def test_privileged_is_refused_naming_the_flag() -> None:
    assert refused(docker(privileged=True)) == [
        "container.docker.privileged: privileged containers are refused by this server "
        "(start kade with --allow-privileged)"]
    assert admit(docker(privileged=True), policy=ContainerPolicy(allow_privileged=True))


def test_capabilities_are_allowed_one_by_one() -> None:
    problems = refused(docker(("cap-add", "NET_ADMIN")))
    assert problems == [
        "container.docker.parameters.0 (cap-add=NET_ADMIN): adding the capability NET_ADMIN "
        "is refused by this server (start kade with --allow-caps NET_ADMIN)"]
    some = ContainerPolicy(allow_caps=frozenset({capability("cap_net_bind_service")}))
    assert admit(docker(("cap-add", "CAP_NET_BIND_SERVICE")), policy=some)
    assert refused(docker(("cap-add", "ALL")), some)[0].endswith("(start kade with "
                                                                   "--allow-caps ALL)")
    assert admit(docker(("cap-add", "SYS_ADMIN")),
                 policy=ContainerPolicy(allow_caps=frozenset({"ALL"})))
    assert admit(docker(("cap-drop", "ALL")), policy=DENY)


@pytest.mark.parametrize("key, value", [("pid", "host"), ("ipc", "host"), ("uts", "host"),
                                        ("userns", "host"), ("pid", "container:other")])
def test_host_namespaces_need_their_flag(key: str, value: str) -> None:
    assert refused(docker((key, value)))[0].endswith("(start kade with --allow-host-namespaces)")
    assert admit(docker((key, value)), policy=ContainerPolicy(allow_host_namespaces=True))


def test_namespace_modes_are_checked_and_private_ipc_is_free() -> None:
    assert admit(docker(("ipc", "private")), policy=DENY)
    assert refused(docker(("uts", "private"))) == [
        "container.docker.parameters.0 (uts=private): 'private' is not a uts mode (host)"]


@pytest.mark.parametrize("value", ["seccomp=unconfined", "apparmor=unconfined", "label=disable",
                                   "no-new-privileges=false", "systempaths=unconfined"])
def test_loosened_confinement_needs_allow_unconfined(value: str) -> None:
    assert refused(docker(("security-opt", value)))[0].endswith(
        "(start kade with --allow-unconfined)")
    assert admit(docker(("security-opt", value)), policy=ContainerPolicy(allow_unconfined=True))


def test_tightening_security_options_is_always_allowed() -> None:
    assert admit(docker(("security-opt", "no-new-privileges"),
                        ("security-opt", "apparmor=docker-default")), policy=DENY)


def test_devices_sysctls_and_kade_labels() -> None:
    problems = refused(docker(("device", "/dev/sda"), ("sysctl", "net.core.somaxconn=1024"),
                              ("label", "kade.app-id=/other")))
    assert problems[0].endswith("(start kade with --allow-devices)")
    assert problems[1].endswith("(start kade with --allow-sysctls)")
    assert problems[2].endswith("the label prefix kade. is reserved for kade's own labels")


def fake_realpath(links: dict[str, str]) -> Any:
    def realpath(path: str) -> str:
        for link, target in links.items():
            if path == link or path.startswith(link + "/"):
                return target + path[len(link):]
        return path
    return realpath


def policy_problems(app: dict[str, Any], policy: ContainerPolicy = DENY,
                    links: dict[str, str] | None = None) -> list[str]:
    return check_policy(parse_app(app).app, policy,
                        realpath=fake_realpath(links or {"/var/run": "/run"}))


def test_host_paths_outside_the_allow_list_are_refused() -> None:
    assert policy_problems(volume("/")) == [
        "container.volumes.0.hostPath: '/' gives the container the Docker socket "
        "(/run/docker.sock), and so the host; it is refused by this server (start kade with "
        "--allow-docker-socket)",
        "container.volumes.0.hostPath: the host path / is outside the allowed directories and "
        "is refused by this server (start kade with --allow-host-paths /)"]
    data = ContainerPolicy(allow_host_paths=("/srv/data",))
    assert policy_problems(volume("/srv/data"), data) == []
    assert policy_problems(volume("/srv/data/app//x/."), data) == []
    assert policy_problems(volume("/srv/database"), data)[0].endswith(
        "(start kade with --allow-host-paths /srv/database)")
    assert policy_problems(volume("/srv/data/../../etc"), data) == [
        "container.volumes.0.hostPath: '/srv/data/../../etc' must not contain '..'"]
    assert policy_problems(volume("cache"), DENY) == []  # a Docker named volume
    assert policy_problems(volume("./x"), DENY) == [
        "container.volumes.0.hostPath: './x' must be an absolute host path or a Docker "
        "volume name"]


def test_a_symlink_inside_an_allowed_directory_cannot_lead_out_of_it() -> None:
    data = ContainerPolicy(allow_host_paths=("/srv/data",))
    links = {"/srv/data/etc": "/etc"}
    assert policy_problems(volume("/srv/data/etc"), data, links) == [
        "container.volumes.0.hostPath: the host path /srv/data/etc (resolves to /etc) is "
        "outside the allowed directories and is refused by this server (start kade with "
        "--allow-host-paths /etc)"]


@pytest.mark.parametrize("path", ["/var/run/docker.sock", "/run/docker.sock", "/var/run",
                                  "/run", "/srv/data/sock"])
def test_the_docker_socket_needs_its_own_flag_whatever_the_path(path: str) -> None:
    everything = ContainerPolicy(allow_host_paths=("/",))
    links = {"/var/run": "/run", "/srv/data/sock": "/run/docker.sock"}
    problems = policy_problems(volume(path), everything, links)
    assert len(problems) == 1 and "gives the container the Docker socket" in problems[0]
    assert problems[0].endswith("(start kade with --allow-docker-socket)")
    socket = ContainerPolicy(allow_docker_socket=True)
    if path.endswith("docker.sock"):  # the socket itself: this flag is enough
        assert policy_problems(volume(path), socket, links) == []


def test_command_apps_as_root_need_allow_root_commands() -> None:
    for user in ("root", "0", "root:root"):
        assert refused({"id": "/a", "cmd": "id", "user": user}) == [
            f"user: running a command app as {user!r} on the host is refused by this server "
            "(start kade with --allow-root-commands)"]
    assert admit({"id": "/a", "cmd": "id", "user": "root"},
                 policy=ContainerPolicy(allow_root_commands=True))
    assert admit({"id": "/a", "cmd": "id", "user": "nobody"}, policy=DENY)
    # in a container, root is the container's: not the policy's business
    assert admit({**SITE, "user": "root"}, policy=DENY)


def test_command_apps_without_a_user_run_as_nobody_when_kade_is_root() -> None:
    assert command_user(DENY, euid=0) == "nobody"
    assert command_user(ContainerPolicy(allow_root_commands=True), euid=0) is None
    assert command_user(DENY, euid=1000) is None


def test_every_problem_is_reported_at_once() -> None:
    problems = refused({**docker(("cap-add", "SYS_ADMIN"), privileged=True), "instances": 10**6,
                        "container": {"docker": {"image": "i", "privileged": True},
                                      "volumes": [{"containerPath": "/h", "hostPath": "/"}]}})
    fields = [p.split(":")[0] for p in problems]
    assert fields[:3] == ["instances", "container.docker.privileged",
                          "container.volumes.0.hostPath"]


def test_parameter_values_the_driver_would_refuse_are_refused_at_deploy() -> None:
    assert refused(docker(("pids-limit", "many"), ("ulimit", "nofile"),
                          ("device", "sda"))) == [
        "container.docker.parameters.0: pids-limit: 'many' is not a whole number",
        "container.docker.parameters.1: ulimit: 'nofile' is not name=soft[:hard], such as "
        "nofile=1024:2048",
        "container.docker.parameters.2: device: 'sda' is not /dev/host[:/dev/container[:rwm]]"]
    assert admit(docker(("pids-limit", "-1"), ("ulimit", "nofile=1024:2048")), policy=DENY)


def test_template_waits_and_route_ports_are_bounded() -> None:
    template = {"destination": "/etc/a", "source": "x", "wait": {"min": "1s", "max": 1e12}}
    assert refused({**SITE, "templates": [template]}) == [
        "templates.0.wait.max: 1e+12 seconds is more than the 3.16224e+07 accepted"]
    assert refused({**SITE, "routes": [{"rule": "Host(`a`)", "portIndex": 10**9}]}) == [
        "routes.0.portIndex: 1e+09 is more than the 99 accepted"]


def test_a_yaml_document_of_too_many_values_is_refused_before_it_is_built() -> None:
    with pytest.raises(DocumentRefused, match="more than 100000 YAML values"):
        load_document("id: /a\nargs:\n" + "- a\n" * 120_000)


def test_bind_separators_and_container_networks_cannot_smuggle_host_access() -> None:
    data = ContainerPolicy(allow_host_paths=("/srv/data",))
    app = {**SITE, "container": {"docker": {"image": "i"}, "volumes": [
        {"containerPath": "/a:/etc", "hostPath": "/srv/data"},
        {"containerPath": "/b", "hostPath": "/srv/data/x:/etc"}]}}
    assert policy_problems(app, data) == [
        "container.volumes.0.containerPath: must not contain ':' or ','",
        "container.volumes.1.hostPath: '/srv/data/x:/etc' must not contain ':' or ','"]
    joined = {**SITE, "networks": [{"mode": "container", "name": "container:other"}]}
    assert policy_problems(joined)[0].endswith("(start kade with --allow-host-namespaces)")
    assert policy_problems(joined, ContainerPolicy(allow_host_namespaces=True)) == []
    assert policy_problems({**SITE, "networks": [{"mode": "container", "name": "shop"}]}) == []


def test_a_command_app_user_who_may_use_the_docker_socket_is_refused() -> None:
    import pwd

    nobody = pwd.getpwnam("nobody").pw_gid
    app = parse_app({"id": "/a", "cmd": "id", "user": "nobody"}).app
    assert check_policy(app, DENY, socket_groups=lambda: frozenset({nobody})) == [
        "user: 'nobody' may use the Docker socket, and so the host; running a command app as "
        "it is refused by this server (start kade with --allow-docker-socket)"]
    assert check_policy(app, DENY, socket_groups=lambda: frozenset({nobody + 1})) == []
    assert check_policy(app, ContainerPolicy(allow_docker_socket=True),
                        socket_groups=lambda: frozenset({nobody})) == []


def test_docker_parameters_that_reach_the_host_are_judged_by_the_policy() -> None:
    problems = refused(docker(("volume", "/etc:/host-etc"), ("v", "/srv/data:/data:ro"),
                              ("mount", "type=bind,source=/var/lib,target=/host"),
                              ("mount", "type=volume,target=/x,volume-opt=type=none,"
                                        "volume-opt=o=bind,volume-opt=device=/root"),
                              ("volumes-from", "kade-other"), ("privileged", "true"),
                              ("gpus", "all"), ("device-cgroup-rule", "c 1:3 mr"),
                              ("cgroupns", "host"), ("cgroup-parent", "/system.slice")))
    flags = [p.rpartition("(start kade with ")[2].rstrip(")") for p in problems]
    assert flags == ["--allow-host-paths /etc", "--allow-host-paths /srv/data",
                     "--allow-host-paths /var/lib", "--allow-host-paths /root",
                     "--allow-host-namespaces", "--allow-privileged", "--allow-devices",
                     "--allow-devices", "--allow-host-namespaces", "--allow-host-namespaces"]
    assert "mounting another container's volumes" in problems[4]
    allowed = ContainerPolicy(allow_host_paths=("/srv",), allow_host_namespaces=True)
    assert admit(docker(("volume", "/srv/data:/data:ro"), ("volume", "named:/cache"),
                        ("volume", "/anonymous"), ("volumes-from", "other"),
                        ("mount", "type=tmpfs,target=/t"), ("cgroupns", "private"),
                        ("privileged", "false"), ("memory-swap", "-1"),
                        ("shm-size", "256m")), policy=allowed)


def test_fetching_a_node_path_is_judged_like_a_host_volume() -> None:
    app = {"id": "/jobs/a", "cmd": "./run", "fetch": [{"uri": "file:///etc/shadow"},
                                                      {"uri": "/srv/pkg/app.tgz"},
                                                      {"uri": "http://127.0.0.1/x"}]}
    problems = refused(app)
    assert [p.split(":")[0] for p in problems] == ["fetch.0.uri", "fetch.1.uri"]
    assert problems[0].endswith("(start kade with --allow-host-paths /etc/shadow)")
    assert admit(app | {"fetch": app["fetch"][1:]},
                 policy=ContainerPolicy(allow_host_paths=("/srv/pkg",)))


def test_fetch_entries_are_bounded() -> None:
    app = {"id": "/jobs/a", "cmd": "./run", "fetch": [{"uri": f"http://h/{i}"} for i in range(65)]}
    assert refused(app) == ["fetch: 65 entries is more than the 64 accepted"]
