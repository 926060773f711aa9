"""consul-template's own test cases, rendered by kade.

Sources (cases copied, not code):
- CT: hashicorp/consul-template `template/template_test.go`, TestTemplate_Execute
  (commit 02774d9dd3e240ff745e3fcb4e720381a424097d); `helper_splitToMap`, `helper_mustEnv*`
  and `func_hmacSHA256Hex` are from the same table as kept in a later copy (OpenBao's
  `command/template`), for functions of consul-template's current `template.go`.
- CT-funcs: hashicorp/consul-template `template/funcs_test.go` (commit
  047c0fc0b066963c434b7a3c62d7480443171e1a): Test_byMeta, Test_byPort, Test_sha256Hex,
  Test_md5sum, Test_hmacSHA256Hex, each as a template calling the function.
- Go: Go's text/template and string literal rules that the cases above rely on.

Cases that need Vault (`secret`, `secrets`, `pkiCert`), Connect (`caLeaf`, `caRoots`,
`connect`), Nomad or plugins (`plugin`) are left out. Each case is one of:
- pure: a function or construct that computes from its arguments (the ≥ 95% target);
- lookup: reads kade's snapshot (KV, services, the task's environment);
- outside: needs what a render does not have (files, the clock, the host, options).

A case kade answers differently is a `Miss`: the test asserts what kade does, and why; each
miss is listed in docs/configuration.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from kade.templates import (
    InlineTemplate,
    MissingKeyError,
    ServiceEndpoint,
    TemplateError,
    render,
)

Kind = Literal["pure", "lookup", "outside"]
ERROR = "<error>"  # the upstream case expects an error


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    want: str  # the rendered text, or ERROR
    kind: Kind = "pure"
    kv: Mapping[str, str] = field(default_factory=dict)
    services: Mapping[str, Sequence[ServiceEndpoint]] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Miss(Case):
    """A case kade answers otherwise: `kade` is its text, or an error message's part."""

    kade: str = ""
    kade_error: bool = True
    reason: str = ""


def ep(id_: str = "", address: str = "", *, node: str = "", port: int = 0,
       tags: tuple[str, ...] = (), meta: Mapping[str, str] | None = None) -> ServiceEndpoint:
    return ServiceEndpoint("webapp", id_, address, port, node=node, tags=tags,
                           meta=tuple(sorted((meta or {}).items())))


TWO_NODES = {"webapp": [ep("w1", "1.2.3.4", node="node1"), ep("w2", "5.6.7.8", node="node2")]}


def tagged(*tags: tuple[str, ...]) -> dict[str, list[ServiceEndpoint]]:
    addresses = ["1.2.3.4", "5.6.7.8"]
    return {"webapp": [ep(f"w{i}", addresses[i], tags=t) for i, t in enumerate(tags)]}


LIST = {"list/": "", "list/foo/bar": "a", "list/zip/zap": "b"}

# Test_byMeta's services
META = {"webapp": [
    ep("svcA", meta={"version": "v2", "version_num": "2", "bad_version_num": "1zz",
                     "env": "dev"}),
    ep("svcB", meta={"version": "v11", "version_num": "11", "bad_version_num": "1zz",
                     "env": "prod"}),
    ep("svcC", meta={"version": "v11", "version_num": "11", "bad_version_num": "1zz",
                     "env": "prod"}),
]}
BY_META = ('{{ range $k, $v := service "webapp" | byMeta "%s" }}{{ $k }}:'
           '{{ range $v }}{{ .ID }}{{ end }};{{ end }}')
BY_PORT = ('{{ range $p, $v := service "webapp" | byPort }}{{ $p }}:'
           '{{ range $v }}{{ .ID }}{{ end }};{{ end }}')

