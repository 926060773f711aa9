"""App definitions: Marathon's JSON accepted as it is, clear errors, warnings, spec hash."""

from __future__ import annotations

import json

import pytest

from kade.spec import SpecError, load_document, parse_app, spec_hash

SITE = {"id": "/shop/web", "container": {"docker": {"image": "kade/site:1"}}, "instances": 3}


def errors_of(data: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_app(data)
    return info.value.problems


def test_marathon_app_with_defaults() -> None:
    app = parse_app(SITE).app
    assert app.id == "/shop/web"
    assert app.image == "kade/site:1"
    assert app.instances == 3
    assert app.network_mode == "host"
    ports = app.ports()
    assert len(ports) == 1 and ports[0].requested_host_port == 0  # Marathon: one assigned port
    assert app.upgrade_strategy.minimum_health_capacity == 1
    assert app.backoff_seconds == 1 and app.backoff_factor == 1.15


def test_the_talks_health_check_is_accepted_verbatim() -> None:
    check = {"protocol": "COMMAND", "command": {"value": "redis-cli ping"},
             "gracePeriodSeconds": 300, "intervalSeconds": 60, "timeoutSeconds": 20,
             "maxConsecutiveFailures": 3, "ignoreHttp1xx": False}
    parsed = parse_app({**SITE, "healthChecks": [check]})
    assert parsed.warnings == []
    hc = parsed.app.health_checks[0]
    assert hc.kind == "COMMAND" and hc.command is not None
    assert hc.command.value == "redis-cli ping"
    assert (hc.grace_period_seconds, hc.interval_seconds, hc.timeout_seconds) == (300, 60, 20)
    assert hc.wire()["ignoreHttp1xx"] is False


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"instances": -1}, "instances: must be >= 0"),
        ({"cpus": "lots"}, "cpus: must be a number"),
        ({"id": "/Shop/Web"}, "id: '/Shop/Web' is invalid"),
        ({"id": "/shop/../web"}, "is invalid"),
        ({"container": {"docker": {"image": ""}}}, "container.docker.image: must not be empty"),
        ({"upgradeStrategy": {"minimumHealthCapacity": 2}},
         "upgradeStrategy.minimumHealthCapacity: must be <= 1"),
        ({"healthChecks": [{"protocol": "HTTP", "portIndex": 3}]},
         "healthChecks.0.portIndex: 3 is out of range"),
        ({"healthChecks": [{"protocol": "COMMAND"}]}, "healthChecks.0.command"),
        ({"healthChecks": [{"protocol": "SMTP"}]}, "healthChecks.0.protocol: must be one of"),
        ({"constraints": [["hostname", "NEAR"]]}, "constraints.0: unknown operator 'NEAR'"),
        ({"constraints": [["rack", "LIKE", "("]]}, "constraints.0: invalid regular expression"),
        ({"env": {"1BAD": "x"}}, "env.1BAD: not a valid environment variable name"),
        ({"env": {"A": {"secret": "s"}}}, "env.A: secret references are not supported"),
    ],
)
def test_errors_name_the_field(change: dict[str, object], expected: str) -> None:
    problems = errors_of({**SITE, **change})
    assert any(expected in p for p in problems), problems


def test_app_needs_something_to_run() -> None:
    assert any("needs an image, a cmd or args" in p for p in errors_of({"id": "/a"}))


def test_cmd_and_args_are_exclusive() -> None:
    assert any("cmd and args" in p for p in errors_of({**SITE, "cmd": "x", "args": ["y"]}))


def test_command_app_without_container() -> None:
    app = parse_app({"id": "/jobs/tick", "cmd": "sleep 1000"}).app
    assert app.image is None and app.cmd == "sleep 1000"


