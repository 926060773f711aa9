"""A task's configuration: its app's templates rendered from the KV tree and the catalog.

A rendered file is never rewritten in place: the new text goes to a temporary file in the
same directory, which is then renamed over the old one (as consul-template does), so a
reader opens either the old file or the new one, never a mix of both nor an empty file.

A rename replaces a directory entry, so the task must see the *directory*, not a bind mount
of the single file (which pins the old inode). Template destinations are arbitrary paths in
the task, and mounting each destination's directory would hide what the image has there
(`/etc`, `/www`...). So each task's rendered files are in one directory of their own, seen
by the task at one place, and every destination is a symbolic link into it:

- a container gets the directory mounted read-only at `MOUNT_POINT`, and the driver puts
  the links (`/www/value.txt -> /run/kade/templates/0-value.txt`) into the container's own
  file system before it starts. A container with a read-only root file system cannot take
  links: its files are bind-mounted one by one and rewritten in place, as before (a reader
  may then see a half-written file; changeMode signal or restart avoids that);
- a command app gets the directory inside its sandbox (`.kade-templates`), owned by the
  task's user, since kade's data dir is closed to that user; its destinations are relative
  links in the sandbox (`etc/app.conf -> ../.kade-templates/0-app.conf`).

What each render read is kept, so that a KV or catalog change re-renders only the templates
that read what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import stat
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

MOUNT_POINT = "/run/kade/templates"  # where a container sees its rendered files
SANDBOX_DIR = ".kade-templates"  # where a command app's are, in its sandbox


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
    in_place: bool = False  # files bind-mounted one by one and rewritten in place

    @property
    def mounts(self) -> list[Mount]:
        """The directory with a link per file template (see the module's docstring), or,
        `in_place`, each file at its destination."""
        files = [t for t in self.templates if not t.spec.env]
        if self.in_place:
            return [Mount(str(t.path), t.spec.destination, read_only=True) for t in files]
        if not files:
            return []
        return [Mount(str(self.directory), MOUNT_POINT, read_only=True,
                      links=tuple((t.spec.destination, t.path.name) for t in files))]

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
    # A command app's process reaches its files in its sandbox; a container walks the
    # mounted directory (0711), never the host directories above it.
    return Owner(uid, gid, traverse=here and uid != 0)


def read_only_root(app: AppSpec) -> bool:
    """Whether the app's container has a read-only root file system (Docker's `read-only`
    parameter): no links can be put into it."""
    if app.image is None or not app.container or not app.container.docker:
        return False
    flags = [p.value.lower() in ("", "true", "1", "yes")
             for p in app.container.docker.parameters if p.key == "read-only"]
    return bool(flags) and flags[-1]


def _directory(path: Path, mode: int) -> None:
    """`path` exists with exactly `mode` (mkdir's mode is cut by the umask; an older kade
    made these 0755)."""
    path.mkdir(mode=mode, exist_ok=True)
    os.chmod(path, mode)


def _replace(path: Path, text: str, mode: int, owner: Owner | None) -> None:
    """Write a temporary file next to `path` and rename it over `path`: a reader opens the
    old file or the new one. Never through a link: kade runs as root, and the directory may
    belong to the task's user (a command app's), who could put links in it. So the
    directory is opened once without following a link, and everything happens relative to
    it: the temporary file is created anew (O_EXCL), and the rename replaces a directory
    entry, never writes through whatever the entry was."""
    data = text.encode()
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        tmp = f".{path.name}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)  # a leftover of a crash (a link is removed, not followed)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                     dir_fd=dfd)
        try:
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, owner.uid, owner.gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def _write_in_place(path: Path, text: str, mode: int, owner: Owner | None) -> None:
    """Write in place, for a file bind-mounted by itself (a mount pins the inode, so a
    rename would not be seen). The new bytes go over the old ones before the file is cut to
    length, so a reader never finds it empty. Never through a link."""
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
    task's user (`file_owner`), in directories that only root (or, in a sandbox, the task's
    user) may list: 0700, or 0711 where the task's process walks through them to its files.
    """

    def __init__(self, root: Path, kv: Callable[[], Mapping[str, bytes]],
                 services: Services, *, workers: TemplateWorkers | None = None,
                 command_user: str | None = None,
                 sandbox: Callable[[str], Path] | None = None) -> None:
        """`sandbox`: the sandbox of a command app's task (the exec driver's), where its
        files go; None: they stay under `root`, reached only by kade's own user."""
        self.root = root
        self.command_user = command_user
        self.sandbox = sandbox
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
        config = self._config(app, task_id)
        self._directories(config)
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

    def _config(self, app: AppSpec, task_id: str) -> TaskConfig:
        """Where a task's files are, and who they belong to (nothing written yet)."""
        if self.sandbox is not None and app.image is None:
            directory = self.sandbox(task_id) / SANDBOX_DIR
        else:
            directory = self.root / task_id / "templates"
        return TaskConfig(task_id, directory, [
            _Rendered(spec, directory / f"{i}-{Path(spec.destination).name}")
            for i, spec in enumerate(app.templates)
        ], owner=file_owner(app, self.command_user), in_place=read_only_root(app))

    def _directories(self, config: TaskConfig) -> None:
        """Under `root`: `<task>` 0700 (nobody walks it: a mount's source is resolved by
        the kernel) and `<task>/templates` 0711 for a container (which walks it to its files,
        but cannot list them), 0700 without links (files mounted one by one), or 0711 for a
        command app run as a user. In a sandbox: the directory belongs to the task's user,
        0700; the exec driver hands the sandbox itself over at start."""
        directory, owner = config.directory, config.owner
        if not directory.is_relative_to(self.root):  # a sandbox
            directory.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            _directory(directory, 0o700)
            if owner is not None and os.geteuid() == 0:
                os.chown(directory, owner.uid, owner.gid)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)  # what is in it is protected by the modes below
        walk = owner is not None and owner.traverse
        _directory(directory.parent, 0o711 if walk else 0o700)
        _directory(directory, 0o711 if walk or not config.in_place else 0o700)

    def adopt(self, app: AppSpec, task_id: str, now: float) -> TaskConfig:
        """The config of a task that ran before the agent started: its files are what the
        container sees; every template is due for a re-render, which applies its change mode
        if the KV tree changed meanwhile."""
        config = self._started_by_older_kade(self._config(app, task_id))
        for t in config.templates:
            try:
                t.digest = _digest(t.path.read_text())
            except OSError:
                t.digest = ""
            t.first_change = t.last_change = now
        return config

    def _started_by_older_kade(self, config: TaskConfig) -> TaskConfig:
        """A task started before files were replaced by rename has each file bind-mounted
        (a container: its `templates` directory is 0700) or hard-linked into its sandbox
        (a command app: the files are under `root`): those see a file only while it keeps
        its inode, so its files go on being rewritten in place. It is adopted as it is,
        not restarted; its replacement gets the directory and links."""
        legacy = self.root / config.task_id / "templates"
        if config.in_place or not legacy.is_dir():
            return config
        if config.directory == legacy:  # a container's
            if stat.S_IMODE(legacy.stat().st_mode) != 0o700:
                return config
        elif config.directory.exists():  # a command app's, in its sandbox
            return config
        config.directory, config.in_place = legacy, True
        for t in config.templates:
            t.path = legacy / t.path.name
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
        write = _write_in_place if config.in_place else _replace
        write(t.path, text, t.spec.file_mode, config.owner)
        t.digest, t.reads = _digest(text), reads
        if t.spec.env:
            config.env.update(parse_env_file(text, t.spec.destination))

    def forget(self, task_id: str) -> None:
        """Drop a task's files; in a sandbox, also the sandbox if nothing else is in it (a
        task that waited for a key and never started): the driver removes the rest."""
        shutil.rmtree(self.root / task_id, ignore_errors=True)
        if self.sandbox is not None:
            with contextlib.suppress(Exception):  # e.g. an id that names no sandbox
                box = self.sandbox(task_id)
                shutil.rmtree(box / SANDBOX_DIR, ignore_errors=True)
                box.rmdir()  # only when empty

    def close(self) -> None:
        """Stop the worker processes (they stop at exit anyway)."""
        with self._lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()
