"""What operators may say about nodes: names, attributes, eligibility and drain requests."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from kade.admission.nodes import (
    DEADLINE_DEFAULT,
    DrainRequest,
    NodeRequestError,
    admit_drain,
    admit_eligibility,
    check_node_name,
    parse_attr,
    parse_attributes,
)
from kade.cli.main import app
from kade.cli.up import UpConfig


def problems(fn: object, *args: object, **kwargs: object) -> list[str]:
    with pytest.raises(NodeRequestError) as refused:
        fn(*args, **kwargs)  # type: ignore[operator]
    return refused.value.problems


def test_attributes_from_flags_and_the_environment() -> None:
    assert parse_attributes(["az=1a", "rack=r1"]) == {"az": "1a", "rack": "r1"}
    assert parse_attributes(["az=1a,rack=r1"]) == {"az": "1a", "rack": "r1"}  # KADE_ATTR
    assert parse_attributes([" az = 1a , ", ""]) == {"az": "1a"}
    assert parse_attributes([]) == {}
    assert parse_attr("kernel.version=6.1.0-amd64") == ("kernel.version", "6.1.0-amd64")


@pytest.mark.parametrize(("given", "problem"), [
    (["az"], "--attr: 'az' must be key=value, e.g. az=1a"),
    (["az="], "--attr: 'az' needs a value (key=value)"),
    (["=1a"], "--attr: the key must not be empty"),
    (["a z=1"], "--attr: the key 'a z' may hold only letters, digits, '_', '.' and '-', "
                "and must start with a letter or digit"),
    (["az=1 a"], "--attr: the value '1 a' of 'az' may hold only letters, digits and '_', '.', "
                 "':', '/', '+', '-'"),
    (["az=a=b"], "--attr: the value 'a=b' of 'az'"),
    (["hostname=x"], "--attr: 'hostname' is the node's name in constraints, not an attribute "
                     "(set it with --node)"),
    (["az=1a", "az=1b"], "--attr: 'az' is given twice"),
    (["k" * 64 + "=v"], "is longer than 63 characters"),
    (["k=" + "v" * 129], "--attr: the value of 'k' is longer than 128 characters"),
    ([f"k{i}=v" for i in range(33)], "--attr: 33 attributes, at most 32 are accepted"),
])
def test_bad_attributes_are_named(given: list[str], problem: str) -> None:
    assert any(problem in p for p in problems(parse_attributes, given)), given


def test_every_problem_is_named_at_once() -> None:
    assert len(problems(parse_attributes, ["az", "rack=", "ok=1"])) == 2


def test_node_names() -> None:
    assert check_node_name("n1.example-01_a") == "n1.example-01_a"
    assert problems(check_node_name, "", "--node") == ["--node: must not be empty"]
    assert "may hold only letters" in problems(check_node_name, "n/1")[0]
    assert "may hold only letters" in problems(check_node_name, "-n1")[0]
    assert "longer than 63" in problems(check_node_name, "n" * 64)[0]
    assert problems(check_node_name, "drain") == [
        "node: 'drain' is reserved (a word of the node API)"]


def test_a_drain_request_with_its_defaults() -> None:
    assert admit_drain(None) == DrainRequest(DEADLINE_DEFAULT)
    assert admit_drain({}) == DrainRequest(3600.0, False, 1)
    assert admit_drain({"deadline": "5m", "keepSystem": True, "maxParallel": 3}) == \
        DrainRequest(300.0, True, 3)
    assert admit_drain({"deadline": 90}).deadline == 90.0
    assert admit_drain({"attr": "az=1a"}, zone=True).attr == ("az", "1a")


@pytest.mark.parametrize(("body", "problem"), [
    ({"deadline": "soon"}, "deadline: 'soon' is not a duration (use e.g. 250ms, 10s, 5m)"),
    ({"deadline": "0s"}, "deadline: must be between 1s and 168h"),
    ({"deadline": "8 days"}, "deadline: '8 days' is not a duration"),
    ({"deadline": "8d"}, "deadline: must be between 1s and 168h"),
    ({"deadline": "200h"}, "deadline: must be between 1s and 168h"),
    ({"deadline": True}, "deadline: must be a duration such as 5m or 90s"),
    ({"deadline": 1e400}, "deadline: must be between 1s and 168h"),
    ({"maxParallel": 0}, "maxParallel: must be between 1 and 100"),
    ({"maxParallel": 101}, "maxParallel: must be between 1 and 100"),
    ({"maxParallel": 2.5}, "maxParallel: must be a whole number"),
    ({"maxParallel": True}, "maxParallel: must be a whole number"),
    ({"keepSystem": "yes"}, "keepSystem: must be true or false"),
    ({"deadLine": "5m"}, "deadLine: unknown field (known: deadline, keepSystem, maxParallel)"),
    ({"attr": "az=1a"}, "attr: drains every node with that attribute: POST /v1/nodes/drain"),
    ([], "body: must be an object"),
])
def test_bad_drain_requests_are_named(body: object, problem: str) -> None:
    assert any(problem in p for p in problems(admit_drain, body)), problems(admit_drain, body)


def test_a_zone_drain_names_its_nodes_by_attribute() -> None:
    assert problems(admit_drain, {}, zone=True) == [
        "attr: is required: the attribute of the nodes to drain, e.g. az=1a"]
    assert problems(admit_drain, {"attr": "az"}, zone=True) == [
        "attr: 'az' must be key=value, e.g. az=1a"]


def test_eligibility_requests() -> None:
    assert admit_eligibility({"eligible": False}) is False
    assert admit_eligibility({"eligible": True}) is True
    assert problems(admit_eligibility, {}) == ['eligible: is required: {"eligible": true} or false']
    assert problems(admit_eligibility, {"eligible": "no"}) == ["eligible: must be true or false"]
    assert problems(admit_eligibility, {"eligible": True, "x": 1}) == [
        "x: unknown field (known: eligible)"]


def test_every_kade_up_flag_has_its_environment_variable() -> None:
    up = typer.main.get_command(app).commands["up"]  # type: ignore[attr-defined]
    missing = [p.name for p in up.params
               if p.param_type_name == "option" and p.name != "help"
               and p.envvar != f"KADE_{p.name.upper()}"]
    assert missing == []


@pytest.mark.parametrize(("args", "environ", "attributes"), [
    (["--attr", "az=1a", "--attr", "rack=r1"], {}, {"az": "1a", "rack": "r1"}),
    ([], {"KADE_ATTR": "az=1b,rack=r2"}, {"az": "1b", "rack": "r2"}),
    (["--attr", "az=1c"], {"KADE_ATTR": "az=1b"}, {"az": "1c"}),  # the flag wins
])
def test_attributes_reach_the_node_from_flags_or_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str],
        environ: dict[str, str], attributes: dict[str, str]) -> None:
    seen: list[UpConfig] = []

    async def serve(cfg: UpConfig) -> None:
        seen.append(cfg)

    monkeypatch.setattr("kade.cli.up.serve", serve)
    result = CliRunner().invoke(app, ["up", "--data-dir", str(tmp_path), "--node", "n1",
                                      *args], env=environ)
    assert result.exit_code == 0, result.output
    assert (seen[0].node, seen[0].attributes) == ("n1", attributes)


def test_kade_up_refuses_a_bad_node_name() -> None:
    result = CliRunner().invoke(app, ["up", "--node", "drain"])
    assert result.exit_code == 2
    assert "--node: 'drain' is reserved (a word of the node API)" in result.output
