"""The Docker driver: tasks as containers of a real Docker Engine, through its HTTP API.

Containers carry kade's labels (state lives in labels too), run with an init so SIGTERM
reaches the app, and have no restart policy: kade replaces failed tasks itself. An app's
`fetch` files are downloaded by kade and copied into the container before it starts, at
`$MESOS_SANDBOX` (`/mnt/mesos/sandbox`), where Marathon's Docker apps find them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import struct
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from kade.drivers.base import (
    LABEL_APP,
    LABEL_HASH,
    LABEL_TASK,
    DriverError,
    ExecResult,
    LaunchSpec,
    OutputLine,
    Workload,
    WorkloadEvent,
    WorkloadState,
)
from kade.drivers.docker_config import MIN_MEMORY_MIB, SANDBOX, container_config, link_archive
from kade.drivers.docker_output import DockerLines, follow
from kade.drivers.fetch import DEFAULT_LIMITS, FetchLimits, fetch_all
from kade.logs.record import Resume, Stream

__all__ = ["MIN_MEMORY_MIB", "DockerDriver", "PullProgress", "container_config", "container_name"]

EXEC_OUTPUT_LIMIT = 4096  # bytes of exec output kept (the tail: errors come last)
_NAME_RE = re.compile(r"[^a-zA-Z0-9_.-]")
_EVENT_FILTERS = json.dumps({
    "type": ["container"], "label": [LABEL_TASK], "event": ["start", "die", "destroy"],
})
_EVENT_KINDS = {"start": "started", "die": "exited", "destroy": "removed"}


def container_name(task_id: str) -> str:
    """Docker names allow [a-zA-Z0-9_.-]; anything else becomes `_`."""
    return "kade-" + _NAME_RE.sub("_", task_id)


class PullProgress:
    """Turns Docker's pull stream into a few readable lines: overall percent, then status."""

    def __init__(self, image: str) -> None:
        self.image = image
        self._layers: dict[str, tuple[int, int]] = {}
        self._last = ""

    def feed(self, msg: dict[str, Any]) -> str | None:
        status = str(msg.get("status", ""))
        layer = msg.get("id")
        detail = msg.get("progressDetail") or {}
        line = None
        if layer and status == "Downloading" and detail.get("total"):
            self._layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
            done = sum(c for c, _ in self._layers.values())
            total = sum(t for _, t in self._layers.values())
            line = f"pulling {self.image}: {100 * done // total}%"
        elif layer and status == "Download complete" and layer in self._layers:
            self._layers[layer] = (self._layers[layer][1], self._layers[layer][1])
        elif not layer and status:
            line = f"pulling {self.image}: {status}"
        if line is None or line == self._last:
            return None
        self._last = line
        return line


def _parse_time(value: str | None) -> float | None:
    if not value or value.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def workload_of(info: dict[str, Any]) -> Workload:
    """A Workload from `GET /containers/{id}/json`."""
    labels = dict(info["Config"].get("Labels") or {})
    status = info["State"]["Status"]
    state: WorkloadState
    if status in ("running", "paused", "restarting"):
        state = "running"
    elif status == "created":
        state = "created"
    else:  # exited, dead, removing
        state = "exited"
    return Workload(
        id=info["Id"],
        task_id=labels.get(LABEL_TASK, ""),
        app_id=labels.get(LABEL_APP, ""),
        spec_hash=labels.get(LABEL_HASH, ""),
        state=state,
        exit_code=info["State"].get("ExitCode") if state == "exited" else None,
        started_at=_parse_time(info["State"].get("StartedAt")),
        labels=labels,
    )


