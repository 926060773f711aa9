"""Compiling and rendering templates of others, in worker processes with time and memory
limits; async entry points for the API (`check_templates_async`) and the agent.

Why processes, not threads: a template is a program, and CPU-bound Python in a thread
cannot be stopped — `{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}`
never returns, and C code (a YAML parse, a `str.format` width) allocates before any check
can look. The sandbox's size checks (`kade.templates.sandbox`) give a clear error for the
blow-ups they can see; a worker process bounds everything else by construction: it is
killed when a template takes longer than the time limit (default 2 s) and cannot grow past
its address-space limit (`RLIMIT_AS`, default 512 MiB), so a template can cost kade one
worker and a moment of one CPU, never the event loop or the memory of the API.

A few long-lived workers (up to 2 per `TemplateWorkers`) are started when needed and
reused, so a render costs a round trip over a pipe, not a process start, and carries only
the KV keys changed since that worker's last render; a killed worker is replaced on the
next call. Requests and answers are JSON lines: a worker runs as `nobody`, and nothing it
sends can make the parent run code (as pickle could). Callers wait in a thread, so the
event loop only awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from kade.templates.limits import DEFAULT_MAX_SIZE
from kade.templates.lookups import Reads, ServiceEndpoint
from kade.templates.render import (
    MissingKeyError,
    Rendered,
    TemplateError,
    TemplateSource,
    duplicate_destinations,
    source_problem,
)

_START_TIMEOUT = 60.0  # a worker's start (imports) on a busy machine; not a template's time
_ENV_KEPT = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "LC_CTYPE")


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    max_size: int = DEFAULT_MAX_SIZE  # bytes of a rendered file (and items of any value)
    timeout: float = 2.0  # seconds for one template to compile, or to render
    memory: int = 512 << 20  # bytes of address space of a worker process
    workers: int = 2  # processes rendering at the same time


class _WorkerDied(Exception):
    def __init__(self, message: str, *, idle: bool = False) -> None:
        super().__init__(message)
        self.idle = idle  # it died before it was given the request


class _Worker:
    """One worker process and its pipes; used by one call at a time."""

    def __init__(self, memory: int) -> None:
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEPT}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kade.templates.worker", str(memory)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/")
        self._pending = bytearray()
        self.kv: dict[str, bytes] = {}  # the KV snapshot the worker holds
        try:
            if self._answer(time.monotonic() + _START_TIMEOUT) is None:
                raise _WorkerDied("the template worker did not start in time")
        except BaseException:
            self.kill()
            raise

    def ask(self, request: dict[str, Any], timeout: float,
            kv: Mapping[str, bytes] | None = None) -> dict[str, Any] | None:
        """The answer, or None when none came within `timeout` seconds. `kv` goes as the
        changes from the snapshot this worker holds: a KV tree of 50 MB is not copied for
        each render, only compared."""
        stdin = self.proc.stdin
        assert stdin is not None
        if kv is not None:
            held = self.kv
            request["kv"] = {
                "set": {k: v.decode("utf-8", errors="replace") for k, v in kv.items()
                        if held.get(k) != v},
                "delete": [k for k in held if k not in kv],
            }
        try:
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
        except OSError as e:
            raise _WorkerDied(f"the template worker is gone ({e})", idle=True) from None
        if kv is not None:
            self.kv = dict(kv)
        return self._answer(time.monotonic() + timeout)

    def _answer(self, deadline: float) -> dict[str, Any] | None:
        stdout = self.proc.stdout
        assert stdout is not None
        fd = stdout.fileno()
        poller = select.poll()  # not select(): kade may hold more than 1,024 descriptors
        poller.register(fd, select.POLLIN)
        while (end := self._pending.find(b"\n")) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if poller.poll(max(1, math.ceil(left * 1000))):
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self.kill()
                    raise _WorkerDied("the template worker stopped (exit status "
                                      f"{self.proc.returncode})")
                self._pending += chunk
        line = bytes(self._pending[:end])
        del self._pending[:end + 1]
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                _close(pipe)


def _close(pipe: IO[bytes]) -> None:
    with contextlib.suppress(OSError):  # a flush to a dead worker
        pipe.close()


def _template_json(t: TemplateSource) -> dict[str, str]:
    return {"destination": t.destination, "source": t.source, "syntax": t.syntax}


def _reads(data: Mapping[str, Sequence[str]]) -> Reads:
    return Reads(frozenset(data["keys"]), frozenset(data["prefixes"]),
                 frozenset(data["services"]))


def _error(data: dict[str, Any]) -> TemplateError:
    reads = _reads(data["reads"]) if "reads" in data else None
    if "keys" in data:
        return MissingKeyError(data["destination"], data["line"], data["keys"],
                               reads or Reads())
    return TemplateError(data["destination"], data["line"], data["message"], reads)


class TemplateWorkers:
    """A few worker processes; every method may be called from any thread."""

    def __init__(self, limits: TemplateLimits | None = None) -> None:
        self.limits = limits or TemplateLimits()
        self._slots = threading.BoundedSemaphore(self.limits.workers)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = False
        # Stops the workers when this object goes, at the latest when the process exits.
        self._finalizer = weakref.finalize(self, _stop_all, self._idle, self._busy)

    # -- the calls -------------------------------------------------------------------------

    def render(self, template: TemplateSource, *, kv: Mapping[str, bytes],
               services: Mapping[str, Sequence[ServiceEndpoint]] | None = None,
               env: Mapping[str, str] | None = None, data: Any = None) -> Rendered:
        """`kade.templates.render` in a worker: the same result, or TemplateError, also when
        the template takes longer than the time limit or more than the memory limit.
        `data` (JSON values): what `.` is at the top."""
        request = {
            "op": "render", "template": _template_json(template),
            "services": {name: [dataclasses.asdict(e) for e in endpoints]
                         for name, endpoints in (services or {}).items()},
            "env": dict(env or {}), "max_size": self.limits.max_size, "data": data,
        }
        answer = self._call(template, request, "rendering", kv)
        if "error" in answer:
            raise _error(answer["error"])
        ok = answer["ok"]
        return Rendered(ok["text"], _reads(ok["reads"]))

    def check(self, template: TemplateSource) -> list[str]:
        """`kade.templates.check_template` in a worker, then a render with no data (every
        key missing): a template over the limits even then is a problem."""
        return self._check(template)[0]

    def _check(self, template: TemplateSource) -> tuple[list[str], bool]:
        """The problems, and whether the worker's own limits stopped the check (time, or
        the worker stopped): checking more templates of that app is time given away."""
        request = {"op": "check", "template": _template_json(template),
                   "max_size": self.limits.max_size}
        try:
            answer = self._call(template, request, "rendering")
        except TemplateError as e:
            return [str(e)], True
        if "error" in answer:
            return [str(_error(answer["error"]))], True
        problems: list[str] = answer["ok"]["problems"]
        return problems, False

    async def render_async(self, template: TemplateSource, *, kv: Mapping[str, bytes],
                           services: Mapping[str, Sequence[ServiceEndpoint]] | None = None,
                           env: Mapping[str, str] | None = None) -> Rendered:
        return await asyncio.to_thread(self.render, template, kv=kv, services=services,
                                       env=env)

    def check_templates(self, templates: Sequence[TemplateSource]) -> list[str]:
        """Every problem of an app's templates: no destination twice, then `check` for each,
        named by field (`templates.0.source: template /etc/x: line 2: ...`). Stops at the
        first template that hits the time limit: the app is refused, and the rest need not
        cost a worker 2 s each."""
        problems = duplicate_destinations(templates)
        for i, t in enumerate(templates):
            found, stopped = self._check(t)
            problems.extend(source_problem(i, p) for p in found)
            if stopped:
                break
        return problems

    async def check_templates_async(self, templates: Sequence[TemplateSource]) -> list[str]:
        return await asyncio.to_thread(self.check_templates, templates)

    # -- the workers -----------------------------------------------------------------------

    def _call(self, template: TemplateSource, request: dict[str, Any], doing: str,
              kv: Mapping[str, bytes] | None = None) -> dict[str, Any]:
        timeout = self.limits.timeout
        with self._slots:
            for _ in range(2):
                try:
                    worker = self._take()
                except (_WorkerDied, OSError) as e:
                    raise TemplateError(template.destination, None,
                                        f"no template worker: {e}") from e
                try:
                    answer = worker.ask(request, timeout, kv)
                except _WorkerDied as e:
                    self._drop(worker)
                    if e.idle:
                        continue  # it had died while idle: a fresh one takes the request
                    raise TemplateError(template.destination, None,
                                        f"{doing} stopped its worker process") from e
                if answer is None:
                    self._drop(worker)
                    raise TemplateError(template.destination, None,
                                        f"{doing} took longer than {timeout:g}s")
                if answer.get("fatal"):
                    self._drop(worker)
                else:
                    self._give_back(worker)
                return answer
        raise TemplateError(template.destination, None, "no template worker would start")

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise _WorkerDied("the template workers are closed")
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self.limits.memory)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if not self._closed:
                self._idle.append(worker)
                return
        worker.kill()

    def _drop(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        worker.kill()

    def close(self) -> None:
        """Stop every worker, busy ones too (their callers get a TemplateError)."""
        with self._lock:
            self._closed = True
        self._finalizer()


def _stop_all(idle: list[_Worker], busy: set[_Worker]) -> None:
    workers = [*idle, *busy]
    idle.clear()
    for w in workers:
        w.kill()


_default: TemplateWorkers | None = None
_default_limits = TemplateLimits()
_default_lock = threading.Lock()


def default_limits() -> TemplateLimits:
    return _default_limits


def default_workers() -> TemplateWorkers:
    """The workers that check templates for the API (`check_templates_async`); the agent
    renders with workers of its own, so that deploys of slow templates cannot hold up the
    configuration of running tasks. Processes start on first use, stop at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TemplateWorkers(_default_limits)
        return _default


def set_default_limits(limits: TemplateLimits) -> None:
    """Use `limits` from now on (e.g. from `kade up` options), in the API's checks and in
    agents created later; the old default workers stop."""
    global _default, _default_limits
    with _default_lock:
        old, _default, _default_limits = _default, None, limits
    if old is not None:
        old.close()


def check_templates(templates: Sequence[TemplateSource], *,
                    workers: TemplateWorkers | None = None) -> list[str]:
    """`check_templates_async` for a caller that cannot await: it blocks the calling thread
    (never for longer than the time limit per template), so not an event loop's."""
    return (workers or default_workers()).check_templates(templates)


async def check_templates_async(templates: Sequence[TemplateSource], *,
                                workers: TemplateWorkers | None = None) -> list[str]:
    """Every problem of an app's templates, as `check_templates` finds them, plus those of
    a render with no data under the limits (time, memory, size), each in a worker process:
    `templates.0.source: template /etc/app.conf: line 2: ...`, `templates.0.source: template
    /x: rendering took longer than 2s`. Never blocks the event loop."""
    return await (workers or default_workers()).check_templates_async(templates)
