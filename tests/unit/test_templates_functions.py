"""consul-template's functions beyond its own test cases: Go's edge cases, errors that name
the function, the size cap on what they build, and what `services` makes a render watch."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from kade.templates import (
    FunctionError,
    InlineTemplate,
    Reads,
    ServiceEndpoint,
    TemplateError,
    check_template,
    godata,
    gotext,
    render,
)
from kade.templates.encode import to_json, to_json_pretty


def go(source: str, kv: Mapping[str, str] | None = None, **extra: object) -> str:
    data = {k: v.encode() for k, v in (kv or {}).items()}
    return render(InlineTemplate("/etc/app.conf", source), kv=data,
                  **extra).text  # type: ignore[arg-type]


@pytest.mark.parametrize(("source", "text"), [
    # Go's ReplaceAllString: an empty match right after a match is not replaced
    ('{{ "baaac" | regexReplaceAll "a*" "x" }}', "xbxcx"),
    (r'{{ "a-b c-d" | regexReplaceAll "(\\w)-(\\w)" "$2-$1" }}', "b-a d-c"),
    (r'{{ "a-b" | regexReplaceAll "(?P<x>\\w)-" "${x}_$$" }}', "a_$b"),
    (r'{{ "a-b" | regexReplaceAll "(\\w)-" "$1x" }}', "b"),  # `$1x` is the group "1x"
    ('{{ "ab" | regexMatch "^b" }} {{ "ab" | regexMatch "b$" }}', "false true"),
    (r'{{ "" | split "," }} {{ " a,b \n" | split "," }} {{ "ab" | split "" }}', "[] [a b] [a b]"),
    ('{{ "a=1;junk;b=2;" | splitToMap ";" "=" }}', "map[a:1 b:2]"),
    ('{{ "hELLO wORLD don\'t" | toTitle }}', "HELLO WORLD Don't"),
    ('{{ "010" | parseInt }} {{ "" | parseInt }} {{ "" | parseBool }} {{ "" | parseJSON }}',
     "10 0 false map[]"),
    ('{{ "18446744073709551615" | parseUint }}', "18446744073709551615"),
    ('{{ 2.5 | minimum 3 }} {{ -1 | maximum -2 }}', "2.5 -1"),
    ("{{ -7 | divide 2 }} {{ -7 | modulo 2 }} {{ 7 | modulo -2 }} {{ 7 | divide 2 }}",
     "-3 -1 1 3"),
    (r'{{ "a\n\nb" | indent 2 }}', "  a\n\n  b"),
    ('{{ range loop 3 1 }}x{{ end }}', ""),
    ('{{ "<a href=\'x\'>&" | toJSON }}', '"\\u003ca href=\'x\'\\u003e\\u0026"'),
    ('{{ "\\x41\\101\\u0041\\U00000041" }}', "AAAA"),
    ("{{ '\\xe9' }} {{ '\\101' }}", "233 65"),
])
def test_functions_behave_as_in_go(source: str, text: str) -> None:
    assert go(source) == text


def test_merge_map_merges_nested_maps_and_keeps_the_first_unless_overridden() -> None:
    a = {"x": {"p": 1, "q": 2}, "y": 1}
    b = {"x": {"q": 3, "r": 4}, "z": 5}
    assert godata.merge_map(a, b) == {"x": {"p": 1, "q": 2, "r": 4}, "y": 1, "z": 5}
    assert godata.merge_map_with_override(a, b) == {"x": {"p": 1, "q": 3, "r": 4}, "y": 1,
                                                    "z": 5}
    assert a == {"x": {"p": 1, "q": 2}, "y": 1}  # the arguments are left as they were
    # Go's mergo: an empty value is filled in; an empty value does not override
    assert godata.merge_map({"a": "", "b": 0}, {"a": "x", "b": 2}) == {"a": "x", "b": 2}
    assert godata.merge_map_with_override({"a": "k"}, {"a": ""}) == {"a": "k"}


def test_scratch_keeps_values_for_one_render() -> None:
    source = ('{{ scratch.SetX "a" 1 }}{{ scratch.SetX "a" 2 }}{{ scratch.MapSet "m" "b" 2 }}'
              '{{ scratch.MapSet "m" "a" 1 }}{{ scratch.MapSetX "m" "a" 9 }}'
              '{{ scratch.Get "a" }} {{ scratch.MapValues "m" }} {{ scratch.Key "no" }}')
    assert go(source) == "1 [1 2] false"
    assert go('{{ scratch.Get "a" }}') == "<no value>"  # a new render, a new scratch pad
    with pytest.raises(TemplateError, match="scratch.MapSet: 'a' is not a map"):
        go('{{ scratch.Set "a" 1 }}{{ scratch.MapSet "a" "k" 2 }}')


def test_jinja_syntax_has_the_same_functions() -> None:
    source = ("{{ scratch.Set('a', 'v') }}{{ scratch.Get('a') }} {{ 'a-b' | regexReplaceAll("
              "'-', '+') }} {{ envOrDefault('X', 'd') }} {{ services() | length }}")
    assert render(InlineTemplate("/c", source, "jinja"), kv={},
                  services={"web": []}).text == "v a+b d 1"


@pytest.mark.parametrize(("source", "message"), [
    ('{{ "x" | regexMatch "(a)\\\\1" }}', "regexMatch: '(a)\\\\1': invalid escape sequence"),
    ('{{ "x" | regexMatch "(?=a)" }}', "no backreferences or lookaround"),
    ('{{ "x" | indent -1 }}', "indent: the number of spaces must not be negative"),
    ('{{ "x" | parseInt }}', "parseInt: parsing 'x': invalid syntax"),
    ('{{ "-1" | parseUint }}', "parseUint: parsing '-1': invalid syntax"),
    ('{{ range loop "a" }}{{ end }}', "loop: parsing 'a': invalid syntax"),
    ('{{ "x" | mergeMap (parseJSON "{}") }}', "mergeMap: expected a map, got string"),
    ('{{ scratch.Nope "a" }}', "scratch's methods are Key, Get, Set"),
    ('{{ mustEnv "DB_URL" }}', "mustEnv: the environment variable DB_URL is not set or empty"),
    ('{{ "x" | base64URLDecode }}', "base64URLDecode: not valid URL-safe base64"),
])
def test_bad_arguments_name_the_function(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        go(source)
    assert message in str(e.value)


@pytest.mark.parametrize(("source", "message"), [
    (r'{{ "\xff" }}', r"escaped bytes b'\xff' are not UTF-8 text"),
    (r'{{ "\400" }}', "octal escape value \\400 > 255"),
    (r'{{ "\ud800" }}', "is not a valid Unicode code point"),
    ('{{ executeTemplate (print "a") }}', "executeTemplate takes a template name in quotes"),
    ('{{ define "a" }}{{ end }}\n{{ define "a" }}{{ end }}', "template 'a' is defined twice"),
    ("{{ datacenters }}", "there is one datacenter"),
    ('{{ "a" | sprig_upper }}', 'function "sprig_upper" is not supported: the Sprig'),
    ("{{ peerings }}", "there are no Consul admin partitions or peerings"),
])
def test_refused_when_the_template_is_checked(source: str, message: str) -> None:
    problems = check_template(InlineTemplate("/c", source))
    assert len(problems) == 1 and message in problems[0]


@pytest.mark.parametrize(("source", "message"), [
    ("{{ range loop 2000000 }}{{ end }}", "loop would make a list of 2000000 items"),
    ('{{ "ab" | indent 2000000 }}', "indent would make a string of 2000002 characters"),
    ('{{ "ab" | regexReplaceAll "" (printf "%900000s" "") }}', "regexReplaceAll would make a "
                                                               "string"),
    ('{{ printf "%0300000d" 0 | regexReplaceAll "(0+)" "$1$1$1$1" }}',
     "regexReplaceAll would make a string"),
])
def test_what_functions_build_is_checked_before_it_is_built(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        go(source)


def test_the_scratch_pad_is_under_the_size_cap() -> None:
    with pytest.raises(TemplateError, match="scratch.MapSet would make a map of 101 entries"):
        go('{{ range $i := loop 20 }}{{ range loop 20 }}{{ scratch.MapSet "m" (print $i "-" .)'
           ' 1 }}{{ end }}{{ end }}', max_size=100)


def test_services_lists_the_catalog_and_watches_every_service() -> None:
    web = [ServiceEndpoint("web", "w1", "10.0.0.1", 1, tags=("b", "a")),
           ServiceEndpoint("web", "w2", "10.0.0.2", 2, tags=("a", "c"))]
    out = render(InlineTemplate("/c", "{{ range services }}{{ .Name }}{{ .Tags }} {{ end }}"),
                 kv={}, services={"web": web, "db": []})
    assert out.text == "db[] web[a b c] "
    assert out.reads.touches(services=["a-service-added-later"])
    assert not out.reads.touches(keys=["k"], services=[])
    assert not Reads(services=frozenset({"web"})).touches(services=["db"])


def test_by_meta_and_by_port_refuse_other_lists() -> None:
    with pytest.raises(FunctionError, match="byPort: wrong argument type"):
        godata.by_port([{"Name": "web", "Tags": []}])
    with pytest.raises(FunctionError, match="byMeta: v: cannot parse '1zz' as a number"):
        godata.by_meta("v|int", [{"ID": "a", "Port": 1, "ServiceMeta": {"v": "1zz"}}])


def test_by_meta_names_missing_values_and_normalizes_as_consul_template() -> None:
    a = {"ID": "a", "Port": 1, "ServiceMeta": {"zone": "eu west/1", "n": ""}}
    assert list(godata.by_meta("zone,n|int,rack", [a])) == ["eu_west_1_00000__no_rack_"]


def test_encoders_and_digests() -> None:
    assert to_json_pretty({"a": "<&>"}) == '{\n  "a": "\\u003c\\u0026\\u003e"\n}'
    assert to_json("\u2028") == '"\\u2028"'
    assert gotext.base64_url_encode("\xff?>") == "w78_Pg=="
    assert gotext.base64_url_decode("w78_Pg==") == "\xff?>"
    assert gotext.trim("ab", "abcba") == "c"
    assert godata.spew_sdump({"a": [1, True]}) == (
        '(map[string]interface {}) (len=1) {\n (string) (len=1) "a": ([]interface {}) '
        "(len=2 cap=2) {\n  (int) 1,\n  (bool) true\n }\n}\n")


def test_every_function_is_known_to_the_translator_once() -> None:
    from kade.templates.gofuncs import ARITY, LOOKUPS, PURE, UNSUPPORTED
    from kade.templates.lookups import Lookups

    assert set(ARITY) == set(PURE) | set(LOOKUPS)
    assert not set(UNSUPPORTED) & set(ARITY)
    offered = set(Lookups({}, {}, {}).functions())
    assert offered - set(LOOKUPS) == {"scratch", "_tpl", "_tdot"}
