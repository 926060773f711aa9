"""A task's configuration: its app's templates rendered from the KV tree and the catalog.

Rendered files live in the task's directory on the node and are bind-mounted read-only into
the container at their destinations. A file is rewritten in place (same inode) so that the
bind mount sees the new content. What each render read is kept, so that a KV or catalog
change re-renders only the templates that read what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import threading
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
    render_due,
)
from kade.templates.isolate import TemplateWorkers, default_limits

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
    owner: Owner | None = None  # of the files; None: root

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


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a task's rendered files belong to, when not root."""

    uid: int
    gid: int
    traverse: bool  # the task's process walks the host directories to its files


def _run_as(app: AppSpec, command_user: str | None) -> str | None:
    """The user a task runs as: Docker's `user` parameter, else the app's `user`, else — for
    a command app — the driver's default (`nobody` when kade is root)."""
    if app.container and app.container.docker:
        for p in reversed(app.container.docker.parameters):
            if p.key == "user" and p.value:
                return p.value
    return app.user or (command_user if app.image is None else None)


def file_owner(app: AppSpec, command_user: str | None = None) -> Owner | None:
    """The owner of an app's rendered files: the user its tasks run as, so that a file of
    mode 0600 is theirs to read and no one else's. Numbers (`1000`, `1000:1000`) are taken
    as they are; a name is looked up on this host for a command app (it runs here), and
    cannot be for a container (its names are the image's): such files stay root's, and
    reach a non-root container only through their mode (e.g. 0644). None: root's."""
    user = _run_as(app, command_user)
    if not user:
        return None
    name, _, group = user.partition(":")
    here = app.image is None
    try:
        if name.isdigit():
            uid, gid = int(name), 0
            if here:  # as `su` would: the user's group, when this host knows the user
                with contextlib.suppress(KeyError):
                    gid = pwd.getpwuid(uid).pw_gid
        elif name == "root":
            uid, gid = 0, 0
        elif here:
            entry = pwd.getpwnam(name)
            uid, gid = entry.pw_uid, entry.pw_gid
        else:
            return None
        if group.isdigit():
            gid = int(group)
        elif group and here:
            gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return None  # the driver refuses a user it cannot find
    if uid == 0 and gid == 0:
        return None
    # Docker bind-mounts the file itself: the container never walks the host directories.
    # A command app's process follows a link from its sandbox into them.
    return Owner(uid, gid, traverse=here and uid != 0)


def _directory(path: Path, mode: int) -> None:
    """`path` exists with exactly `mode` (mkdir's mode is cut by the umask; an older kade
    made these 0755)."""
    path.mkdir(mode=mode, exist_ok=True)
    os.chmod(path, mode)


