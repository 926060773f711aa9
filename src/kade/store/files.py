"""Files only kade's user may read: the data dir is 0700 and what kade writes in it 0600.

The store holds KV values and app env (secrets, often), so no other local user may read it.
Modes are set explicitly (`fchmod`/`chmod`), not left to the umask: a umask of 0 must not
make a world-readable database, and a data dir made by an older kade (0755, 0644) is
tightened when it is opened, with a log line saying so.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create `path` (and its parents) as a 0700 directory, or tighten it to 0700.

    A shared directory (world-writable or sticky, like /tmp) is refused rather than taken
    from its other users. Raises PermissionError (naming the path and its mode) when the
    directory cannot be made private."""
    existed = path.is_dir()
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode == DIR_MODE:
        return
    if existed and mode & (stat.S_ISVTX | stat.S_IWOTH):
        raise PermissionError(
            errno.EACCES,
            f"{path}: is shared with other users (mode {mode:04o}); "
            "use a directory of kade's own")
    try:
        os.chmod(path, DIR_MODE)
    except PermissionError as e:
        raise PermissionError(
            errno.EACCES,
            f"{path}: is mode {mode:04o} and cannot be made {DIR_MODE:04o}: {e.strerror}",
        ) from None
    if existed and mode & 0o077:
        log.warning("%s was mode %04o, open to other users: now %04o", path, mode, DIR_MODE)


def private_file(path: Path) -> None:
    """Make an existing file 0600 (a no-op when it does not exist)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode == FILE_MODE or stat.S_ISLNK(st.st_mode):
        return
    os.chmod(path, FILE_MODE)
    if mode & 0o077:
        log.warning("%s was mode %04o, open to other users: now %04o", path, mode, FILE_MODE)


def open_private(path: Path, flags: int = os.O_RDWR) -> int:
    """Open (creating) `path` as a 0600 file whatever the umask; returns the descriptor."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
            if mode & 0o077:
                log.warning("%s was mode %04o, open to other users: now %04o",
                            path, mode, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`, 0600 from its first byte (a crash leaves the
    old content or the new, never a readable or a torn file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