CASES: list[Case] = [
    # -- CT: TestTemplate_Execute --------------------------------------------------------------
    Case("nil", "test", "test"),
    Case("bad_func", "{{ bad_func }}", ERROR),
    Miss("missing_deps", '{{ key "foo" }}', "", kind="lookup", kade="missing key 'foo'",
         reason="a missing key is not rendered as empty: the task waits for it (consul-template "
                "also waits, and renders the empty text meanwhile)"),
    Miss("err_missing_keys__true", "{{ .Data.Foo }}", ERROR, kind="outside",
         kade="<no value>", kade_error=False,
         reason="there is no error_on_missing_key option: a missing field prints <no value>"),
    Case("err_missing_keys__false", "{{ .Data.Foo }}", "<no value>"),
    Case("func_base64Decode", '{{ base64Decode "aGVsbG8=" }}', "hello"),
    Case("func_base64Decode_bad", '{{ base64Decode "aGVsxxbG8=" }}', ERROR),
    Case("func_base64Encode", '{{ base64Encode "hello" }}', "aGVsbG8="),
    Case("func_base64URLDecode", '{{ base64URLDecode "dGVzdGluZzEyMw==" }}', "testing123"),
    Case("func_base64URLDecode_bad", '{{ base64URLDecode "aGVsxxbG8=" }}', ERROR),
    Case("func_base64URLEncode", '{{ base64URLEncode "testing123" }}', "dGVzdGluZzEyMw=="),
    Case("func_hmacSHA256Hex", '{{ hmacSHA256Hex "somemessage" "somekey" }}',
         "6116e95f2827172aa6ef8b22b883f6a77e966aefc129c6b8228ebd0aac74e98d"),
    Miss("func_datacenters", "{{ datacenters }}", "[dc1 dc2]", kind="outside",
         kade='function "datacenters" is not supported: there is one datacenter',
         reason="kade has one datacenter"),
    Miss("func_datacenters_ignore", "{{ datacenters true }}", "[dc1 dc2]", kind="outside",
         kade='function "datacenters" is not supported', reason="kade has one datacenter"),
    Case("func_envOrDefault", '{{ envOrDefault "SET_VAR" "100" }} '
         '{{ envOrDefault "EMPTY_VAR" "200" }} {{ envOrDefault "UNSET_VAR" "300" }}',
         "400  300", kind="lookup", env={"SET_VAR": "400", "EMPTY_VAR": ""}),
    Miss("func_file", '{{ file "/path/to/file" }}', "content", kind="outside",
         kade='function "file" is not supported',
         reason="a template cannot read files of the host"),
    Case("func_key", '{{ key "key" }}', "5", kind="lookup", kv={"key": "5"}),
    Case("func_keyExists", '{{ keyExists "key" }} {{ keyExists "no_key" }}', "true false",
         kind="lookup", kv={"key": "x"}),
    Case("func_keyOrDefault", '{{ keyOrDefault "key" "100" }} {{ keyOrDefault "no_key" "200" }}',
         "150 200", kind="lookup", kv={"key": "150"}),
    Case("func_ls", '{{ range ls "list" }}{{ .Key }}={{ .Value }}{{ end }}', "foo=bar",
         kind="lookup", kv={"list/": "", "list/foo": "bar", "list/foo/zip": "zap"}),
    Miss("func_node", "{{ with node }}{{ .Node.Node }}{{ range .Services }}{{ .Service }}"
         "{{ end }}{{ end }}", "node1service1", kind="outside",
         kade='function "node" is not supported',
         reason="a render's input has services, not nodes (`service` gives .Node)"),
    Miss("func_node_nil_pointer_evaluation", "{{ $v := node }}{{ $v.Node }}", "<no value>",
         kind="outside", kade='function "node" is not supported',
         reason="a render's input has services, not nodes"),
    Miss("func_nodes", "{{ range nodes }}{{ .Node }}{{ end }}", "node1node2", kind="outside",
         kade='function "nodes" is not supported',
         reason="a render's input has services, not nodes"),
    Case("func_service", '{{ range service "webapp" }}{{ .Address }}{{ end }}',
         "1.2.3.45.6.7.8", kind="lookup", services=TWO_NODES),
    Case("func_service_filter", '{{ range service "webapp" "passing,any" }}{{ .Address }}'
         "{{ end }}", "1.2.3.45.6.7.8", kind="lookup", services=TWO_NODES),
    Case("func_services", "{{ range services }}{{ .Name }}{{ end }}", "service1service2",
         kind="lookup", services={"service2": [], "service1": []}),
    Case("func_tree", '{{ range tree "key" }}{{ .Key }}={{ .Value }}{{ end }}',
         "admin/port=1134maxconns=5minconns=2", kind="lookup",
         kv={"key/": "", "key/admin/port": "1134", "key/maxconns": "5", "key/minconns": "2"}),
    Case("scratch.Key", '{{ scratch.Set "a" "2" }}{{ scratch.Key "a" }}', "true"),
    Case("scratch.Get", '{{ scratch.Set "a" "2" }}{{ scratch.Get "a" }}', "2"),
    Case("scratch.SetX", '{{ scratch.SetX "a" "2" }}{{ scratch.SetX "a" "1" }}'
         '{{ scratch.Get "a" }}', "2"),
    Case("scratch.MapSet", '{{ scratch.MapSet "a" "foo" "bar" }}{{ scratch.MapValues "a" }}',
         "[bar]"),
    Case("scratch.MapSetX", '{{ scratch.MapSetX "a" "foo" "bar" }}'
         '{{ scratch.MapSetX "a" "foo" "baz" }}{{ scratch.MapValues "a" }}', "[bar]"),
    Case("helper_by_key", '{{ range $key, $pairs := tree "list" | byKey }}{{ $key }}:'
         "{{ range $pairs }}{{ .Key }}={{ .Value }}{{ end }}{{ end }}", "foo:bar=azip:zap=b",
         kv=LIST),
    Case("helper_by_tag", '{{ range $tag, $services := service "webapp" | byTag }}{{ $tag }}:'
         "{{ range $services }}{{ .Address }}{{ end }}{{ end }}",
         "prod:1.2.3.4staging:1.2.3.45.6.7.8", services=tagged(("prod", "staging"),
                                                                ("staging",))),
    Case("helper_contains", '{{ range service "webapp" }}{{ if .Tags | contains "prod" }}'
         "{{ .Address }}{{ end }}{{ end }}", "1.2.3.4",
         services=tagged(("prod", "staging"), ("staging",))),
    Case("helper_containsAll", r'{{ $requiredTags := parseJSON "[\"prod\",\"us-realm\"]" }}'
         '{{ range service "webapp" }}{{ if .Tags | containsAll $requiredTags }}'
         "{{ .Address }}{{ end }}{{ end }}", "1.2.3.4",
         services=tagged(("prod", "us-realm"), ("prod", "ca-realm"))),
    Case("helper_containsAll__empty", '{{ $requiredTags := parseJSON "[]" }}'
         '{{ range service "webapp" }}{{ if .Tags | containsAll $requiredTags }}'
         "{{ .Address }}{{ end }}{{ end }}", "1.2.3.45.6.7.8",
         services=tagged(("prod", "us-realm"), ("prod", "ca-realm"))),
    Case("helper_containsAny", r'{{ $acceptableTags := parseJSON "[\"v2\",\"v3\"]" }}'
         '{{ range service "webapp" }}{{ if .Tags | containsAny $acceptableTags }}'
         "{{ .Address }}{{ end }}{{ end }}", "5.6.7.8",
         services=tagged(("prod", "v1"), ("prod", "v2"))),
    Case("helper_containsAny__empty", '{{ $acceptableTags := parseJSON "[]" }}'
         '{{ range service "webapp" }}{{ if .Tags | containsAny $acceptableTags }}'
         "{{ .Address }}{{ end }}{{ end }}", "",
         services=tagged(("prod", "v1"), ("prod", "v2"))),
    Case("helper_containsNone", r'{{ $forbiddenTags := parseJSON "[\"devel\",\"staging\"]" }}'
         '{{ range service "webapp" }}{{ if .Tags | containsNone $forbiddenTags }}'
         "{{ .Address }}{{ end }}{{ end }}", "1.2.3.4",
         services=tagged(("prod", "v1"), ("devel", "v2"))),
    Case("helper_containsNone__empty", '{{ $forbiddenTags := parseJSON "[]" }}'
         '{{ range service "webapp" }}{{ if .Tags | containsNone $forbiddenTags }}'
         "{{ .Address }}{{ end }}{{ end }}", "1.2.3.45.6.7.8",
         services=tagged(("staging", "v1"), ("devel", "v2"))),
    Case("helper_containsNotAll", r'{{ $excludingTags := parseJSON "[\"es-v1\",\"es-v2\"]" }}'
         '{{ range service "webapp" }}{{ if .Tags | containsNotAll $excludingTags }}'
         "{{ .Address }}{{ end }}{{ end }}", "1.2.3.4",
         services=tagged(("prod", "es-v1"), ("prod", "hybrid", "es-v1", "es-v2"))),
    Case("helper_containsNotAll__empty", '{{ $excludingTags := parseJSON "[]" }}'
         '{{ range service "webapp" }}{{ if .Tags | containsNotAll $excludingTags }}'
         "{{ .Address }}{{ end }}{{ end }}", "",
         services=tagged(("prod", "es-v1"), ("prod", "hybrid", "es-v1", "es-v2"))),
    Case("helper_env", '{{ env "CT_TEST" }}', "1", kind="lookup", env={"CT_TEST": "1"}),
    Case("helper_mustEnv", '{{ mustEnv "CT_TEST" }}', "1", kind="lookup",
         env={"CT_TEST": "1"}),
    Case("helper_mustEnv_negative", '{{ mustEnv "CT_TEST_NONEXISTENT" }}', ERROR,
         kind="lookup"),
    Case("helper_env__override", '{{ env "CT_TEST" }}', "2", kind="lookup",
         env={"CT_TEST": "2"}),
    Case("helper_executeTemplate", '{{ define "custom" }}{{ key "foo" }}{{ end }}'
         '{{ executeTemplate "custom" }}', "bar", kv={"foo": "bar"}),
    Case("helper_executeTemplate__dot", '{{ define "custom" }}{{ key . }}{{ end }}'
         '{{ executeTemplate "custom" "foo" }}', "bar", kv={"foo": "bar"}),
    Case("helper_mergeMap", r'{{ $base := "{\"voo\":{\"bar\":\"v\"}}" | parseJSON}}'
         '{{ $role := tree "list" | explode | mergeMap $base}}'
         "{{ range $k, $v := $role }}{{ $k }}{{ $v }}{{ end }}",
         "foomap[bar:a]voomap[bar:v]zipmap[zap:b]", kv=LIST),
    Case("helper_mergeMapWithOverride",
         r'{{ $base := "{\"zip\":{\"zap\":\"t\"},\"voo\":{\"bar\":\"v\"}}" | parseJSON}}'
         '{{ $role := tree "list" | explode | mergeMapWithOverride $base}}'
         "{{ range $k, $v := $role }}{{ $k }}{{ $v }}{{ end }}",
         "foomap[bar:a]voomap[bar:v]zipmap[zap:b]", kv=LIST),
    Case("helper_explode", '{{ range $k, $v := tree "list" | explode }}{{ $k }}{{ $v }}'
         "{{ end }}", "foomap[bar:a]zipmap[zap:b]", kv=LIST),
    Case("helper_explodemap", '{{ scratch.MapSet "explode-test" "foo/bar" "a"}}'
         '{{ scratch.MapSet "explode-test" "qux" "c"}}'
         '{{ scratch.MapSet "explode-test" "zip/zap" "d"}}'
         '{{ scratch.Get "explode-test" | explodeMap }}',
         "map[foo:map[bar:a] qux:c zip:map[zap:d]]"),
    Case("helper_in", '{{ range service "webapp" }}{{ if "prod" | in .Tags }}{{ .Address }}'
         "{{ end }}{{ end }}", "1.2.3.4", services=tagged(("prod", "staging"), ("staging",))),
    Case("helper_indent", r'{{ "hello\nhello\r\nHELLO\r\nhello\nHELLO" | indent 4 }}',
         "    hello\n    hello\r\n    HELLO\r\n    hello\n    HELLO"),
    Case("helper_indent_negative", r'{{ "hello\nhello\r\nHELLO\r\nhello\nHELLO" | indent -4 }}',
         ERROR),
    Case("helper_indent_zero", r'{{ "hello\nhello\r\nHELLO\r\nhello\nHELLO" | indent 0 }}',
         "hello\nhello\r\nHELLO\r\nhello\nHELLO"),
    Case("helper_loop", "{{ range loop 3 }}1{{ end }}", "111"),
    Case("helper_loop__i", "{{ range $i := loop 3 }}{{ $i }}{{ end }}", "012"),
    Case("helper_loop_start", "{{ range loop 1 3 }}1{{ end }}", "11"),
    Case("helper_loop_text", '{{ range loop 1 "3" }}1{{ end }}', "11"),
    Case("helper_loop_parseInt", '{{ $i := print "3" | parseInt }}{{ range loop 1 $i }}1'
         "{{ end }}", "11"),
    Case("helper_loop_var", "{{$n := 3 }}{{ range $i := loop $n }}{{ $i }}{{ end }}", "012"),
    Case("helper_join", '{{ "a,b,c" | split "," | join ";" }}', "a;b;c"),
    Case("helper_trim", '{{ "!!hello world!!" | trim "!!" }}', "hello world"),
    Case("helper_trimPrefix", '{{ "hello world!!" | trimPrefix "hello " }}', "world!!"),
    Case("helper_trimSuffix", '{{ "hello world!!" | trimSuffix " world!!" }}', "hello"),
    Case("helper_parseBool", '{{ "true" | parseBool }}', "true"),
    Case("helper_parseFloat", '{{ "1.2" | parseFloat }}', "1.2"),
    Case("helper_parseFloat_format", '{{ "1.0" | parseFloat | printf "%.1f"}}', "1.0"),
    Case("helper_parseInt", '{{ "-1" | parseInt }}', "-1"),
    Case("helper_parseJSON", r'{{ "{\"foo\": \"bar\"}" | parseJSON }}', "map[foo:bar]"),
    Case("helper_parseUint", '{{ "1" | parseUint }}', "1"),
    Case("helper_parseYAML", '{{ "foo: bar" | parseYAML }}', "map[foo:bar]"),
    Case("helper_parseYAMLv2", r'{{ "foo: bar\nbaz: \"foo\"" | parseYAML }}',
         "map[baz:foo foo:bar]"),
    Case("helper_parseYAMLnested", r'{{ "foo:\n  bar: \"baz\"\n  baz: 7" | parseYAML }}',
         "map[foo:map[bar:baz baz:7]]"),
    Case("helper_regexMatch", '{{ "foo" | regexMatch "[a-z]+" }}', "true"),
    Case("helper_regexReplaceAll", r'{{ "foo" | regexReplaceAll "\\w" "x" }}', "xxx"),
    Case("helper_replaceAll", '{{ "hello my hello" | regexReplaceAll "hello" "bye" }}',
         "bye my bye"),
    Case("helper_split", '{{ "a,b,c" | split "," }}', "[a b c]"),
    Case("helper_splitToMap", '{{ "a:x,b:y,c:z" | splitToMap "," ":" }}',
         "map[a:x b:y c:z]"),
    Miss("helper_timestamp", "{{ timestamp }}", "1970-01-01T00:00:00Z", kind="outside",
         kade="renders are pure", reason="renders are pure: the time is not an input (a "
                                         "render would rewrite the file each time)"),
    Miss("helper_helper_timestamp__formatted", '{{ timestamp "2006-01-02" }}', "1970-01-01",
         kind="outside", kade="renders are pure", reason="the time is not an input"),
    Case("helper_toJSON", '{{ "a,b,c" | split "," | toJSON }}', '["a","b","c"]'),
    Case("helper_toUnescapedJSON", '{{ "a?b&c,x?y&z" | split "," | toUnescapedJSON }}',
         '["a?b&c","x?y&z"]'),
    Case("helper_toUnescapedJSONPretty", '{{ tree "key" | explode | toUnescapedJSONPretty }}',
         '{\n  "a": "b&c",\n  "k": "<>&&",\n  "x": "y&z"\n}',
         kv={"key/a": "b&c", "key/x": "y&z", "key/k": "<>&&"}),
    Case("helper_toLower", '{{ "HI" | toLower }}', "hi"),
    Case("helper_toTitle", '{{ "this is a sentence" | toTitle }}', "This Is A Sentence"),
    Case("helper_toTOML", r'{{ "{\"foo\":\"bar\"}" | parseJSON | toTOML }}', 'foo = "bar"'),
    Case("helper_toUpper", '{{ "hi" | toUpper }}', "HI"),
    Case("helper_toYAML", r'{{ "{\"foo\":\"bar\"}" | parseJSON | toYAML }}', "foo: bar"),
    Case("helper_trimSpace", r'{{ "\t hi\n " | trimSpace }}', "hi"),
    Miss("helper_sockaddr", r'{{ sockaddr "GetAllInterfaces | include \"flag\" \"loopback\" '
         r'| include \"type\" \"IPv4\" | sort \"address\" | limit 1 | attr \"address\""}}',
         "127.0.0.1", kind="outside", kade='function "sockaddr" is not supported',
         reason="a template cannot see the host's network interfaces"),
    Case("math_add", "{{ 2 | add 2 }}", "4"),
    Case("math_subtract", "{{ 2 | subtract 2 }}", "0"),
    Case("math_multiply", "{{ 2 | multiply 2 }}", "4"),
    Case("math_divide", "{{ 2 | divide 2 }}", "1"),
    Case("math_modulo", "{{ 3 | modulo 2 }}", "1"),
    Case("math_minimum", "{{ 3 | minimum 2 }}", "2"),
    Case("math_maximum", "{{ 3 | maximum 2 }}", "3"),
    Miss("spew_sdump_simple_output", '{{ timestamp "2006-01-02" | spew_sdump }}',
         '(string) (len=10) "1970-01-01"\n', kind="outside", kade="renders are pure",
         reason="it dumps `timestamp`, and the time is not an input"),
    Case("spew_sdump_helper_split", '{{ "a,b,c" | split "," | spew_sdump}}',
         '([]string) (len=3 cap=3) {\n (string) (len=1) "a",\n (string) (len=1) "b",\n'
         ' (string) (len=1) "c"\n}\n'),
    # -- CT-funcs: the functions' own tests, as templates -------------------------------------
    Case("byMeta_version_string", BY_META % "version", "v11:svcBsvcC;v2:svcA;",
         services=META),
    Case("byMeta_version_number", BY_META % "version_num|int", "00002:svcA;00011:svcBsvcC;",
         services=META),
    Case("byMeta_bad_version_number", BY_META % "bad_version_num|int", ERROR, services=META),
    Case("byMeta_multiple_meta", BY_META % "env,version_num|int,version",
         "dev_00002_v2:svcA;prod_00011_v11:svcBsvcC;", services=META),
    Case("byPort_HealthService", BY_PORT, "8080:svcAsvcB;9090:svcC;",
         services={"webapp": [ep("svcA", port=8080), ep("svcB", port=8080),
                              ep("svcC", port=9090)]}),
    Miss("byPort_CatalogService", '{{ range $p, $v := catalogService "webapp" | byPort }}'
         "{{ $p }}{{ end }}", "8080:svcAsvcB;9090:svcC;", kind="lookup",
         kade='function "catalogService" not defined',
         reason="there is no catalogService: `service` gives the healthy endpoints"),
    Case("byPort_empty", BY_PORT, "", services={"webapp": []}),
    Case("byPort_unsupported_type", "{{ services | byPort }}", ERROR,
         services={"webapp": [ep("svcA", port=8080)]}),
    Case("sha256Hex", '{{ "bladibla" | sha256Hex }}',
         "54cf4c66bcabb5c20e25331c01dd600b73369e97a947861bd8d3a0e0b8b3d70b"),
    Case("md5sum", '{{ "bladibla" | md5sum }}', "c6886abd136f7daece35aebb01f1b713"),
    Case("hmacSHA256Hex", '{{ hmacSHA256Hex "bladibla" "foobar" }}',
         "82cd4c36fa45a1936e93d005ea2fd008350339bb9246a3ba0c8dfecb9d77155b"),
    # -- Go: string literals and missing values ------------------------------------------------
    Case("go_hex_escapes_are_bytes", r'{{ "\xe2\x82\xac \u20ac \342\202\254" }}', "€ € €"),
    Case("go_missing_map_key", r'{{ $m := parseJSON "{}" }}{{ $m.a }}', "<no value>"),
    Case("go_field_of_missing_field", r'{{ (parseJSON "{}").a.b }}', "<no value>"),
]


