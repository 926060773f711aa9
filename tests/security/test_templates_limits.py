"""Hostile templates: refused with the limit they hit, in a worker process, while the event
loop of the API or the agent keeps running — first against the workers, then against a real
`kade up`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from kade.templates import (
    InlineTemplate,
    TemplateError,
    TemplateLimits,
    TemplateWorkers,
    check_templates_async,
)
from kade.templates.render import Syntax
from tests.integration.harness import Kade, wait_for

pytestmark = pytest.mark.timeout(300)
T = TypeVar("T")

LOOP_FOREVER = ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                "{% endfor %}")
GO_LOOP_FOREVER = "{{ range $i := 100000 }}{{ range $j := 100000 }}{{ end }}{{ end }}"


@pytest.fixture
def workers() -> Iterator[TemplateWorkers]:
    w = TemplateWorkers(TemplateLimits(timeout=1.0, memory=256 << 20))
    yield w
    w.close()


async def while_ticking(work: Awaitable[T]) -> tuple[T | BaseException, int]:
    """`work`'s outcome, and how often a 10 ms sleep loop ticked meanwhile: a blocked event
    loop would not tick at all."""
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        result: T | BaseException = await work
    except Exception as e:
        result = e
    done.set()
    await ticker
    return result, ticks


def template(source: str, syntax: Syntax = "jinja") -> InlineTemplate:
    return InlineTemplate("/etc/app.conf", source, syntax)


# -- the workers -----------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "syntax"), [(LOOP_FOREVER, "jinja"),
                                                (GO_LOOP_FOREVER, "consul-template")])
async def test_a_template_that_loops_forever_is_stopped_and_the_loop_keeps_ticking(
    workers: TemplateWorkers, source: str, syntax: Syntax
) -> None:
    error, ticks = await while_ticking(
        workers.render_async(template(source, syntax), kv={}))
    assert isinstance(error, TemplateError)
    assert str(error) == "template /etc/app.conf: rendering took longer than 1s"
    assert ticks > 10
    # the stopped worker is replaced: the next render is served
    out = await workers.render_async(template("ok"), kv={})
    assert out.text == "ok"


async def test_a_deploy_check_of_hostile_templates_refuses_each_by_its_limit(
    workers: TemplateWorkers
) -> None:
    sources = ["{{ 'a' * 300000000 }}", "{{ range(10**9) | list }}", "fine {{ key('x') }}",
               "{% if key('on') %}{{ 'a' * 300000000 }}{% endif %}", LOOP_FOREVER,
               LOOP_FOREVER]
    problems, ticks = await while_ticking(check_templates_async(
        [InlineTemplate(f"/etc/{i}.conf", s, "jinja") for i, s in enumerate(sources)],
        workers=workers))
    assert problems == [
        "templates.0.source: template /etc/0.conf: line 1: '*' would make a string of "
        "300000000 characters, over the 1 MiB limit",
        "templates.4.source: template /etc/4.conf: rendering took longer than 1s",
    ]  # 1: Jinja's range is capped, an error its data cannot change, but not a limit
    # 2 and 3 need their keys: what they do with them is seen when they render
    # 5 is not checked: the app is refused, and a check is not given another second
    assert ticks > 10


async def test_a_check_does_not_compile_in_the_event_loop(workers: TemplateWorkers) -> None:
    # a megabyte of expressions takes Jinja seconds to compile; the check's limit applies
    source = "{{ x }}" * 150_000
    slow = TemplateWorkers(TemplateLimits(timeout=0.05))
    try:
        problems, _ = await while_ticking(check_templates_async([template(source)],
                                                                workers=slow))
    finally:
        slow.close()
    assert problems == ["templates.0.source: template /etc/app.conf: rendering took longer "
                        "than 0.05s"]


async def test_a_template_that_needs_too_much_memory_is_stopped(
    workers: TemplateWorkers
) -> None:
    # a million lines indented by a thousand spaces: a gigabyte, made inside one C call
    # (str.replace) before any check sees it, in a worker of 256 MiB
    error, _ = await while_ticking(workers.render_async(
        template("{{ ('\\n' * 1000000) | indent(1000, blank=True) }}"), kv={}))
    assert isinstance(error, TemplateError)
    assert str(error) == "template /etc/app.conf: rendering needed more than 256 MiB of memory"
    out = await workers.render_async(template("after"), kv={})
    assert out.text == "after"


def test_workers_run_as_nobody_with_bounded_memory(workers: TemplateWorkers) -> None:
    workers.render(template("x"), kv={})
    [worker] = workers._idle
    status = Path(f"/proc/{worker.proc.pid}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    if os.geteuid() == 0:
        assert "0" not in uids
    limits = Path(f"/proc/{worker.proc.pid}/limits").read_text()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max address space"))
    assert line.split()[3] == str(256 << 20)


def test_workers_leave_with_the_process_that_started_them(tmp_path: Path) -> None:
    script = ("from kade.templates import InlineTemplate, TemplateWorkers\n"
              "w = TemplateWorkers()\n"
              "w.render(InlineTemplate('/x', 'x'), kv={})\n"
              "print(w._idle[0].proc.pid, flush=True)\n"
              "import time; time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert Path(f"/proc/{pid}").exists()
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 15,
             "the orphaned worker to leave")


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return True


# -- a real kade -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kade]:
    k = Kade(tmp_path_factory.mktemp("templates") / "kade")
    try:
        yield k.start()
    finally:
        k.cleanup()


def command_app(app_id: str, source: str, syntax: Syntax = "jinja") -> dict[str, Any]:
    return {"id": app_id, "instances": 1, "cpus": 0.01, "mem": 16,
            "container": {"docker": {"image": "kade/busybox:latest"}}, "cmd": "sleep 300",
            "templates": [{"destination": "/etc/app.conf", "source": source,
                           "syntax": syntax}]}


def refusal(kade: Kade, app: dict[str, Any]) -> str:
    answer = httpx.put(f"http://{kade.addr}/v1/apps{app['id']}", json=app, timeout=30,
                       headers=kade.auth)
    assert answer.status_code == 422, answer.text
    return answer.text


def test_kade_refuses_the_constant_blow_up_at_deploy_and_stores_nothing(kade: Kade) -> None:
    text = refusal(kade, command_app("/sec/tpl/big", "{{ 'a' * 300000000 }}"))
    assert "templates.0.source" in text and "over the 1 MiB limit" in text
    assert httpx.get(f"http://{kade.addr}/v1/apps/sec/tpl/big", timeout=5,
                     headers=kade.auth).status_code == 404


def test_kade_serves_while_a_template_loops_forever(kade: Kade) -> None:
    # Accepted: it ends when no key exists; with the key it loops, in a worker, for 2 s
    source = ("{% if key('sec/loop') %}" + LOOP_FOREVER + "{% endif %}")
    assert kade.client.request("PUT", "/v1/kv/sec/loop", content=b"on") is True
    kade.deploy(command_app("/sec/tpl/loop", source))
    answered = 0

    def failed() -> str | None:
        nonlocal answered
        assert httpx.get(f"http://{kade.addr}/v1/apps", timeout=1,
                         headers=kade.auth).status_code == 200
        answered += 1
        failure = kade.app("/sec/tpl/loop").get("lastTaskFailure") or {}
        message: str = failure.get("message") or ""
        return message if "took longer" in message else None

    message = wait_for(failed, 60, "the task to fail on the time limit")
    assert "template /etc/app.conf: rendering took longer than 2s" in message
    assert answered > 0