def test_unsupported_and_unknown_fields_are_warnings_not_silently_dropped() -> None:
    parsed = parse_app({**SITE, "gpus": 1, "colour": "blue",
                        "container": {"docker": {"image": "kade/site:1", "shiny": True}}})
    assert "gpus: GPUs are not supported, ignored" in parsed.warnings
    assert "colour: unknown field, ignored" in parsed.warnings
    assert "container.docker.shiny: unknown field, ignored" in parsed.warnings


def test_bridge_networking_both_spellings() -> None:
    legacy = parse_app({"id": "/a", "container": {"docker": {
        "image": "i", "network": "BRIDGE",
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "name": "http"}]}}}).app
    modern = parse_app({"id": "/a", "networks": [{"mode": "container/bridge"}],
                        "container": {"docker": {"image": "i"},
                                      "portMappings": [{"containerPort": 8080, "name": "http"}]}}
                       ).app
    for app in (legacy, modern):
        assert app.network_mode == "bridge"
        [port] = app.ports()
        assert port.container_port == 8080 and port.requested_host_port == 0
        assert port.name == "http"


def test_container_port_zero_is_the_assigned_host_port() -> None:
    """Marathon: containerPort 0 in BRIDGE mode means "the same as hostPort"."""
    for mapping in ({}, {"containerPort": 0}, {"containerPort": 0, "hostPort": 0}):
        app = parse_app({"id": "/a", "container": {"docker": {
            "image": "i", "network": "BRIDGE", "portMappings": [mapping]}}}).app
        [port] = app.ports()
        assert port.container_port == 0 and port.requested_host_port == 0


def test_require_ports_fixes_host_ports() -> None:
    app = parse_app({**SITE, "requirePorts": True,
                     "portDefinitions": [{"port": 8080}, {"port": 8081}]}).app
    assert [p.requested_host_port for p in app.ports()] == [8080, 8081]
    loose = parse_app({**SITE, "portDefinitions": [{"port": 8080}]}).app
    assert [p.requested_host_port for p in loose.ports()] == [0]


def test_yaml_with_the_same_fields() -> None:
    data = load_document("id: /shop/web\ninstances: 2\ncontainer:\n  docker:\n"
                         "    image: kade/site:1\n")
    assert parse_app(data).app.instances == 2


def test_invalid_json_names_the_position() -> None:
    with pytest.raises(SpecError, match="invalid JSON at line 1 column"):
        load_document('{"id": ', "app.json")


def test_spec_hash_ignores_scaling_but_not_the_image() -> None:
    base = parse_app(SITE).app
    scaled = parse_app({**SITE, "instances": 7}).app
    other = parse_app({**SITE, "container": {"docker": {"image": "kade/site:2"}}}).app
    assert spec_hash(base) == spec_hash(scaled)
    assert spec_hash(base) != spec_hash(other)


def test_wire_round_trip_is_stable() -> None:
    app = parse_app(SITE).app
    again = parse_app(json.loads(json.dumps(app.wire()))).app
    assert again == app


def test_spec_hash_is_the_same_after_a_trip_through_the_store() -> None:
    from kade.spec import AppSpec

    app = parse_app({"id": "/a", "cmd": "sleep 1"}).app
    stored = AppSpec.model_validate_json(app.model_dump_json(by_alias=True))
    assert spec_hash(stored) == spec_hash(app)


def test_unsupported_docker_parameters_are_rejected() -> None:
    problems = errors_of({**SITE, "container": {"docker": {
        "image": "i", "parameters": [{"key": "hostname", "value": "a"},
                                     {"key": "env-file", "value": "x"},
                                     {"key": "sparkle", "value": "x"}]}}})
    assert problems == [
        "container.docker.parameters.1: 'env-file' is not supported: reads a file where the "
        "Docker CLI runs; put the variables in env",
        "container.docker.parameters.2: 'sparkle' is not a docker run option with an Engine "
        "API equivalent"]