class DockerDriver:
    """Runs tasks as Docker containers. One aiodocker client, created on first use."""

    name = "docker"
    default_user: str | None = None  # a container's user is its image's

    def __init__(self, *, publish_ip: str = "0.0.0.0", docker_url: str | None = None,
                 fetch_cache: Path | None = None,
                 fetch_limits: FetchLimits = DEFAULT_LIMITS) -> None:
        """`fetch_cache`: where `fetch` entries with `cache: true` are kept (None: fetched
        every time)."""
        self.publish_ip = publish_ip
        self.docker_url = docker_url
        self.fetch_cache = fetch_cache
        self.fetch_limits = fetch_limits
        self._docker: aiodocker.Docker | None = None

    def _client(self) -> aiodocker.Docker:
        # aiohttp wants its session created inside the running loop, so not in __init__.
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self.docker_url)
        return self._docker

    async def _inspect(self, ref: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self._client().containers.container(ref).show()
        except DockerError as e:
            if e.status == 404:
                return None
            raise DriverError(f"inspect {ref}: {e.message}") from e
        return info

    async def resources(self) -> tuple[float, float]:
        """The engine's CPUs and memory (MiB), for the node's registration."""
        info = await self._client().system.info()
        return float(info["NCPU"]), info["MemTotal"] / (1024 * 1024)

    async def list(self) -> list[Workload]:
        try:
            found = await self._client().containers.list(
                all=True, filters=json.dumps({"label": [LABEL_TASK]}))
        except DockerError as e:
            raise DriverError(f"list containers: {e.message}") from e
        infos = await asyncio.gather(*(self._inspect(c.id) for c in found))
        return [workload_of(i) for i in infos if i is not None]

    async def start(self, spec: LaunchSpec, progress: Callable[[str], None]) -> Workload:
        config = container_config(spec, publish_ip=self.publish_ip)
        await self._ensure_image(config["Image"], spec, progress)
        with tempfile.TemporaryDirectory(prefix="kade-fetch-") as tmp:
            sandbox = None
            if spec.app.fetch:  # before anything is created: a failed fetch leaves nothing
                sandbox = Path(tmp) / "sandbox"
                sandbox.mkdir()
                await fetch_all(list(spec.app.fetch), sandbox, cache_dir=self.fetch_cache,
                                limits=self.fetch_limits, progress=progress)
            return await self._create_and_start(spec, config, sandbox)

    async def _create_and_start(self, spec: LaunchSpec, config: dict[str, Any],
                                sandbox: Path | None) -> Workload:
        name = container_name(spec.task_id)
        docker = self._client()
        try:
            try:
                container = await docker.containers.create(config, name=name)
            except DockerError as e:
                if e.status != 409 or not await self._remove_leftover(name, spec.task_id):
                    raise
                container = await docker.containers.create(config, name=name)
        except DockerError as e:
            raise DriverError(f"creating {name}: {e.message}") from e
        try:
            links = link_archive(spec.mounts)
            if links is not None:  # rendered files, as links into their mounted directory
                await container.put_archive("/", links)  # type: ignore[no-untyped-call]
        except DockerError as e:
            await self.remove(container.id)
            raise DriverError(f"linking {name}'s templates: {e.message}") from e
        try:
            if sandbox is not None:
                await self._upload_sandbox(container.id, sandbox)
            await container.start()
        except DockerError as e:
            await self.remove(container.id)  # nothing half-made is left behind
            raise DriverError(f"starting {name}: {e.message}") from e
        info = await self._inspect(container.id)
        if info is None:
            raise DriverError(f"container {name} vanished right after it started")
        return workload_of(info)

    async def _upload_sandbox(self, container_id: str, sandbox: Path) -> None:
        """The fetched files into the created container at MESOS_SANDBOX, as one tar."""
        with tempfile.TemporaryFile() as archive:
            await asyncio.to_thread(_tar_sandbox, sandbox, archive)
            archive.seek(0)
            async with self._client()._query(
                    f"containers/{container_id}/archive", method="PUT", data=archive,
                    params={"path": "/"}, headers={"Content-Type": "application/x-tar"}):
                pass

    async def _ensure_image(self, image: str, spec: LaunchSpec,
                            progress: Callable[[str], None]) -> None:
        docker = self._client()
        force = bool(spec.app.container and spec.app.container.docker
                     and spec.app.container.docker.force_pull_image)
        if not force:
            try:
                await docker.images.inspect(image)
                return
            except DockerError as e:
                if e.status != 404:
                    raise DriverError(f"inspect image {image}: {e.message}") from e
        tracker = PullProgress(image)
        progress(f"pulling {image}")
        try:
            async for msg in docker.images.pull(image, stream=True):
                line = tracker.feed(msg)
                if line:
                    progress(line)
        except DockerError as e:
            raise DriverError(f"image {image} not found and could not be pulled: "
                              f"{e.message}") from e

    async def _remove_leftover(self, name: str, task_id: str) -> bool:
        """A container of the same task left behind (e.g. by a crash) is ours to replace."""
        info = await self._inspect(name)
        if info is None:
            return True
        if (info["Config"].get("Labels") or {}).get(LABEL_TASK) != task_id:
            return False
        await self.remove(info["Id"])
        return True

    async def stop(self, workload_id: str, grace: float) -> int | None:
        container = self._client().containers.container(workload_id)
        try:
            await container.stop(t=math.ceil(max(grace, 0)))
        except DockerError as e:
            if e.status == 404:
                return None
            raise DriverError(f"stop {workload_id}: {e.message}") from e
        info = await self._inspect(workload_id)
        return None if info is None else int(info["State"]["ExitCode"])

    async def signal(self, workload_id: str, signal: str) -> None:
        try:
            await self._client().containers.container(workload_id).kill(signal=signal)
        except DockerError as e:
            if e.status in (404, 409):  # gone or not running: nothing to tell
                return
            raise DriverError(f"signal {signal} to {workload_id}: {e.message}") from e

    async def remove(self, workload_id: str) -> None:
        try:
            await self._client().containers.container(workload_id).delete(force=True)
        except DockerError as e:
            if e.status == 404 or (e.status == 409 and "in progress" in e.message):
                return
            raise DriverError(f"remove {workload_id}: {e.message}") from e

    async def pid(self, workload_id: str) -> int | None:
        info = await self._inspect(workload_id)
        pid = int(info["State"].get("Pid") or 0) if info is not None else 0
        return pid or None

    async def alive(self, workload_id: str) -> bool:
        info = await self._inspect(workload_id)
        return info is not None and bool(info["State"].get("Running"))

    async def exec(self, workload_id: str, command: str, timeout: float) -> ExecResult:
        container = self._client().containers.container(workload_id)
        try:
            ex = await container.exec(["/bin/sh", "-c", command])
        except DockerError as e:
            raise DriverError(f"exec in {workload_id}: {e.message}") from e
        out = bytearray()
        try:
            async with asyncio.timeout(timeout):
                async with ex.start(detach=False) as stream:
                    while (msg := await stream.read_out()) is not None:
                        out += msg.data
                        del out[:-EXEC_OUTPUT_LIMIT]
                while True:  # the exit code lands a moment after the stream ends
                    info = await ex.inspect()
                    if not info["Running"]:
                        return ExecResult(int(info["ExitCode"]), out.decode(errors="replace"))
                    await asyncio.sleep(0.01)
        except TimeoutError:
            with contextlib.suppress(DockerError):
                _kill_exec_tree((await ex.inspect()).get("Pid", 0), container.id)
            return ExecResult(124, f"timed out after {timeout:g}s")
        except DockerError as e:
            raise DriverError(f"exec in {workload_id}: {e.message}") from e

    async def logs(self, workload_id: str, *, follow: bool,
                   tail: int | None) -> AsyncIterator[bytes]:
        info = await self._inspect(workload_id)
        if info is None:
            raise DriverError(f"no such container: {workload_id}")
        params = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0",
                  "tail": "all" if tail is None else str(tail)}
        docker = self._client()
        async with docker._query(f"containers/{info['Id']}/logs", params=params,
                                 timeout=aiohttp.ClientTimeout()) as resp:
            try:
                if info["Config"].get("Tty"):
                    async for chunk in resp.content.iter_any():
                        yield chunk
                    return
                while True:  # multiplexed: 8-byte header (stream, size), then the payload
                    try:
                        header = await resp.content.readexactly(8)
                        _, size = struct.unpack(">BxxxL", header)
                        payload = await resp.content.readexactly(size)
                    except (asyncio.IncompleteReadError, aiohttp.ClientError):
                        return
                    yield payload
            finally:
                resp.close()

    async def output(self, workload_id: str,
                     resume: Mapping[Stream, Resume]) -> AsyncIterator[OutputLine]:
        """The container's lines from `resume` on (see `kade.drivers.docker_output`), until
        it has stopped and everything it wrote is read. A stream that breaks while the
        container runs is followed again from the last line given out."""
        lines = DockerLines(resume)
        backoff = 0.1
        live = True
        while True:
            info = await self._inspect(workload_id)
            if info is None:  # removed: what it wrote went with it
                return
            ended = True  # the stream ended by itself, not broken
            try:
                async for line in follow(self._client(), info["Id"],
                                         bool(info["Config"].get("Tty")), lines, live=live):
                    yield line
            except (DockerError, aiohttp.ClientError, OSError,
                    asyncio.IncompleteReadError) as e:
                if isinstance(e, DockerError) and e.status == 404:
                    return
                ended = False
            if ended and not live:  # everything it wrote is read
                for line in lines.flush():
                    yield line
                return
            info = await self._inspect(workload_id)
            if info is None:
                return
            lines.restart()
            if ended and not info["State"].get("Running"):
                live = False  # stopped: one last read, of what the engine wrote meanwhile
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def events(self) -> AsyncIterator[WorkloadEvent]:
        """Docker's event stream from now on. After a break it reconnects and resumes from
        the last event seen (the engine replays what happened meanwhile)."""
        resume_ns = time.time_ns()
        seen_at_resume: set[tuple[str, str]] = set()  # `since` is inclusive: skip repeats
        backoff = 0.1
        while True:
            since = f"{resume_ns // 1_000_000_000}.{resume_ns % 1_000_000_000:09d}"
            try:
                async with self._client()._query(
                        "events", params={"filters": _EVENT_FILTERS, "since": since},
                        timeout=aiohttp.ClientTimeout()) as resp:
                    try:
                        backoff = 0.1
                        while line := await resp.content.readline():
                            raw = json.loads(line)
                            nano = int(raw.get("timeNano", 0))
                            key = (str(raw.get("id", "")), str(raw.get("Action", "")))
                            if nano < resume_ns or (nano == resume_ns and key in seen_at_resume):
                                continue
                            if nano > resume_ns:
                                resume_ns, seen_at_resume = nano, set()
                            seen_at_resume.add(key)
                            event = _event_of(raw)
                            if event is not None:
                                yield event
                    finally:
                        resp.close()
            except (DockerError, aiohttp.ClientError, OSError, ValueError):
                pass
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None


