"""Rendering templates: consul-template's syntax, Jinja's, errors, and what a render read."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from kade.templates import (
    InlineTemplate,
    MissingKeyError,
    Reads,
    ServiceEndpoint,
    TemplateError,
    check_template,
    render,
)
from kade.templates.render import Syntax

WEB = [
    ServiceEndpoint("web", "web-2", "10.0.0.2", 31002, node="n2", tags=("v2", "prod")),
    ServiceEndpoint("web", "web-1", "10.0.0.1", 31001, node="n1", tags=("v1",)),
]


def go(source: str, kv: Mapping[str, str] | None = None, syntax: Syntax = "consul-template",
       **extra: object) -> str:
    data = {k: v.encode() for k, v in (kv or {}).items()}
    return render(InlineTemplate("/etc/app.conf", source, syntax), kv=data,
                  services={"web": WEB}, **extra).text  # type: ignore[arg-type]


def test_the_talks_template_renders_verbatim() -> None:
    source = '---\n{{ tree "config/mijndomein" | explode | toYAML }}\n'
    assert go(source, {"config/mijndomein/example": "data"}) == "---\nexample: data\n"


def test_keys_and_defaults() -> None:
    kv = {"db/host": "10.1.1.1", "db/port": "5432"}
    assert go('{{ key "db/host" }}:{{ key "/db/port" }}', kv) == "10.1.1.1:5432"
    assert go('{{ keyOrDefault "db/user" "app" }}', kv) == "app"
    assert go('{{ keyOrDefault "empty" "app" }}', {"empty": ""}) == "app"  # as consul-template
    assert go('{{ if keyExists "db/host" }}yes{{ end }}', kv) == "yes"


def test_ls_lists_one_level_and_tree_all() -> None:
    kv = {"cfg/a": "1", "cfg/b": "2", "cfg/sub/c": "3", "cfgx": "no", "cfg/dir/": ""}
    assert go('{{ range ls "cfg" }}{{ .Key }}={{ .Value }};{{ end }}', kv) == "a=1;b=2;"
    assert go('{{ range tree "cfg/" }}{{ .Key }} {{ end }}', kv) == "a b sub/c "
    assert go('{{ range tree "cfg" }}{{ .Path }} {{ end }}', kv) == "cfg/a cfg/b cfg/sub/c "


def test_service_endpoints_in_a_range() -> None:
    source = ("upstream web {\n{{- range service \"web\" }}\n  server {{ .Address }}:{{ .Port }};"
              "{{ end }}\n}\n")
    assert go(source) == ("upstream web {\n  server 10.0.0.1:31001;\n"
                          "  server 10.0.0.2:31002;\n}\n")
    assert go('{{ range service "prod.web" }}{{ .ID }}{{ end }}') == "web-2"
    assert go('{{ range service "api" }}x{{ else }}none{{ end }}') == "none"


def test_control_structures() -> None:
    kv = {"flag": "on", "json": '{"a": {"b": 1}, "list": [1, 2], "t": true}'}
    assert go('{{ if eq (key "flag") "on" }}A{{ else if eq 1 2 }}B{{ else }}C{{ end }}', kv) == "A"
    assert go('{{ if eq (key "flag") "off" }}A{{ else if eq 1 1 }}B{{ else }}C{{ end }}', kv) == "B"
    assert go('{{ with key "json" | parseJSON }}{{ .a.b }} {{ .t }} {{ .list }}{{ end }}',
              kv) == "1 true [1 2]"
    assert go('{{ with keyOrDefault "none" "" }}x{{ else }}empty{{ end }}') == "empty"
    assert go('{{ range $k, $v := key "json" | parseJSON }}{{ $k }} {{ end }}', kv) == "a list t "
    assert go('{{ range $i, $x := split "," "a,b" }}{{ $i }}{{ $x }}{{ end }}') == "0a1b"
    assert go('{{ $n := 0 }}{{ if true }}{{ $n = 5 }}{{ end }}{{ $n }}') == "5"
    assert go('{{ range split "," "a,b,c" }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ . }}'
              '{{ end }}') == "ac"
    assert go('{{ range split "," "a,b,c" }}{{ if eq . "b" }}{{ break }}{{ end }}{{ . }}'
              '{{ end }}') == "a"
    assert go('{{ with $x := "v" }}{{ $x }}{{ . }}{{ end }}') == "vv"

def test_variables_are_scoped_as_in_go() -> None:
    # a declaration inside a block shadows until {{end}}; `=` assigns the declared one
    assert go('{{ $x := "o" }}{{ if true }}{{ $x := "in" }}{{ $x }}{{ end }}{{ $x }}') == "ino"
    assert go('{{ $x := "o" }}{{ with "w" }}{{ $x = . }}{{ end }}{{ $x }}') == "w"
    assert go('{{ $x := "o" }}{{ range $i := 2 }}{{ $x }}{{ $x := $i }}{{ $x }}{{ end }}'
              "{{ $x }}") == "o0o1o"
    assert go('{{ range $i := 2 }}{{ range $j := 2 }}{{ $i }}{{ $j }} {{ end }}{{ end }}') == \
        "00 01 10 11 "


def test_pipes_pass_the_value_last_as_go_does() -> None:
    assert go('{{ 10 | subtract 3 }} {{ "a:b" | split ":" | join "-" }}') == "7 a-b"
    assert go('{{ "X" | printf "<%s>" }}') == "<X>"


def test_builtins_print_like_go() -> None:
    assert go('{{ printf "%05d|%-4s|%q|%.2f|%x|%t" 42 "ab" "x" 3.14159 255 true }}') == \
        '00042|ab  |"x"|3.14|ff|true'
    assert go("{{ true }} {{ nil }} {{ 1.0 }} {{ 0755 }}") == "true <no value> 1 493"
    assert go('{{ and 1 0 }} {{ or 0 "x" }} {{ not true }} {{ len "abc" }}') == "0 x false 3"
    assert go('{{ index (split "," "a,b") 1 }} {{ ne 1 2 }} {{ lt 1 2 }} {{ ge 1 2 }}') == \
        "b true true false"
    assert go('{{ print 1 2 "a" }} {{ "a b" | urlquery }}') == "1 2a a+b"


def test_comments_and_trim_markers() -> None:
    assert go("a  {{- /* gone */ -}}  b") == "ab"
    assert go("a {{/* multi\nline */}} b") == "a  b"
    assert go("x\n  {{- 1 }}\n  {{- 2 -}}\n  y") == "x12y"
    assert go("{{-3}}") == "-3"  # not a trim marker without a space


def test_text_with_jinja_delimiters_is_literal() -> None:
    text = "{% raw %} {# not a comment #} {%- endraw %} ${HOME} 100% { "
    assert go(text + '{{ "}}" }}') == text + "}}"


def test_missing_keys_block_with_every_name_and_the_line() -> None:
    with pytest.raises(MissingKeyError) as e:
        go('line 1\n{{ key "db/host" }}\n{{ key "db/port" | parseInt }}')
    assert e.value.keys == ("db/host", "db/port")
    assert e.value.line == 2
    assert e.value.destination == "/etc/app.conf"
    assert "missing keys 'db/host', 'db/port'" in str(e.value)
    assert e.value.reads.keys == {"db/host", "db/port"}


def test_reads_record_what_to_watch() -> None:
    r = render(InlineTemplate("/c", '{{ key "a" }}{{ keyOrDefault "b" "" }}{{ tree "t" }}'
                                    '{{ ls "/l/" }}{{ service "tag.web" }}{{ env "X" }}'),
               kv={"a": b"1"}, services={})
    assert r.reads == Reads(frozenset({"a", "b"}), frozenset({"t/", "l/"}), frozenset({"web"}))
    assert r.reads.touches(keys=["t/x/y"]) and r.reads.touches(keys=["b"])
    assert r.reads.touches(services=["web"])
    assert not r.reads.touches(keys=["tx", "c", "l"], services=["db"])


def test_env_is_the_tasks_environment_only() -> None:
    assert go('{{ env "PORT0" }}|{{ env "HOME" }}', env={"PORT0": "31000"}) == "31000|"
    assert go("{{ env('PATH') }}", syntax="jinja") == ""


@pytest.mark.parametrize(("source", "line", "message"), [
    ("a\n{{ foo 1 }}", 2, 'function "foo" not defined'),
    ("a\n\n{{ if 1 }}x", 3, "{{if}} is never closed"),
    ('{{ key "a" "b" }}', 1, "wrong number of args for key: want 1 got 2"),
    ("x\n{{ end }}", 2, "unexpected {{end}}"),
    ("{{ else }}", 1, "unexpected {{else}}"),
    ('{{ "abc }}', 1, "unterminated quoted string"),
    ("{{ $x }}", 1, "undefined variable $x"),
    ("{{ range $i, $v := split \",\" \"a\" }}{{ end }}{{ $v }}", 1, "undefined variable $v"),
    ('{{ $n := 0 }}\n{{ range split "," "a" }}{{ $n = 1 }}{{ end }}', 2, "inside {{range}}"),
    ('{{ timestamp }}', 1, "not supported: renders are pure"),
    ('{{ template "x" }}', 1, "no such template 'x'"),
    ('{{ if 1 }}\n{{ define "x" }}{{ end }}{{ end }}', 2, "only allowed at the top level"),
    ("{{ break }}", 1, "outside {{range}}"),
    ("a\n{{ 1 2 }}", 2, "can't give argument to non-function"),
    ("{{ /* open", 1, "unclosed comment"),
    ('{{ key "a" ) }}', 1, "unexpected ')' in command"),
    ("{{ x", 1, "unclosed action"),
    ("{{ .A", 1, "unclosed action"),
    ("{{ }}", 1, "missing value for command"),
    ("x\n{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", None, "too deeply nested"),
])
def test_parse_errors_name_destination_line_and_cause(source: str, line: int | None,
                                                     message: str) -> None:
    problems = check_template(InlineTemplate("/etc/app.conf", source))
    assert len(problems) == 1
    where = f": line {line}" if line else ""
    assert problems[0].startswith(f"template /etc/app.conf{where}: ")
    assert message in problems[0]
    with pytest.raises(TemplateError) as e:
        go(source)
    assert e.value.line == line


@pytest.mark.parametrize(("source", "line", "message"), [
    ('a\n\n{{ key "j" | parseJSON }}', 3, "parseJSON: invalid JSON"),
    ('a\n{{ (key "j").Field }}', 2, "can't evaluate field Field in type string"),
    ('{{ range key "j" }}{{ end }}', 1, "range can't iterate over string"),
    ('x\n{{ index (split "," "a") 5 }}', 2, "index out of range"),
    ('{{ 1 | add "x" }}', 1, "add: expected a number, got string"),
])
def test_render_errors_name_the_line(source: str, line: int, message: str) -> None:
    assert check_template(InlineTemplate("/c", source)) == []
    with pytest.raises(TemplateError) as e:
        go(source, {"j": "{"})
    assert e.value.line == line
    assert message in e.value.message


def test_jinja_syntax_with_the_same_functions() -> None:
    source = ("{{ tree('config/mijndomein') | explode | toYAML }}\n"
              "{% for s in service('web') %}{{ s.Address }}:{{ s.Port }} {% endfor %}\n"
              "{{ key('list') | split(',') | join('+') }} {{ keyOrDefault('x', 'dflt') }}\n")
    kv = {"config/mijndomein/example": "data", "list": "a,b"}
    assert go(source, kv, syntax="jinja") == ("example: data\n10.0.0.1:31001 10.0.0.2:31002 \n"
                                              "a+b dflt\n")


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ key.__globals__ }}",
    "{{ service('web').append(1) }}",
    "{{ [1] | random }}",
    "{{ lipsum() }}",
    "{{ undefined_name }}",
    "{% include '/etc/passwd' %}",
])
def test_jinja_sandbox_refuses_escapes(source: str) -> None:
    with pytest.raises(TemplateError):
        go(source, syntax="jinja")


def test_jinja_syntax_errors_have_lines() -> None:
    problems = check_template(InlineTemplate("/c", "a\n{% for x in y %}", "jinja"))
    assert problems and problems[0].startswith("template /c: line 2:")
    problems = check_template(InlineTemplate("/c", "{{ 1 | nosuchfilter }}", "jinja"))
    assert problems and "nosuchfilter" in problems[0]


def test_same_input_same_output() -> None:
    source = '{{ range service "web" }}{{ .ID }}{{ end }}{{ tree "" | explode | toJSON }}'
    kv = {"b": "2", "a": "1"}
    assert go(source, kv) == go(source, dict(reversed(kv.items()))) == 'web-1web-2{"a":"1","b":"2"}'