def _write(path: Path, text: str, mode: int, owner: Owner | None) -> None:
    """Write in place: a bind mount pins the inode, so a rename would not be seen. The new
    bytes go over the old ones before the file is cut to length, so a reader never finds it
    empty (an app that must never see a half-written file uses changeMode signal or restart:
    the signal comes after the write). Never through a link: kade runs as root, and the
    file may belong to the task's user."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, mode)
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], done)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _write_error(t: _Rendered, e: OSError) -> TemplateError:
    return TemplateError(t.spec.destination, None,
                         f"writing {t.path} failed: {e.strerror or e}")


class Templating:
    """Renders tasks' templates in worker processes (`kade.templates.isolate`, with time,
    memory and size limits) and writes them; owned by the agent, which says when.

    Files are 0600 by default (a template's `mode` may open them to reading), owned by the
    task's user (`file_owner`), in directories that only root may list: 0700, or 0711 when
    the task's process must walk through them to its files (a command app run as a user).
    """

    def __init__(self, root: Path, kv: Callable[[], Mapping[str, bytes]],
                 services: Services, *, workers: TemplateWorkers | None = None,
                 command_user: str | None = None) -> None:
        self.root = root
        self.command_user = command_user
        self.kv = kv
        self.services = services
        self._workers = workers
        self._lock = threading.Lock()

    @property
    def workers(self) -> TemplateWorkers:
        """Given, or this agent's own (not the API's: see `default_workers`)."""
        with self._lock:
            if self._workers is None:
                self._workers = TemplateWorkers(default_limits())
            return self._workers

    async def prepare_async(self, app: AppSpec, task_id: str, env: Mapping[str, str]
                            ) -> TaskConfig:
        """Render every template of a task about to start; raise ConfigWaiting for a missing
        key, TemplateError for a template that fails. In a thread, which waits for the
        workers; the snapshot is taken here, where the KV tree changes."""
        kv, services = dict(self.kv()), self.services()
        return await asyncio.to_thread(self._prepare, app, task_id, env, kv, services)

    def _prepare(self, app: AppSpec, task_id: str, env: Mapping[str, str],
                 kv: Mapping[str, bytes], services: Mapping[str, Sequence[ServiceEndpoint]]
                 ) -> TaskConfig:
        owner = file_owner(app, self.command_user)
        directory = self.root / task_id / "templates"
        self._directories(directory, owner)
        config = TaskConfig(task_id, directory, [
            _Rendered(spec, directory / f"{i}-{Path(spec.destination).name}")
            for i, spec in enumerate(app.templates)
        ], owner=owner)
        for t in config.templates:
            try:
                out = self.workers.render(t.spec, kv=kv, services=services, env=env)
            except MissingKeyError as e:
                raise ConfigWaiting(f"template {t.spec.destination}: {e}") from e
            try:
                self._store(config, t, out.text, out.reads)
            except OSError as e:
                raise _write_error(t, e) from e
        return config

    def _directories(self, directory: Path, owner: Owner | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)  # what is in it is protected by the modes below
        mode = 0o711 if owner is not None and owner.traverse else 0o700
        _directory(directory.parent, mode)
        _directory(directory, mode)

    def adopt(self, app: AppSpec, task_id: str, now: float) -> TaskConfig:
        """The config of a task that ran before the agent started: its files are what the
        container sees; every template is due for a re-render, which applies its change mode
        if the KV tree changed meanwhile."""
        directory = self.root / task_id / "templates"
        config = TaskConfig(task_id, directory, [], owner=file_owner(app, self.command_user))
        for i, spec in enumerate(app.templates):
            path = directory / f"{i}-{Path(spec.destination).name}"
            try:
                digest = _digest(path.read_text())
            except OSError:
                digest = ""
            config.templates.append(_Rendered(spec, path, digest, first_change=now,
                                              last_change=now))
        return config

    async def refresh_async(self, config: TaskConfig, env: Mapping[str, str], now: float
                            ) -> Change:
        """Re-render the templates whose changes are due. Files of `noop`/`signal` templates
        are rewritten; `restart` ones keep their old content (the task is replaced instead).
        A template that fails keeps its last good file; the error is returned."""
        kv, services = dict(self.kv()), self.services()
        return await asyncio.to_thread(self._refresh, config, env, now, kv, services)

    def _refresh(self, config: TaskConfig, env: Mapping[str, str], now: float,
                 kv: Mapping[str, bytes], services: Mapping[str, Sequence[ServiceEndpoint]]
                 ) -> Change:
        change = Change()
        for t in config.templates:
            if t.first_change is None or t.last_change is None:
                continue
            if render_due(t.spec.wait, t.first_change, t.last_change) > now:
                continue
            t.first_change = t.last_change = None
            try:
                out = self.workers.render(t.spec, kv=kv, services=services, env=env)
            except TemplateError as e:
                t.reads = e.reads or t.reads
                change.errors.append(str(e))
                continue
            t.reads = out.reads
            if _digest(out.text) == t.digest:
                continue
            change.changed.append(t.spec)
            if t.spec.change_mode != "restart" and not t.spec.env:
                try:
                    self._store(config, t, out.text, out.reads)
                except OSError as e:
                    change.errors.append(str(_write_error(t, e)))
        return change

    def _store(self, config: TaskConfig, t: _Rendered, text: str, reads: Reads) -> None:
        _write(t.path, text, t.spec.file_mode, config.owner)
        t.digest, t.reads = _digest(text), reads
        if t.spec.env:
            config.env.update(parse_env_file(text, t.spec.destination))

    def forget(self, task_id: str) -> None:
        shutil.rmtree(self.root / task_id, ignore_errors=True)

    def close(self) -> None:
        """Stop the worker processes (they stop at exit anyway)."""
        with self._lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()