def test_deploys_reject_a_bad_rule_in_routes_or_traefik_labels() -> None:
    from kade.admission import ContainerPolicy, admit

    with pytest.raises(SpecError) as info:
        admit({**SITE, "labels": {"traefik.http.routers.web.rule": "Host(`a`) && Foo(`b`)"}},
              policy=ContainerPolicy())
    assert "labels.traefik.http.routers.web.rule" in str(info.value)
    assert "unknown matcher Foo" in str(info.value)
    with pytest.raises(SpecError, match="routes.0.rule"):
        admit({**SITE, "routes": [{"rule": "Host(`a`"}]}, policy=ContainerPolicy())


@pytest.mark.parametrize("app_id", ["/x/scale", "/x/versions/y", "/logs", "/a/deployments/b",
                                    "/shop/tasks"])
def test_ids_with_an_action_word_as_a_segment_are_refused(app_id: str) -> None:
    problems = errors_of({**SITE, "id": app_id})
    assert len(problems) == 1
    assert "a word the API uses for actions" in problems[0] and problems[0].startswith("id: ")


def test_every_api_action_word_is_reserved() -> None:
    from kade.api.paths import ACTIONS
    from kade.spec import RESERVED_ID_SEGMENTS

    assert set(ACTIONS) <= RESERVED_ID_SEGMENTS


def test_a_long_id_is_refused_by_its_length_before_any_pattern() -> None:
    assert errors_of({**SITE, "id": "/" + "a" * 100_000}) == [
        "id: is 100001 characters long, at most 255 are accepted"]
    assert parse_app({**SITE, "id": "/" + "a" * 254}).app.id == "/" + "a" * 254


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_numbers_must_be_finite_even_when_given_as_python_floats(value: float) -> None:
    assert errors_of({**SITE, "mem": value}) == ["mem: must be a finite number"]


def test_too_large_integers_are_named() -> None:
    assert errors_of({**SITE, "instances": 1e30}) == ["instances: is too large"]


def test_legacy_ports_become_port_definitions() -> None:
    parsed = parse_app({"id": "/a", "cmd": "x", "ports": [0, 0, 0]})
    assert [p.requested_host_port for p in parsed.app.ports()] == [0, 0, 0]
    assert parsed.warnings == [] and "ports" not in parsed.app.wire()
    fixed = parse_app({"id": "/a", "cmd": "x", "ports": [8080, 8081], "requirePorts": True})
    assert [p.requested_host_port for p in fixed.app.ports()] == [8080, 8081]
    assert errors_of({"id": "/a", "cmd": "x", "ports": [1], "portDefinitions": [{"port": 2}]}
                     ) == ["ports: set portDefinitions or the older ports, not both"]
    assert errors_of({"id": "/a", "cmd": "x", "ports": ["80"]}) == [
        "ports: must be a list of port numbers"]
    bridged = parse_app({"id": "/a", "ports": [0], "container": {"docker": {
        "image": "i", "network": "BRIDGE", "portMappings": [{"containerPort": 80}]}}})
    assert len(bridged.app.ports()) == 1 and bridged.app.ports()[0].container_port == 80
    assert bridged.warnings == [
        "ports: the app's ports are its container.portMappings; ignored"]


def test_ip_address_becomes_a_container_network_with_its_ports() -> None:
    app = parse_app({"id": "/a", "container": {"docker": {"image": "i", "network": "USER"}},
                     "ipAddress": {"networkName": "backend", "labels": {"x": "y"},
                                   "discovery": {"ports": [
                                       {"number": 80, "name": "http", "protocol": "tcp"},
                                       {"number": 53, "name": "dns", "protocol": "udp"}]}}}).app
    assert app.network_mode == "container" and app.docker_network_name == "backend"
    assert app.networks[0].labels == {"x": "y"}
    assert [(p.container_port, p.name, p.protocol) for p in app.ports()] == [
        (80, "http", "tcp"), (53, "dns", "udp")]
    default = parse_app({"id": "/a", "container": {"docker": {"image": "i"}},
                         "ipAddress": {}}).app
    assert default.docker_network_name == "bridge"
    assert errors_of({"id": "/a", "cmd": "x", "ipAddress": {"networkName": "n"}}) == [
        "ipAddress: an IP per task needs a Docker container (container.docker.image); a "
        "command app runs on the host network"]
    assert errors_of({"id": "/a", "container": {"docker": {"image": "i"}},
                      "networks": [{"mode": "host"}], "ipAddress": {}}) == [
        "ipAddress: set networks or ipAddress, not both"]


