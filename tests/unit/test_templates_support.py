"""Around rendering: encoders, the stored KV value format, the template spec, and what to
re-render when."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kade.spec.templates import TemplateSpec, TemplateWait
from kade.store.base import Entry
from kade.templates import (
    KV_VALUES,
    FunctionError,
    Reads,
    TemplateError,
    affected_templates,
    check_templates,
    decode_kv_value,
    encode_kv_value,
    parse_env_file,
    render,
    render_due,
)
from kade.templates.encode import by_key, explode, to_json_pretty, to_toml, to_yaml


def pairs(**kv: str) -> list[dict[str, str]]:
    return [{"Key": k.replace("__", "/"), "Value": v} for k, v in kv.items()]


def test_explode_nests_and_refuses_a_key_that_is_also_a_directory() -> None:
    assert explode(pairs(a__b__c="1", a__d="2", e="3")) == {"a": {"b": {"c": "1"}, "d": "2"},
                                                            "e": "3"}
    with pytest.raises(FunctionError, match="'a' is a value and also a directory"):
        explode(pairs(a="1", a__b="2"))
    with pytest.raises(FunctionError, match="value and also a directory"):
        explode(pairs(a__b="2", a="1"))


def test_encoders() -> None:
    tree = {"b": {"x": "1", "list": [1, "two"]}, "a": True, "n": 1.5}
    assert to_yaml(tree) == 'a: true\nb:\n  list:\n  - 1\n  - two\n  x: "1"\nn: 1.5'
    assert to_yaml("plain") == "plain"
    # quoted as Go's yaml.v2: what would read as another type in double quotes, lines as |
    assert to_yaml({"e": "", "t": "true", "c": "a: b", "m": "l1\nl2"}) == \
        "c: 'a: b'\ne: \"\"\nm: |-\n  l1\n  l2\nt: \"true\""
    assert to_json_pretty({"b": 1, "a": [1]}) == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'
    assert to_toml(tree) == 'a = true\nn = 1.5\n\n[b]\nlist = [1, "two"]\nx = "1"'
    assert to_toml({"a b": {"c": {"d": "e"}}}) == '["a b"]\n\n["a b".c]\nd = "e"'
    with pytest.raises(FunctionError):
        to_toml("not a map")


def test_by_key_groups_a_tree_by_its_top_directory() -> None:
    grouped = by_key(pairs(web__port="80", web__tls__cert="c", db__port="5432", top="x"))
    assert sorted(grouped) == ["db", "web"]
    assert grouped["web"]["tls/cert"]["Key"] == "tls/cert"


@pytest.mark.parametrize(("value", "flags"), [(b"", 0), (b"data", 0), (b"\x00\x01", 0),
                                              (b"v", 1), (b"", 2**64 - 1)])
def test_kv_value_encoding_round_trips(value: bytes, flags: int) -> None:
    assert decode_kv_value(encode_kv_value(value, flags)) == (value, flags)


def test_values_written_around_the_api_read_as_plain() -> None:
    assert decode_kv_value(b"plain") == (b"plain", 0)
    with pytest.raises(ValueError):
        encode_kv_value(b"", -1)


def test_kv_values_are_what_templates_read_by_user_key() -> None:
    entry = Entry("kv/a/b", encode_kv_value(b"data", 3), 1, 1, 1)
    assert KV_VALUES.prefix == "kv/"
    assert (KV_VALUES.name_of(entry.key), KV_VALUES.decode(entry)) == ("a/b", b"data")


def test_affected_templates_only_those_that_read_the_change() -> None:
    reads = {
        "/etc/a": Reads(keys=frozenset({"db/host"})),
        "/etc/b": Reads(prefixes=frozenset({"config/"})),
        "/etc/c": Reads(services=frozenset({"web"})),
        "/etc/d": Reads(prefixes=frozenset({""})),
    }
    assert affected_templates(reads, keys=["config/x"]) == ["/etc/b", "/etc/d"]
    assert affected_templates(reads, keys=["db/host"]) == ["/etc/a", "/etc/d"]
    assert affected_templates(reads, services=["web"]) == ["/etc/c"]
    assert affected_templates(reads, services=["db"]) == []


def test_render_due_waits_for_quiet_but_not_forever() -> None:
    assert render_due(None, 100.0, 105.0) == 105.0
    wait = TemplateWait(min=2, max=10)
    assert render_due(wait, 100.0, 101.0) == 103.0
    assert render_due(wait, 100.0, 109.5) == 110.0  # changes keep coming: max wins
    assert TemplateWait.model_validate({"min": "5s"}).effective_max == 20.0


def test_env_file_lines() -> None:
    text = ('# comment\n\nexport A=1\nB = two words  # note\nC="x\\ny"\nD=\'$lit\'\nE=\n')
    assert parse_env_file(text) == {"A": "1", "B": "two words", "C": "x\ny", "D": "$lit",
                                    "E": ""}
    with pytest.raises(TemplateError, match="line 2"):
        parse_env_file("A=1\nnot a line", "/env")


def test_template_spec_fields_on_the_wire() -> None:
    spec = TemplateSpec.model_validate({
        "destination": "/etc/app/parameters.yml",
        "source": '{{ tree "config/mijndomein" | explode | toYAML }}',
        "changeMode": "signal", "changeSignal": "usr1", "env": False,
        "wait": {"min": "2s", "max": 10}, "mode": "0600",
    })
    assert spec.change_signal == "SIGUSR1"
    assert spec.wait == TemplateWait(min=2, max=10)
    assert spec.file_mode == 0o600
    assert spec.syntax == "consul-template"
    assert spec.wire()["changeMode"] == "signal"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("destination", "relative/path", "absolute path"),
    ("destination", "/etc/../x", "'..'"),
    ("destination", "/etc/", "directory"),
    ("mode", "rw-r--r--", "octal"),
    ("changeSignal", "SIGNOPE", "signal name"),
    ("syntax", "go", "consul-template"),
    ("wait", {"min": 5, "max": 1}, "max"),
    ("wait", {"min": "soon"}, "duration"),
])
def test_template_spec_rejects(field: str, value: object, message: str) -> None:
    data = {"destination": "/etc/x", field: value}
    with pytest.raises(ValidationError, match=message):
        TemplateSpec.model_validate(data)


def test_check_templates_of_an_app() -> None:
    specs = [TemplateSpec(destination="/a", source="{{ key \"x\" }}"),
             TemplateSpec(destination="/a", source="ok"),
             TemplateSpec(destination="/b", source="{% if %}", syntax="jinja")]
    problems = check_templates(specs)
    assert problems[0] == "templates.1.destination: template /a: destination is used twice"
    assert problems[1].startswith("templates.2.source: template /b: line 1:")
    assert len(problems) == 2


def test_a_spec_renders_directly() -> None:
    spec = TemplateSpec(destination="/etc/app.env", source='PORT={{ env "PORT0" }}\n', env=True)
    out = render(spec, kv={}, env={"PORT0": "31005"})
    assert parse_env_file(out.text) == {"PORT": "31005"}
