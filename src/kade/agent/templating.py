"""A task's configuration: its app's templates rendered from the KV tree and the catalog.

Rendered files live in the task's directory on the node and are bind-mounted read-only into
the container at their destinations. A file is rewritten in place (same inode) so that the
bind mount sees the new content. What each render read is kept, so that a KV or catalog
change re-renders only the templates that read what changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kade.drivers.base import Mount
from kade.spec import AppSpec
from kade.spec.templates import TemplateSpec
from kade.templates import (
    MissingKeyError,
    Reads,
    ServiceEndpoint,
    TemplateError,
    parse_env_file,
    render,
    render_due,
)

Services = Callable[[], Mapping[str, Sequence[ServiceEndpoint]]]


class ConfigWaiting(Exception):
    """A template reads a key that does not exist yet: the task waits for it."""


@dataclass
class _Rendered:
    spec: TemplateSpec
    path: Path
    digest: str = ""
    reads: Reads = field(default_factory=Reads)
    first_change: float | None = None
    last_change: float | None = None


@dataclass
class TaskConfig:
    """The rendered templates of one task, and the changes not yet rendered."""

    task_id: str
    directory: Path
    templates: list[_Rendered]
    env: dict[str, str] = field(default_factory=dict)  # from `env: true` templates

    @property
    def mounts(self) -> list[Mount]:
        return [Mount(str(t.path), t.spec.destination, read_only=True)
                for t in self.templates if not t.spec.env]

    def touched(self, keys: set[str], services: set[str], now: float) -> bool:
        """Note a change; True when any template read what changed."""
        hit = False
        for t in self.templates:
            if t.reads.touches(keys, services):
                t.first_change = t.first_change or now
                t.last_change = now
                hit = True
        return hit

    def due(self) -> float | None:
        """When the earliest pending re-render is due (consul-template's `wait`)."""
        times = [render_due(t.spec.wait, t.first_change, t.last_change)
                 for t in self.templates
                 if t.first_change is not None and t.last_change is not None]
        return min(times) if times else None


@dataclass
class Change:
    """The outcome of re-rendering a running task's templates."""

    changed: list[TemplateSpec] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def restart(self) -> bool:
        return any(t.change_mode == "restart" or t.env for t in self.changed)

    @property
    def signals(self) -> list[str]:
        return sorted({t.change_signal for t in self.changed
                       if t.change_mode == "signal" and not t.env})


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write(path: Path, text: str, mode: int) -> None:
    """Write in place: a bind mount pins the inode, so a rename would not be seen. The new
    bytes go over the old ones before the file is cut to length, so a reader never finds it
    empty (an app that must never see a half-written file uses changeMode signal or restart:
    the signal comes after the write)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
    try:
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], done)
        os.ftruncate(fd, len(data))
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


class Templating:
    """Renders tasks' templates; owned by the agent, which says when."""

    def __init__(self, root: Path, kv: Callable[[], Mapping[str, bytes]],
                 services: Services) -> None:
        self.root = root
        self.kv = kv
        self.services = services

    def prepare(self, app: AppSpec, task_id: str, env: Mapping[str, str]) -> TaskConfig:
        """Render every template of a task about to start; raise ConfigWaiting for a missing
        key, TemplateError for a template that fails."""
        directory = self.root / task_id / "templates"
        directory.mkdir(parents=True, exist_ok=True)
        config = TaskConfig(task_id, directory, [
            _Rendered(spec, directory / f"{i}-{Path(spec.destination).name}")
            for i, spec in enumerate(app.templates)
        ])
        kv, services = self.kv(), self.services()
        for t in config.templates:
            try:
                out = render(t.spec, kv=kv, services=services, env=env)
            except MissingKeyError as e:
                raise ConfigWaiting(f"template {t.spec.destination}: {e}") from e
            self._store(config, t, out.text, out.reads)
        return config

    def adopt(self, app: AppSpec, task_id: str, now: float) -> TaskConfig:
        """The config of a task that ran before the agent started: its files are what the
        container sees; every template is due for a re-render, which applies its change mode
        if the KV tree changed meanwhile."""
        directory = self.root / task_id / "templates"
        config = TaskConfig(task_id, directory, [])
        for i, spec in enumerate(app.templates):
            path = directory / f"{i}-{Path(spec.destination).name}"
            try:
                digest = _digest(path.read_text())
            except OSError:
                digest = ""
            config.templates.append(_Rendered(spec, path, digest, first_change=now,
                                              last_change=now))
        return config

    def refresh(self, config: TaskConfig, env: Mapping[str, str], now: float) -> Change:
        """Re-render the templates whose changes are due. Files of `noop`/`signal` templates
        are rewritten; `restart` ones keep their old content (the task is replaced instead).
        A template that fails keeps its last good file; the error is returned."""
        change = Change()
        kv, services = self.kv(), self.services()
        for t in config.templates:
            if t.first_change is None or t.last_change is None:
                continue
            if render_due(t.spec.wait, t.first_change, t.last_change) > now:
                continue
            t.first_change = t.last_change = None
            try:
                out = render(t.spec, kv=kv, services=services, env=env)
            except TemplateError as e:
                t.reads = e.reads or t.reads
                change.errors.append(str(e))
                continue
            t.reads = out.reads
            if _digest(out.text) == t.digest:
                continue
            change.changed.append(t.spec)
            if t.spec.change_mode != "restart" and not t.spec.env:
                self._store(config, t, out.text, out.reads)
        return change

    def _store(self, config: TaskConfig, t: _Rendered, text: str, reads: Reads) -> None:
        _write(t.path, text, t.spec.file_mode)
        t.digest, t.reads = _digest(text), reads
        if t.spec.env:
            config.env.update(parse_env_file(text, t.spec.destination))

    def forget(self, task_id: str) -> None:
        shutil.rmtree(self.root / task_id, ignore_errors=True)

    async def prepare_async(self, app: AppSpec, task_id: str, env: Mapping[str, str]
                            ) -> TaskConfig:
        # Rendering is CPU work bounded only by the template: keep it off the event loop.
        return await asyncio.to_thread(self.prepare, app, task_id, env)

    async def refresh_async(self, config: TaskConfig, env: Mapping[str, str], now: float
                            ) -> Change:
        return await asyncio.to_thread(self.refresh, config, env, now)
