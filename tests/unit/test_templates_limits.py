"""The sandbox's size limits, in this process: what a template may build, and that nothing of
a template runs when it is only checked."""

from __future__ import annotations

import tracemalloc

import pytest
from pydantic import ValidationError

from kade.spec import parse_app
from kade.spec.templates import TemplateSpec
from kade.templates import InlineTemplate, TemplateError, check_template, render
from kade.templates.limits import human
from kade.templates.render import Syntax

ATTACKS = [
    ("{{ 'a' * 300000000 }}", "'*' would make a string of 300000000 characters"),
    ("{{ [1] * 1000000000 }}", "'*' would make a list of 1000000000 items"),
    ("{{ 2 ** 1000000000 }}", "'**' would make a number of 2000000000 bits"),
    ("{{ ('x' * 1000000) + ('y' * 100000) }}", "'+' would make a string of 1100000"),
    ("{% set ns = namespace(s='a' * 1000) %}{% for i in range(20) %}"
     "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "'~' would make a string"),
    ("{{ 'ab' | center(300000000) }}", "filter center would make a string of 300000000"),
    ("{{ (['a' * 1000000] * 1000) | join('') }}", "filter join would make a string of "
                                                  "1000000000"),
    ("{{ ('a' * 1000) | replace('', 'b' * 2000) }}", "filter replace would make a string"),
    ("{{ 'a'.ljust(1000000000) }}", "ljust() would make a string of 1000000000"),
    ("{{ ('\t' * 200000).expandtabs() }}", "expandtabs() would make a string of 1600000"),
    ("{{ ''.join(['a' * 1000000] * 3) }}", "join() would make a string of 3000000"),
    ("{{ '{:>400000000}'.format(1) }}", "format() would make a string of 400000000"),
    ("{{ '%s%s' % ('a' * 1000000, 'b' * 100000) }}", "'%' would make a string of 1100000"),
    ("{{ '%900000000d' % 1 }}", "'%' would make a string of 900000000"),
    ("{{ '%*d' % (900000000, 1) }}", "'%' would make a string of 900000000"),
    ("{{ '{:>{}}'.format(1, 900000000) }}", "format() would make a string of 900000000"),
    ("{{ '%900000000d' | format(1) }}", "filter format would make a string of 900000000"),
    ("{{ range(1000000000) | list }}", "Range too big"),
]


def jinja(source: str, max_size: int | None = None, syntax: Syntax = "jinja") -> str:
    template = InlineTemplate("/etc/app.conf", source, syntax)
    if max_size is None:
        return render(template, kv={}).text
    return render(template, kv={}, max_size=max_size).text


@pytest.mark.parametrize(("source", "message"), ATTACKS)
def test_operations_that_build_huge_values_are_refused(source: str, message: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError) as e:
            jinja(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message in str(e.value)
    assert str(e.value).startswith("template /etc/app.conf: ")
    assert peak < 64 << 20  # refused before the value was made


@pytest.mark.parametrize(("source", "message"), [
    ('{{ printf "%1000000000d" 1 }}', "printf would make a string of 1000000000"),
    ('{{ "a" | replaceAll "" (printf "%900000s" "") }}', "replaceAll would make a string"),
    ('{{ split "," (printf "%600000s" "" | replaceAll " " ",") | join (printf "%800s" "") }}',
     "join would make a string"),
    ("{{ range $i := 1000000 }}{{ end }}", "range over 1000000: at most 100000 numbers"),
])
def test_go_functions_check_sizes_too(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        jinja(source, syntax="consul-template")


def test_checking_a_template_runs_none_of_it() -> None:
    # Jinja folds constants while compiling: `'a' * 300000000` was made by the check itself.
    sources = [source for source, _ in ATTACKS]
    tracemalloc.start()
    try:
        problems = [p for i, s in enumerate(sources)
                    for p in check_template(InlineTemplate(f"/f{i}", s, "jinja"))]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problems == []
    assert peak < 64 << 20


def test_ordinary_operations_still_work() -> None:
    assert jinja("{{ 'ab' * 3 }} {{ 3 * 4 }} {{ 2 ** 10 }} {{ 'a' ~ 1 }} {{ [1] + [2] }} "
                 "{{ '%05d' % 42 }} {{ 'x' | center(5) }}| {{ 'a,b' | replace(',', ';') }} "
                 "{{ '-'.join(['a', 'b']) }} {{ '{:>3}'.format(1) }}") == \
        "ababab 12 1024 a1 [1, 2] 00042   x  | a;b a-b   1"
    assert jinja('{{ printf "%5s|" "ab" }}{{ "a,b" | split "," | join "+" }}',
                 syntax="consul-template") == "   ab|a+b"


def test_the_rendered_file_is_capped_in_bytes() -> None:
    assert jinja("{{ 'x' * 100 }}", max_size=100) == "x" * 100
    with pytest.raises(TemplateError) as e:
        jinja("{{ 'x' * 100 }}\n", max_size=100)
    assert str(e.value) == ("template /etc/app.conf: the rendered file is larger than the "
                            "100 bytes limit")
    with pytest.raises(TemplateError, match="larger than the 100 bytes limit"):
        jinja("{{ 'é' * 51 }}", max_size=100)  # 51 characters, 102 bytes
    # many pieces, each small: the stream is cut as soon as it is over
    with pytest.raises(TemplateError, match="larger than the 1 MiB limit"):
        jinja("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}")


def test_limits_read_as_units() -> None:
    assert [human(n) for n in (1 << 20, 512 << 20, 1 << 30, 3 << 10, 1000)] == \
        ["1 MiB", "512 MiB", "1 GiB", "3 KiB", "1000 bytes"]


@pytest.mark.parametrize(("mode", "message"), [
    ("4755", "sets the setuid bit"),
    ("2755", "sets the setgid bit"),
    ("1644", "sets the sticky bit"),
    ("6755", "setuid/setgid"),
    ("0666", "lets every user write the file"),
    ("0602", "lets every user write the file"),
])
def test_unsafe_file_modes_are_refused(mode: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TemplateSpec.model_validate({"destination": "/etc/x", "mode": mode})


def test_unsafe_modes_are_refused_at_admission_by_field() -> None:
    from kade.spec import SpecError

    with pytest.raises(SpecError) as e:
        parse_app({"id": "/a", "cmd": "x", "templates": [
            {"destination": "/etc/ok"}, {"destination": "/etc/x", "mode": "4755"}]})
    assert any(p.startswith("templates.1.mode: ") and "setuid" in p
               for p in e.value.problems)


def test_files_are_private_unless_asked() -> None:
    assert TemplateSpec(destination="/etc/x").file_mode == 0o600
    assert TemplateSpec(destination="/etc/x", mode="0644").file_mode == 0o644
    assert TemplateSpec(destination="/etc/x", mode="0640").file_mode == 0o640
