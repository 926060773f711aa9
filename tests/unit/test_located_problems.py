"""Admission's problems placed at their field and line, in JSON and in YAML."""

from __future__ import annotations

import pytest

from kade.admission import ContainerPolicy, admit_body
from kade.admission.located import Located, locate, split_problem
from kade.spec import DocumentRefused, SpecError

JSON = """{
  "id": "web",
  "instances": -1,
  "container": {"docker": {"image": "web:1"}},
  "healthChecks": [
    {"protocol": "HTTP", "path": 5}
  ]
}
"""

YAML = """id: web
instances: -1
container:
  docker:
    image: web:1
healthChecks:
  - protocol: HTTP
    path: 5
"""


def refused(text: str) -> Located:
    with pytest.raises(SpecError) as caught:
        admit_body(text.encode(), policy=ContainerPolicy())
    return Located(caught.value, text)


@pytest.mark.parametrize("text", [JSON, YAML], ids=["json", "yaml"])
def test_each_problem_is_on_the_line_of_its_field(text: str) -> None:
    where = {p["field"]: p["line"] for p in refused(text).located}
    lines = text.splitlines()
    assert lines[where["instances"] - 1].strip().startswith(('"instances"', "instances"))
    assert "path" in lines[where["healthChecks[0].path"] - 1]


def test_a_label_whose_name_has_dots_is_found() -> None:
    text = "id: web\ncmd: serve\nlabels:\n  a: b\n  traefik.http.routers.web.rule: Host(`a`\n"
    [problem] = refused(text).located
    assert problem["field"] == "labels.traefik.http.routers.web.rule"
    assert problem["line"] == 5


def test_the_message_is_the_one_clients_already_read() -> None:
    e = refused(JSON)
    assert str(e) == "instances: must be >= 0; healthChecks.0.path: must be a string"
    assert {"field": "instances", "message": "must be >= 0", "line": 3} in e.located
    assert not e.refused


def test_a_missing_field_is_placed_on_the_nearest_part_of_its_path() -> None:
    text = "id: web\ncontainer:\n  docker: {}\n"
    [problem] = locate(text, ["container.docker.image: is required"])
    assert problem == {"field": "container.docker.image", "message": "is required", "line": 3}
    [problem] = locate(text, ["cmd: is required"])
    assert problem["line"] is None


def test_a_syntax_error_has_the_line_its_message_names() -> None:
    text = '{\n  "id": "web",\n  "instances": ,\n}'
    e = refused(text)
    assert e.located == [{"field": None, "message": e.problems[0], "line": 3}]
    assert e.problems[0].startswith("invalid JSON at line 3")


def test_a_refused_document_stays_a_400() -> None:
    text = "id: &a web\ncmd: *a\n"
    with pytest.raises(DocumentRefused) as caught:
        admit_body(text.encode(), policy=ContainerPolicy())
    e = Located(caught.value, text)
    assert e.refused
    assert e.located[0]["line"] == 2


def test_problems_of_no_field_keep_their_whole_text() -> None:
    assert split_problem("(app): cmd and container are exclusive") == (
        None, "(app): cmd and container are exclusive")
    assert split_problem("portDefinitions.0.port: must be <= 65535") == (
        "portDefinitions[0].port", "must be <= 65535")


def test_a_value_json_cannot_hold_is_placed_at_its_field() -> None:
    text = "id: web\ncmd: serve\nmem: .inf\n"
    e = refused(text)
    assert e.located == [{"field": "mem", "message": "must be a finite number", "line": 3}]


def test_a_document_refused_for_its_shape_is_not_composed_again() -> None:
    text = "x: " + "[" * 40 + "]" * 40
    with pytest.raises(DocumentRefused) as caught:
        admit_body(text.encode(), policy=ContainerPolicy())
    e = Located(caught.value, text)
    assert e.located == [{"field": "document", "message": "nested deeper than 32 levels",
                          "line": None}]
