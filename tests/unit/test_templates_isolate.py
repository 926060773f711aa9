"""Rendering in worker processes gives what rendering in this one gives: the text, what it
read, the same errors; and the workers are shared, replaced and stopped as they should."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
from collections.abc import Iterator

import pytest

from kade.templates import (
    InlineTemplate,
    MissingKeyError,
    ServiceEndpoint,
    TemplateError,
    TemplateLimits,
    TemplateWorkers,
    render,
)

KV = {"db/host": b"10.0.0.9", "cfg/a": b"1", "cfg/b": b"2", "raw": b"caf\xe9"}
SERVICES = {"web": [ServiceEndpoint("web", "web-1", "10.0.0.1", 31001, node="n1",
                                    tags=("v1", "prod"), meta=(("zone", "a"),))],
            "api-2": []}
TEMPLATES = [
    InlineTemplate("/a", '{{ key "db/host" }} {{ range tree "cfg" }}{{ .Key }}={{ .Value }} '
                         '{{ end }}{{ key "raw" }}'),
    InlineTemplate("/b", '{{ range service "prod.web" }}{{ .Address }}:{{ .Port }} '
                         '{{ .Tags }} {{ .ServiceMeta.zone }}{{ end }} {{ env "PORT0" }}'),
    InlineTemplate("/c", "{{ tree('cfg') | explode | toJSON }}", "jinja"),
    InlineTemplate("/d", r'{{ define "up" }}{{ . | regexReplaceAll "^(\\w+)-(\\d)$" "$2:$1" }}'
                         '{{ end }}{{ range services }}{{ template "up" .Name }}{{ end }} '
                         '{{ range loop 2 }}{{ scratch.MapSet "m" (print .) . }}{{ end }}'
                         r'{{ scratch.MapValues "m" }} {{ mustEnv "PORT0" }} {{ "\xe2\x82\xac" }}'),
]


@pytest.fixture
def workers() -> Iterator[TemplateWorkers]:
    w = TemplateWorkers(TemplateLimits(workers=2))
    yield w
    w.close()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.destination)
def test_a_worker_renders_what_this_process_renders(workers: TemplateWorkers,
                                                    template: InlineTemplate) -> None:
    here = render(template, kv=KV, services=SERVICES, env={"PORT0": "8080"})
    there = workers.render(template, kv=KV, services=SERVICES, env={"PORT0": "8080"})
    assert there == here


def test_errors_come_back_as_they_are_raised_here(workers: TemplateWorkers) -> None:
    with pytest.raises(MissingKeyError) as e:
        workers.render(InlineTemplate("/m", 'x\n{{ key "no/such" }}'), kv=KV)
    assert (e.value.keys, e.value.line, e.value.destination) == (("no/such",), 2, "/m")
    assert e.value.reads is not None and e.value.reads.keys == {"no/such"}
    with pytest.raises(TemplateError) as error:
        workers.render(InlineTemplate("/j", 'a\n{{ key "raw" | parseJSON }}'), kv=KV)
    assert str(error.value).startswith("template /j: line 2: parseJSON: invalid JSON")
    assert workers.check(InlineTemplate("/s", "{{ x")) == [
        "template /s: line 1: unclosed action"]


async def test_concurrent_renders_share_the_workers(workers: TemplateWorkers) -> None:
    template = InlineTemplate("/n", '{{ env "N" }}')
    outs = await asyncio.gather(*(workers.render_async(template, kv={}, env={"N": str(i)})
                                  for i in range(12)))
    assert [o.text for o in outs] == [str(i) for i in range(12)]
    assert len(workers._idle) <= 2


def test_a_worker_that_died_idle_is_replaced(workers: TemplateWorkers) -> None:
    template = InlineTemplate("/x", "ok")
    workers.render(template, kv={})
    [worker] = workers._idle
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    assert workers.render(template, kv={}).text == "ok"
    assert workers._idle[0] is not worker


def test_closed_workers_refuse_work() -> None:
    workers = TemplateWorkers()
    workers.render(InlineTemplate("/x", "ok"), kv={})
    [worker] = workers._idle
    workers.close()
    assert worker.proc.poll() is not None
    with pytest.raises(TemplateError, match="no template worker"):
        workers.render(InlineTemplate("/x", "ok"), kv={})


def test_workers_answer_when_kade_holds_thousands_of_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("needs 2,048 file descriptors")
    if soft != resource.RLIM_INFINITY and soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]  # e.g. idle clients
    workers = TemplateWorkers()
    try:
        assert workers.render(InlineTemplate("/x", "ok"), kv={}).text == "ok"
    finally:
        workers.close()
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_worker_sees_each_snapshot_as_it_is(workers: TemplateWorkers) -> None:
    # a worker keeps the last snapshot it was sent, and is sent only what changed
    template = InlineTemplate("/t", '{{ range tree "cfg" }}{{ .Key }}={{ .Value }} {{ end }}')
    kv = {"cfg/a": b"1", "cfg/b": b"2", "other": b"x"}
    assert workers.render(template, kv=kv).text == "a=1 b=2 "
    kv["cfg/a"] = b"changed"
    del kv["cfg/b"]
    kv["cfg/c"] = b"3"
    assert workers.render(template, kv=kv).text == "a=changed c=3 "
    assert workers.render(template, kv={}).text == ""
    assert workers.render(template, kv={"cfg/z": b"\xff"}).text == "z=\ufffd "