def _tar_sandbox(sandbox: Path, out: IO[bytes]) -> None:
    """`sandbox` as `mnt/mesos/sandbox/…`; the directory writable by the container's user,
    whoever the image makes it (Mesos gives the task its sandbox)."""
    def writable(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if info.name == SANDBOX.lstrip("/"):
            info.mode = 0o1777
        return info
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(sandbox, arcname=SANDBOX.lstrip("/"), filter=writable)


def _event_of(raw: dict[str, Any]) -> WorkloadEvent | None:
    kind = _EVENT_KINDS.get(str(raw.get("Action", "")))
    if kind is None:
        return None
    attrs = (raw.get("Actor") or {}).get("Attributes") or {}
    code = attrs.get("exitCode")
    return WorkloadEvent(
        id=str(raw.get("id") or (raw.get("Actor") or {}).get("ID", "")),
        task_id=attrs.get(LABEL_TASK, ""),
        kind=kind,  # type: ignore[arg-type]
        exit_code=int(code) if kind == "exited" and code is not None else None,
    )


def _kill_exec_tree(pid: int, container_id: str) -> None:
    """Docker cannot kill an exec; when the engine is local we can, after checking that
    the pid really is in that container (so a reused pid is never hit)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            if not pid or container_id not in f.read():
                return
    except OSError:
        return
    victims = {pid}
    parents = _parents()
    for _ in range(20):  # add descendants, generation by generation
        more = {p for p, ppid in parents.items() if ppid in victims} - victims
        if not more:
            break
        victims |= more
    for p in victims:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def _parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return out
