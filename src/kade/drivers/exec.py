"""The exec driver: Marathon's command apps as plain processes on the host, no container.

Each task gets a sandbox `<work_dir>/<task id>/` holding its `stdout` and `stderr` and a
`task.json` (labels, env, pid and the process start time). The process runs in its own
session, so it outlives the agent; a restarted agent re-finds it from task.json and tells a
reused pid apart by the start time in /proc. The app's `fetch` URIs are put into the sandbox
before the process starts (`kade.drivers.fetch`). Exits are noticed at once through a pidfd,
which works for processes that are not our children too (their exit code is then unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kade.drivers.base import (
    LABEL_APP,
    LABEL_HASH,
    DriverError,
    ExecResult,
    LaunchSpec,
    OutputLine,
    Workload,
    WorkloadEvent,
)
from kade.drivers.exec_output import Changes, FileLines
from kade.drivers.fetch import DEFAULT_LIMITS, FetchLimits, fetch_all
from kade.logs.record import STREAMS, Resume, Stream

EXEC_OUTPUT_LIMIT = 4096  # bytes of exec output kept (the tail: errors come last)
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TASK_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_FOLLOW_INTERVAL = 0.2  # seconds between looks at a growing log file
OUTPUT_GATHER = 0.05  # seconds a woken capture lets output gather before it reads


@dataclass
class TaskRecord:
    """The content of task.json."""

    task_id: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells a reused pid apart
    started_at: float
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    finished_at: float | None = None

    @property
    def workload_id(self) -> str:
        return f"pid:{self.pid}:{self.task_id}"


@dataclass
class _Watch:
    pidfd: int
    done: asyncio.Future[int | None]


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def is_running(rec: TaskRecord) -> bool:
    stat = proc_stat(rec.pid)
    return stat is not None and stat[1] == rec.start_ticks and stat[0] not in ("Z", "X")


class ExecDriver:
    """Runs command apps as process groups under `work_dir`."""

    name = "exec"

    def __init__(self, work_dir: Path, *, default_user: str | None = None,
                 fetch_cache: Path | None = None,
                 fetch_limits: FetchLimits = DEFAULT_LIMITS) -> None:
        """`default_user`: who runs a command app that names no `user` (None: kade's own
        user). `kade up` as root passes `nobody` unless root commands are allowed.
        `fetch_cache`: where `fetch` entries with `cache: true` are kept (default: beside
        `work_dir`, `fetch-cache`)."""
        self.work_dir = Path(work_dir)
        self.default_user = default_user
        self.fetch_cache = fetch_cache or self.work_dir.parent / "fetch-cache"
        self.fetch_limits = fetch_limits
        self._watches: dict[str, _Watch] = {}
        self._changes: Changes | None = None  # output files written to: see output()
        self._subscribers: set[asyncio.Queue[WorkloadEvent]] = set()

    # -- the sandbox and its task.json -----------------------------------------------------

    def sandbox(self, task_id: str) -> Path:
        if not _TASK_ID_RE.match(task_id):
            raise DriverError(f"task id {task_id!r} cannot name a sandbox directory")
        return self.work_dir / task_id

    def _load(self, task_id: str) -> TaskRecord | None:
        try:
            raw = json.loads((self.sandbox(task_id) / "task.json").read_text())
            return TaskRecord(**raw)
        except (OSError, ValueError, TypeError):
            return None

    def _save(self, rec: TaskRecord) -> None:
        path = self.sandbox(rec.task_id) / "task.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(rec)))
        os.replace(tmp, path)

    def _task_of(self, workload_id: str) -> str:
        """`pid:<n>:<task id>` (ours) or a bare `pid:<n>` or task id."""
        if not workload_id.startswith("pid:"):
            return workload_id
        parts = workload_id.split(":", 2)
        if len(parts) == 3:
            return parts[2]
        for rec in self._records():
            if str(rec.pid) == parts[1] and is_running(rec):
                return rec.task_id
        return ""

    def _records(self) -> list[TaskRecord]:
        if not self.work_dir.is_dir():
            return []
        found = (self._load(d.name) for d in sorted(self.work_dir.iterdir())
                 if _TASK_ID_RE.match(d.name) and (d / "task.json").is_file())
        return [r for r in found if r is not None]

    def _workload(self, rec: TaskRecord) -> Workload:
        # Settled, not just looked at: a process that exited a moment ago is reaped first, so
        # an exited workload always comes with its exit code (never "exited" without one
        # because the exit was seen here before its pidfd said so)
        running = self._settle(rec)
        if not running:
            rec = self._load(rec.task_id) or rec
        return Workload(
            id=rec.workload_id,
            task_id=rec.task_id,
            app_id=rec.labels.get(LABEL_APP, ""),
            spec_hash=rec.labels.get(LABEL_HASH, ""),
            state="running" if running else "exited",
            exit_code=None if running else rec.exit_code,
            started_at=rec.started_at,
            labels=dict(rec.labels),
        )

    # -- exits, through pidfds -------------------------------------------------------------

    def _watch(self, rec: TaskRecord) -> _Watch | None:
        """Be told when the process exits; None if it is already gone."""
        if rec.task_id in self._watches:
            return self._watches[rec.task_id]
        try:
            fd = os.pidfd_open(rec.pid)
        except OSError:
            return None
        stat = proc_stat(rec.pid)
        if stat is None or stat[1] != rec.start_ticks:  # the pid now belongs to another
            os.close(fd)
            return None
        loop = asyncio.get_running_loop()
        watch = _Watch(fd, loop.create_future())
        self._watches[rec.task_id] = watch
        loop.add_reader(fd, self._exited, rec.task_id)
        return watch

    def _exited(self, task_id: str) -> None:
        watch = self._watches.pop(task_id, None)
        if watch is None:
            return
        asyncio.get_running_loop().remove_reader(watch.pidfd)
        code: int | None = None
        try:  # only a child of ours can be reaped, and only then is its exit code known
            info = os.waitid(os.P_PIDFD, watch.pidfd, os.WEXITED | os.WNOHANG)
            if info is not None:
                code = info.si_status
                if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
                    code += 128  # the shells' and Docker's convention
        except ChildProcessError:
            pass
        os.close(watch.pidfd)
        rec = self._load(task_id)
        if rec is not None and rec.exit_code is None:
            rec.exit_code, rec.finished_at = code, time.time()
            with contextlib.suppress(OSError):
                self._save(rec)
        if not watch.done.done():
            watch.done.set_result(code if rec is None else rec.exit_code)
        self._publish(WorkloadEvent(
            id=rec.workload_id if rec else "", task_id=task_id, kind="exited",
            exit_code=code if rec is None else rec.exit_code))

    def _publish(self, event: WorkloadEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    def _settle(self, rec: TaskRecord) -> bool:
        """Whether it runs; an exit not yet handled (a moment ago) is handled now."""
        if is_running(rec):
            return True
        if rec.task_id in self._watches:
            self._exited(rec.task_id)
        return False

    def _adopt(self) -> list[TaskRecord]:
        records = self._records()
        for rec in records:
            if self._settle(rec):
                self._watch(rec)
        return records

    # -- the Driver protocol ---------------------------------------------------------------

    async def resources(self) -> tuple[float, float]:
        """This host's CPUs and memory (MiB), for the node's registration."""
        return float(os.cpu_count() or 1), _mem_total_kib() / 1024

    async def list(self) -> list[Workload]:
        return [self._workload(self._load(r.task_id) or r) for r in self._adopt()]

    async def start(self, spec: LaunchSpec, progress: Callable[[str], None]) -> Workload:
        app = spec.app
        if app.image is not None or not app.cmd:
            raise DriverError("the exec driver runs only command apps (cmd, no image)")
        box = self.sandbox(spec.task_id)
        if (box / "task.json").exists():  # a leftover of the same task (a crashed agent)
            await self.remove(spec.task_id)  # (the sandbox may hold its rendered files)
        user = app.user or self.default_user
        try:
            account = _account(user)
        except KeyError:
            raise DriverError(f"user: {user!r} is not a user of this host") from None
        box.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(box, 0o700)
        _link_mounts(box, spec)
        if app.fetch:
            before = set(os.listdir(box))
            try:
                await fetch_all(list(app.fetch), box, cache_dir=self.fetch_cache,
                                limits=self.fetch_limits, progress=progress)
            except DriverError:
                await asyncio.to_thread(shutil.rmtree, box, True)
                raise
            if account is not None and account.pw_uid != os.geteuid():
                _chown_new(box, set(os.listdir(box)) - before, account)
        home = os.environ.get("HOME", str(box))
        if account is not None and account.pw_uid != os.geteuid():
            # the sandbox is the task's own: its working directory, where it writes
            os.chown(box, account.pw_uid, account.pw_gid)
            home = str(box)
            _traversable(self.work_dir)
        env = {"PATH": os.environ.get("PATH", _DEFAULT_PATH), "HOME": home, **spec.env}
        try:
            pid = _spawn(app.cmd, box, env, account)
        except (OSError, subprocess.SubprocessError, KeyError, ValueError) as e:
            raise DriverError(f"starting {app.cmd!r}: {e}") from e
        stat = proc_stat(pid)
        rec = TaskRecord(task_id=spec.task_id, pid=pid,
                         start_ticks=stat[1] if stat else 0, started_at=time.time(),
                         labels=spec.labels(), env=env)
        self._save(rec)
        self._watch(rec)
        self._publish(WorkloadEvent(rec.workload_id, rec.task_id, "started"))
        return self._workload(rec)  # one that exited at once is reaped: its exit code is known

    async def stop(self, workload_id: str, grace: float) -> int | None:
        rec = self._load(self._task_of(workload_id))
        if rec is None:
            return None
        watch = self._watch(rec) if self._settle(rec) else None
        if watch is None:
            return (self._load(rec.task_id) or rec).exit_code
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(watch.pidfd, 0)  # still the same process?
            os.killpg(rec.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(watch.done), max(grace, 0))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rec.pid, signal.SIGKILL)
        try:
            return await asyncio.wait_for(asyncio.shield(watch.done), 30)
        except TimeoutError:  # stuck in the kernel (uninterruptible I/O): say so
            raise DriverError(f"pid {rec.pid} did not die of SIGKILL within 30 s") from None

    async def signal(self, workload_id: str, signal_name: str) -> None:
        rec = self._load(self._task_of(workload_id))
        if rec is None or not is_running(rec):
            return
        try:
            sig = signal.Signals[signal_name]
        except KeyError:
            raise DriverError(f"unknown signal {signal_name!r}") from None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rec.pid, sig)

    async def remove(self, workload_id: str) -> None:
        task_id = self._task_of(workload_id)
        rec = self._load(task_id) if task_id else None
        if rec is not None and is_running(rec):
            await self.stop(rec.workload_id, 0)
        if not task_id or not self.sandbox(task_id).exists():
            return
        await asyncio.to_thread(shutil.rmtree, self.sandbox(task_id), True)
        self._publish(WorkloadEvent(rec.workload_id if rec else workload_id, task_id,
                                    "removed"))

    async def pid(self, workload_id: str) -> int | None:
        rec = self._load(self._task_of(workload_id))
        return rec.pid if rec is not None and is_running(rec) else None

    async def alive(self, workload_id: str) -> bool:
        rec = self._load(self._task_of(workload_id))
        return rec is not None and rec.workload_id == workload_id and is_running(rec)

    async def exec(self, workload_id: str, command: str, timeout: float) -> ExecResult:
        """Runs `command` on the host with the task's environment, in its sandbox."""
        rec = self._load(self._task_of(workload_id))
        if rec is None or not is_running(rec):
            raise DriverError(f"{workload_id} is not running")
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, cwd=self.sandbox(rec.task_id), env=rec.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        assert proc.stdout is not None
        out = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while chunk := await proc.stdout.read(65536):
                    out += chunk
                    del out[:-EXEC_OUTPUT_LIMIT]
                code = await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return ExecResult(124, f"timed out after {timeout:g}s")
        return ExecResult(code if code >= 0 else 128 - code, out.decode(errors="replace"))

    async def logs(self, workload_id: str, *, follow: bool,
                   tail: int | None) -> AsyncIterator[bytes]:
        """stdout, then stderr (each its last `tail` lines); follow: new output of either,
        until the process has exited and everything is read."""
        task_id = self._task_of(workload_id)
        box = self.sandbox(task_id) if task_id else None
        if box is None or not box.is_dir():
            raise DriverError(f"no such task: {workload_id}")
        files = [box / "stdout", box / "stderr"]
        offsets = [_tail_offset(f, tail) for f in files]
        while True:
            running = follow and (rec := self._load(task_id)) is not None and is_running(rec)
            got = False
            for i, path in enumerate(files):
                while chunk := _read_from(path, offsets[i]):
                    offsets[i] += len(chunk)
                    got = True
                    yield chunk
            if not follow or (not running and not got):
                return
            if not got:
                await asyncio.sleep(_FOLLOW_INTERVAL)

    async def output(self, workload_id: str,
                     resume: Mapping[Stream, Resume]) -> AsyncIterator[OutputLine]:
        """The task's lines from the byte offsets in `resume` on, until its process has
        exited and both files are read to their end (see `kade.drivers.exec_output`)."""
        task_id = self._task_of(workload_id)
        box = self.sandbox(task_id) if task_id else None
        if box is None or not box.is_dir():
            return
        files = [FileLines(box / s, s, resume[s].offset if s in resume else 0)
                 for s in STREAMS]
        if self._changes is None:
            self._changes = Changes()
        changes, changed = self._changes, asyncio.Event()
        watches = [changes.watch(box / s, changed) for s in STREAMS if (box / s).exists()]
        try:
            while True:
                rec = self._load(task_id)
                watch = self._watch(rec) if rec is not None and self._settle(rec) else None
                changed.clear()
                for f in files:  # the process was looked at first: a last read is complete
                    for line in f.read(final=watch is None):
                        yield line
                if watch is None:
                    return
                woken: asyncio.Future[object] = asyncio.ensure_future(changed.wait())
                exited: asyncio.Future[object] = watch.done  # type: ignore[assignment]
                try:
                    await asyncio.wait([woken, exited], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                await asyncio.sleep(OUTPUT_GATHER)  # many small writes, read as one batch
        finally:
            for wd in watches:
                changes.unwatch(wd, changed)
            for f in files:
                f.close()

    async def events(self) -> AsyncIterator[WorkloadEvent]:
        queue: asyncio.Queue[WorkloadEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            self._adopt()  # processes of an earlier agent are watched from now on
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def close(self) -> None:
        """Stops watching; the processes keep running for the next agent to adopt."""
        loop = asyncio.get_running_loop()
        for watch in self._watches.values():
            loop.remove_reader(watch.pidfd)
            os.close(watch.pidfd)
            watch.done.cancel()
        self._watches.clear()
        if self._changes is not None:
            self._changes.close()
            self._changes = None


def _link_mounts(box: Path, spec: LaunchSpec) -> None:
    """No container, so a mount's path is taken inside the sandbox: `/etc/app.conf` becomes
    `<sandbox>/etc/app.conf`.

    A mount with `links` (a task's rendered templates, in a directory of the sandbox that
    the agent writes into by rename) becomes a relative symbolic link per file, which sees
    every new version and never leaves the sandbox (the task's user cannot pass through
    kade's private data dir). Any other file is hard-linked (the same reason); directories,
    and files on another file system, are linked symbolically."""
    for m in spec.mounts:
        if m.links:
            for path, name in m.links:
                target = Path(m.host_path) / name
                if not target.is_file():
                    raise DriverError(f"mount path {path!r}: {target} is missing")
                link = _in_box(box, path)
                link.symlink_to(os.path.relpath(target, link.parent))
            continue
        link = _in_box(box, m.container_path)
        if Path(m.host_path).is_file():
            try:
                os.link(m.host_path, link)
                continue
            except OSError:
                pass
        link.symlink_to(m.host_path)


def _traversable(work_dir: Path) -> None:
    """The task's user may pass through (not list) kade's directories down to its sandbox: a
    shell's `cd sub` changes to the whole path, from the root, not from where it is."""
    for d in (work_dir, work_dir.parent):
        mode = d.stat().st_mode & 0o7777
        if mode & 0o011 != 0o011:
            d.chmod(mode | 0o011)


def _chown_new(box: Path, names: set[str], account: pwd.struct_passwd) -> None:
    """Fetched files belong to the task's user, as the sandbox does (links are not followed)."""
    for name in names:
        top = box / name
        os.lchown(top, account.pw_uid, account.pw_gid)
        if top.is_dir() and not top.is_symlink():
            for root, dirs, files in os.walk(top):
                for entry in dirs + files:
                    os.lchown(os.path.join(root, entry), account.pw_uid, account.pw_gid)


def _in_box(box: Path, path: str) -> Path:
    """Where the task's `path` is in its sandbox; its directories are made."""
    rel = Path(path.lstrip("/"))
    if ".." in rel.parts or not rel.parts:
        raise DriverError(f"mount path {path!r} cannot be placed in a sandbox")
    link = box / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    return link


def _account(user: str | None) -> pwd.struct_passwd | None:
    """The passwd entry of a user name or uid; None for no user (kade's own). KeyError."""
    if not user:
        return None
    name = user.split(":")[0]
    return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)


def _spawn(cmd: str, box: Path, env: dict[str, str], account: pwd.struct_passwd | None) -> int:
    """Fork and exec (quick, so done inline) a session leader writing into the sandbox.

    As another user, the process gets that user's group and supplementary groups, never
    kade's (root's group would still open root-group files)."""
    other = account is not None and account.pw_uid != os.geteuid()
    with open(box / "stdout", "ab") as out, open(box / "stderr", "ab") as err:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", cmd], cwd=box, env=env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True,
            user=account.pw_uid if account and other else None,
            group=account.pw_gid if account and other else None,
            extra_groups=(os.getgrouplist(account.pw_name, account.pw_gid)
                          if account and other else None))
    # The pidfd watch reaps it: Popen must never wait for it itself, nor warn about it
    # when it is dropped while the process lives on (for the next agent to adopt).
    proc.returncode = -1
    return proc.pid


def _mem_total_kib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return float(line.split()[1])
    return 0.0


def _read_from(path: Path, offset: int, size: int = 65536) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)
    except OSError:
        return b""


def _tail_offset(path: Path, lines: int | None) -> int:
    """Where the last `lines` lines of a file start (0: from the beginning)."""
    if lines is None:
        return 0
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            if lines <= 0 or end == 0:
                return end
            f.seek(end - 1)
            pos = end - 1 if f.read(1) == b"\n" else end  # the last line's own newline
            count = 0
            while pos > 0:  # count newlines backwards, a block at a time
                start = max(0, pos - 65536)
                f.seek(start)
                block = f.read(pos - start)
                i = len(block)
                while (i := block.rfind(b"\n", 0, i)) >= 0:
                    count += 1
                    if count == lines:
                        return start + i + 1
                pos = start
            return 0
    except OSError:
        return 0