def test_uris_become_fetch_and_archives_are_extracted() -> None:
    app = parse_app({"id": "/a", "cmd": "x", "uris": [
        "https://example.com/app.tgz", "http://example.com/run.sh?v=1"]}).app
    assert [(f.uri, f.extract, f.executable, f.cache) for f in app.fetch] == [
        ("https://example.com/app.tgz", True, False, False),
        ("http://example.com/run.sh?v=1", False, False, False)]
    assert "uris" not in app.wire()
    fetch = parse_app({"id": "/a", "cmd": "x", "fetch": [
        {"uri": "file:///opt/x.zip", "extract": False, "executable": True, "cache": True,
         "outputFile": "y.zip"}]}).app.fetch[0]
    assert (fetch.extract, fetch.executable, fetch.cache, fetch.output_file) == (
        False, True, True, "y.zip")


@pytest.mark.parametrize(("fetch", "expected"), [
    ({"uri": "hdfs://nn/app.jar"}, "fetch.0.uri: 'hdfs://nn/app.jar': only http, https and "
                                   "file URIs (or an absolute path on the node) can be fetched"),
    ({"uri": "http://h/"}, "fetch.0.uri: '' cannot name a file in the sandbox"),
    ({"uri": "file://localhost/etc/passwd"},
     "fetch.0.uri: 'file://localhost/etc/passwd': a file URI names a path on this node "
     "(file:///path)"),
    ({"uri": "http://h/a", "outputFile": "../a"},
     "fetch.0.outputFile: '../a' cannot name a file in the sandbox"),
])
def test_fetch_entries_kade_cannot_place_are_refused(fetch: dict[str, str],
                                                      expected: str) -> None:
    assert errors_of({"id": "/a", "cmd": "x", "fetch": [fetch]}) == [expected]


def test_pods_and_resident_storage_are_refused_by_name() -> None:
    pod = {"id": "/pod", "scaling": {"instances": 1},
           "containers": [{"name": "web", "image": {"kind": "DOCKER", "id": "nginx"}}]}
    assert errors_of(pod) == ["containers: pods are not supported: deploy each container as "
                              "an app"]
    resident = {**SITE, "residency": {"taskLostBehavior": "WAIT_FOREVER"}, "container": {
        "docker": {"image": "i"},
        "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 10}},
                    {"containerPath": "/ext", "mode": "RW",
                     "external": {"name": "v", "provider": "dvdi"}}]}}
    problems = errors_of(resident)
    assert [p.split(":")[0] for p in problems] == [
        "residency", "container.volumes.0.persistent", "container.volumes.1.external"]
    assert "persistent (local) volumes are not supported" in problems[1]


