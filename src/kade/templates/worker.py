"""The process templates compile and render in: `python -m kade.templates.worker MEMORY`.

Started and fed by `kade.templates.isolate`: one JSON request per line on stdin, one JSON
answer per line on stdout. Before it reads a request it gives up what a template must
never have: root (it runs as `nobody` when started as root), and more address space than
MEMORY bytes. It leaves when its parent does, or after an answer that says `fatal` (a
render that ran out of memory may have left the interpreter in any state).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import resource
import sys
import threading
import time
from typing import Any, BinaryIO

from kade.templates.limits import SizeError, human
from kade.templates.lookups import Reads, ServiceEndpoint
from kade.templates.render import (
    InlineTemplate,
    MissingKeyError,
    TemplateError,
    check_template,
    render,
)

_NOBODY = 65534
# Renders that import and compile what any template may use, before privileges go.
_WARM_UP = [
    InlineTemplate("/w", '{{ tree "" | explode | toYAML }}{{ "{}" | parseJSON | toJSON }}'
                         '{{ "a: 1" | parseYAML | toTOML }}{{ printf "%5.2f %q" 1.0 "x" }}'
                         '{{ "x" | base64Encode | base64Decode | urlquery }}{{ 1 | add 2 }}'),
    InlineTemplate("/w", "{% set ns = namespace(a=1) %}{% for i in range(2) %}{% if i %}"
                         "{% break %}{% endif %}{% endfor %}{{ '%s' % 1 ~ '{}'.format(2) "
                         "| center(5) | indent(2) | replace('a', 'b') }}", "jinja"),
    InlineTemplate("/w", "{{ x.y }}", "jinja"),
    InlineTemplate("/w", "{% if %}", "jinja"),
    InlineTemplate("/w", "{{ end }}"),
]


def reads_json(reads: Reads) -> dict[str, list[str]]:
    return {"keys": sorted(reads.keys), "prefixes": sorted(reads.prefixes),
            "services": sorted(reads.services)}


def error_json(e: TemplateError) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": e.destination, "line": e.line,
                           "message": e.message}
    if e.reads is not None:
        out["reads"] = reads_json(e.reads)
    if isinstance(e, MissingKeyError):
        out["keys"] = list(e.keys)
    return out


def _template(data: dict[str, Any]) -> InlineTemplate:
    return InlineTemplate(data["destination"], data["source"], data["syntax"])


def handle(request: dict[str, Any], memory: int, kv: dict[str, bytes]) -> dict[str, Any]:
    """One request → its answer; `kv` is the KV snapshot this worker holds, which a render
    request brings up to date. `fatal` in the answer: this process must not serve more."""
    template = _template(request["template"])
    try:
        if request["op"] == "check":
            problems = check_template(template) or _trial(template, request["max_size"])
            return {"ok": {"problems": problems}}
        services = {name: [ServiceEndpoint(**{**e, "tags": tuple(e["tags"]),
                                              "meta": tuple(map(tuple, e["meta"]))})
                           for e in endpoints]
                    for name, endpoints in request["services"].items()}
        for k in request["kv"]["delete"]:
            kv.pop(k, None)
        kv.update((k, v.encode()) for k, v in request["kv"]["set"].items())
        out = render(template, kv=kv, services=services, env=request["env"],
                     max_size=request["max_size"], data=request.get("data"))
        return {"ok": {"text": out.text, "reads": reads_json(out.reads)}}
    except TemplateError as e:
        if isinstance(e.__cause__, MemoryError):
            return _out_of_memory(template, memory)
        return {"error": error_json(e)}
    except MemoryError:
        return _out_of_memory(template, memory)


def _out_of_memory(template: InlineTemplate, memory: int) -> dict[str, Any]:
    return {"error": {"destination": template.destination, "line": None,
                      "message": f"rendering needed more than {human(memory)} of memory"},
            "fatal": True}


def _trial(template: InlineTemplate, max_size: int) -> list[str]:
    """A render with no data (every key missing, no services): a template over the limits
    even then is refused when it is deployed. Other errors depend on the data it will have."""
    try:
        render(template, kv={}, max_size=max_size)
    except TemplateError as e:
        if isinstance(e.__cause__, SizeError):
            line = None if isinstance(e, MissingKeyError) else e.line
            return [str(TemplateError(template.destination, line, str(e.__cause__)))]
        if isinstance(e.__cause__, MemoryError):
            raise e.__cause__ from None
    return []


def _drop_privileges() -> None:
    if os.geteuid() != 0:
        return
    try:
        uid, gid = pwd.getpwnam("nobody")[2:4]
    except KeyError:
        uid = gid = _NOBODY
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _leave_with_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve(memory: int, inp: BinaryIO, out: BinaryIO) -> None:
    for template in _WARM_UP:
        with contextlib.suppress(TemplateError):
            render(template, kv={})
    _drop_privileges()
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    _leave_with_parent()
    out.write(b'{"ready": true}\n')
    out.flush()
    kv: dict[str, bytes] = {}
    for line in inp:
        answer = handle(json.loads(line), memory, kv)
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
        if answer.get("fatal"):
            return


def main() -> None:
    # The answers own stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(int(sys.argv[1]), sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
