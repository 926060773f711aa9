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
        ({"env": {"A": {"secret": "s"}}}, "env.A: must be a string"),
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
    from kade.api.apps import _ACTIONS
    from kade.spec import RESERVED_ID_SEGMENTS

    assert set(_ACTIONS) <= RESERVED_ID_SEGMENTS


def test_a_long_id_is_refused_by_its_length_before_any_pattern() -> None:
    assert errors_of({**SITE, "id": "/" + "a" * 100_000}) == [
        "id: is 100001 characters long, at most 255 are accepted"]
    assert parse_app({**SITE, "id": "/" + "a" * 254}).app.id == "/" + "a" * 254


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_numbers_must_be_finite_even_when_given_as_python_floats(value: float) -> None:
    assert errors_of({**SITE, "mem": value}) == ["mem: must be a finite number"]


def test_too_large_integers_are_named() -> None:
    assert errors_of({**SITE, "instances": 1e30}) == ["instances: is too large"]