def test_docker_parameters_have_one_table_for_admission_and_driver() -> None:
    from kade.spec.docker_parameters import NO_EQUIVALENT, PARAMETERS, Target, apply_parameter

    assert not set(PARAMETERS) & set(NO_EQUIVALENT)
    t = Target()
    for key, value in [("memory-swap", "1g"), ("shm-size", "64m"), ("oom-kill-disable", "true"),
                       ("cpuset-cpus", "0"), ("entrypoint", "/bin/sh"), ("init", "false"),
                       ("network-alias", "db"), ("ip", "10.5.0.9"), ("dns-opt", "ndots:2"),
                       ("group-add", "audio"), ("read-only", ""), ("tmpfs", "/run:size=1m"),
                       ("health-interval", "1m30s"), ("device-read-bps", "/dev/sda:1mb"),
                       ("e", "A=1"), ("--label", "tier=db"), ("cpus", "1.5"),
                       ("mount", "type=bind,source=/srv,target=/srv,readonly"),
                       ("volumes-from", "other:ro"), ("expose", "7000-7001/udp")]:
        apply_parameter(key, value, t)
    assert t.host["MemorySwap"] == 1 << 30 and t.host["ShmSize"] == 64 << 20
    assert t.host["OomKillDisable"] is True and t.host["CpusetCpus"] == "0"
    assert t.host["Init"] is False and t.host["ReadonlyRootfs"] is True
    assert t.host["DnsOptions"] == ["ndots:2"] and t.host["GroupAdd"] == ["audio"]
    assert t.host["Tmpfs"] == {"/run": "size=1m"} and t.host["NanoCpus"] == 1_500_000_000
    assert t.host["BlkioDeviceReadBps"] == [{"Path": "/dev/sda", "Rate": 1 << 20}]
    assert t.host["Mounts"] == [{"Type": "bind", "Target": "/srv", "Source": "/srv",
                                 "ReadOnly": True}]
    assert t.host["VolumesFrom"] == ["other:ro"]
    assert t.endpoint == {"Aliases": ["db"], "IPAMConfig": {"IPv4Address": "10.5.0.9"}}
    assert t.config["Entrypoint"] == ["/bin/sh"] and t.config["Env"] == ["A=1"]
    assert t.config["Labels"] == {"tier": "db"}
    assert t.config["Healthcheck"] == {"Interval": 90 * 10**9}
    assert set(t.config["ExposedPorts"]) == {"7000/udp", "7001/udp"}


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("memory-swap", "lots", "memory-swap: 'lots' is not a size such as 64m or 1g"),
    ("oom-kill-disable", "maybe", "oom-kill-disable: 'maybe' is not true or false"),
    ("health-interval", "5 minutes", "health-interval: '5 minutes' is not a duration"),
    ("restart", "always", "'restart' is not supported: kade restarts tasks itself"),
    ("publish", "80:80", "'publish' is not supported: ports are kade's"),
    ("mount", "type=nfs,target=/x", "mount: 'type=nfs,target=/x' is not type=bind|volume"),
])
def test_docker_parameter_values_are_checked_at_deploy(key: str, value: str,
                                                       expected: str) -> None:
    [problem] = errors_of({**SITE, "container": {"docker": {
        "image": "i", "parameters": [{"key": key, "value": value}]}}})
    assert problem.startswith("container.docker.parameters.0: " + expected)


def test_fields_added_later_leave_the_hash_of_apps_without_them_alone() -> None:
    import hashlib

    app = parse_app({"id": "/a", "cmd": "sleep 1"}).app
    before = {k: v for k, v in app.wire().items() if k not in ("fetch", "instances", "version",
                                                                "upgradeStrategy")}
    for key in ("backoffSeconds", "backoffFactor", "maxLaunchDelaySeconds", "killSelection",
                "dependencies"):
        before.pop(key)
    raw = json.dumps(before, sort_keys=True, separators=(",", ":")).encode()
    assert spec_hash(app) == hashlib.sha256(raw).hexdigest()[:16]
    fetched = parse_app({"id": "/a", "cmd": "sleep 1", "fetch": [{"uri": "http://h/x"}]}).app
    assert spec_hash(fetched) != spec_hash(app)


def test_network_scoped_parameters_need_a_network_of_the_apps_own() -> None:
    params = [{"key": "net-alias", "value": "db"}]
    assert errors_of({**SITE, "container": {"docker": {"image": "i", "parameters": params}}}) == [
        'container.docker.parameters.0: net-alias applies on a Docker network of the app\'s '
        'own: networks [{"mode": "container", "name": …}]']
    assert parse_app({**SITE, "networks": [{"mode": "container", "name": "backend"}],
                      "container": {"docker": {"image": "i", "parameters": params}}})