def run(case: Case) -> tuple[str, bool]:
    """(text, False) or (error message, True)."""
    try:
        out = render(InlineTemplate("/out", case.source),
                     kv={k: v.encode() for k, v in case.kv.items()},
                     services=case.services, env=case.env)
    except (TemplateError, MissingKeyError) as e:
        return str(e), True
    return out.text, False


def _id(case: Case) -> str:
    return case.name


@pytest.mark.parametrize("case", [c for c in CASES if not isinstance(c, Miss)], ids=_id)
def test_upstream_case_renders_as_consul_template(case: Case) -> None:
    text, failed = run(case)
    if case.want == ERROR:
        assert failed, f"{case.name}: rendered {text!r}, consul-template refuses it"
    else:
        assert not failed, text
        assert text == case.want


@pytest.mark.parametrize("case", [c for c in CASES if isinstance(c, Miss)], ids=_id)
def test_upstream_miss_is_what_the_docs_say(case: Case) -> None:
    assert isinstance(case, Miss) and case.reason
    text, failed = run(case)
    assert failed == case.kade_error, text
    if failed:
        assert case.kade in text
    else:
        assert text == case.kade
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert f"`{case.name}`" in docs, f"{case.name} is not listed in docs/configuration.md"


def _rate(kind: Kind) -> tuple[int, int]:
    cases = [c for c in CASES if c.kind == kind]
    return sum(not isinstance(c, Miss) for c in cases), len(cases)


def test_pure_function_cases_pass_at_95_percent_or_more() -> None:
    passed, total = _rate("pure")
    assert passed / total >= 0.95, f"{passed}/{total}"
    assert (passed, total) == (90, 90)  # the figures in docs/configuration.md
    lookups = _rate("lookup")
    assert lookups == (13, 15)
