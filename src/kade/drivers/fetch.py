"""Marathon's `fetch`: the files a task needs, put into its sandbox before it starts.

Each URI (http, https, file or a node path) is downloaded into the sandbox under the last
segment of its path (or `outputFile`); archives are unpacked there unless `extract: false`;
`executable: true` makes the file 0755. `cache: true` keeps the download on the node, by URL,
in a directory only kade reads (0700), and reuses it for later tasks.

A download is bounded in bytes and in time, and so is what an archive unpacks to; an archive
member that would land outside the sandbox (absolute, `..`, links out) is refused. Every
failure is a FetchError whose message is the task's failure reason, naming the URI.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from kade.drivers.base import DriverError
from kade.spec.legacy import ARCHIVES
from kade.spec.model import FetchUri
from kade.spec.parse import fetch_name

__all__ = ["DEFAULT_LIMITS", "FetchError", "FetchLimits", "fetch_all", "fetch_one"]

_CHUNK = 1 << 16


class FetchError(DriverError):
    """A URI could not be put into the sandbox; the message names it and why."""


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 1 << 30  # per URI, downloaded, and again for what an archive unpacks to
    timeout: float = 600.0  # seconds per URI, connecting and downloading
    cache_bytes: int = 2 << 30  # the cache keeps what was used last, within this size


DEFAULT_LIMITS = FetchLimits()


async def fetch_all(entries: list[FetchUri], sandbox: Path, *, cache_dir: Path | None,
                    limits: FetchLimits = DEFAULT_LIMITS,
                    progress: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Fetch every entry into `sandbox`, in order; the files' paths. Raises FetchError."""
    placed = []
    for entry in entries:
        progress(f"fetching {entry.uri}")
        placed.append(await fetch_one(entry, sandbox, cache_dir=cache_dir, limits=limits))
    return placed


async def fetch_one(entry: FetchUri, sandbox: Path, *, cache_dir: Path | None,
                    limits: FetchLimits) -> Path:
    name = entry.output_file or fetch_name(entry.uri)
    if not name or name in (".", "..") or "/" in name:
        raise FetchError(f"fetch {entry.uri}: {name!r} cannot name a file in the sandbox")
    target = sandbox / name
    try:
        async with asyncio.timeout(limits.timeout):
            cached = _cached(cache_dir, entry.uri) if entry.cache else None
            if cached is None or not await asyncio.to_thread(_from_cache, cached, target):
                await _download(entry.uri, target, limits.max_bytes)
                if cached is not None:  # a cache that cannot keep it is no failure
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(_keep, target, cached, limits.cache_bytes)
        target.chmod(0o755 if entry.executable else 0o644)
    except TimeoutError:
        with contextlib.suppress(OSError):
            target.unlink()
        raise FetchError(f"fetch {entry.uri}: not done within {limits.timeout:g} s") from None
    except OSError as e:  # the node's side: a full disk, a sandbox gone
        raise FetchError(f"fetch {entry.uri}: {e.strerror or e}") from None
    if entry.extract and name.lower().endswith(ARCHIVES):
        await asyncio.to_thread(_extract, entry.uri, target, sandbox, limits.max_bytes)
    return target


def _from_cache(cached: Path, target: Path) -> bool:
    """Whether the cache had it (and it is now the least recently used's opposite)."""
    try:
        shutil.copyfile(cached, target)
        os.utime(cached)
    except OSError:  # not there, or evicted a moment ago
        return False
    return True


def _cached(cache_dir: Path | None, uri: str) -> Path | None:
    if cache_dir is None:
        return None
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cache_dir.chmod(0o700)
    return cache_dir / hashlib.sha256(uri.encode()).hexdigest()


def _keep(source: Path, cached: Path, cache_bytes: int) -> None:
    """Into the cache atomically (a task that reads it meanwhile sees all of it or nothing),
    then the least recently used downloads go until the cache fits `cache_bytes`."""
    fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".part-")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, cached)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _evict(cached.parent, cache_bytes)


def _evict(cache_dir: Path, cache_bytes: int) -> None:
    entries = []
    for path in cache_dir.iterdir():
        with contextlib.suppress(OSError):
            if not path.name.startswith(".part-"):
                st = path.stat()
                entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= cache_bytes:
            return
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size


async def _download(uri: str, target: Path, max_bytes: int) -> None:
    lower = uri.lower()
    if lower.startswith(("http://", "https://")):
        await _download_http(uri, target, max_bytes)
        return
    local = uri[len("file://"):] if lower.startswith("file://") else uri
    await asyncio.to_thread(_copy_local, uri, Path(local.split("?")[0]), target, max_bytes)


async def _download_http(uri: str, target: Path, max_bytes: int) -> None:
    got = 0
    out = await asyncio.to_thread(target.open, "wb")
    try:
        async with (httpx.AsyncClient(follow_redirects=True, trust_env=False) as client,
                    client.stream("GET", uri) as resp):
            if resp.status_code != 200:
                raise FetchError(f"fetch {uri}: HTTP {resp.status_code}")
            length = resp.headers.get("content-length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise FetchError(f"fetch {uri}: {int(length)} bytes, more than the "
                                 f"{max_bytes} allowed")
            async for chunk in resp.aiter_bytes(_CHUNK):
                got += len(chunk)
                if got > max_bytes:
                    raise FetchError(f"fetch {uri}: more than the {max_bytes} bytes allowed")
                await asyncio.to_thread(out.write, chunk)
    except (httpx.HTTPError, FetchError) as e:
        out.close()
        await asyncio.to_thread(target.unlink, True)
        if isinstance(e, FetchError):
            raise
        raise FetchError(f"fetch {uri}: {type(e).__name__}: {e}") from None
    finally:
        out.close()


def _copy_local(uri: str, source: Path, target: Path, max_bytes: int) -> None:
    try:
        if not source.is_file():
            raise FetchError(f"fetch {uri}: no such file on the node")
        if source.stat().st_size > max_bytes:
            raise FetchError(f"fetch {uri}: {source.stat().st_size} bytes, more than the "
                             f"{max_bytes} allowed")
        shutil.copyfile(source, target)
    except OSError as e:
        raise FetchError(f"fetch {uri}: {e.strerror or e}") from None


def _extract(uri: str, archive: Path, sandbox: Path, max_bytes: int) -> None:
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(uri, archive, sandbox, max_bytes)
        else:
            _extract_tar(uri, archive, sandbox, max_bytes)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise FetchError(f"fetch {uri}: cannot extract: {e}") from None


def _extract_tar(uri: str, archive: Path, sandbox: Path, max_bytes: int) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        if sum(m.size for m in members if m.isfile()) > max_bytes:
            raise FetchError(f"fetch {uri}: unpacks to more than the {max_bytes} bytes allowed")
        try:  # "data": nothing outside the sandbox, no devices, no setuid bits
            tar.extractall(sandbox, members=members, filter="data")
        except tarfile.FilterError as e:
            raise FetchError(f"fetch {uri}: refused archive member: {e}") from None


def _extract_zip(uri: str, archive: Path, sandbox: Path, max_bytes: int) -> None:
    root = sandbox.resolve()
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
        if sum(i.file_size for i in infos) > max_bytes:
            raise FetchError(f"fetch {uri}: unpacks to more than the {max_bytes} bytes allowed")
        for info in infos:
            dest = (root / info.filename).resolve()
            if not dest.is_relative_to(root) or os.path.isabs(info.filename):
                raise FetchError(f"fetch {uri}: refused archive member {info.filename!r}: "
                                 "it would land outside the sandbox")
        for info in infos:
            path = Path(z.extract(info, root))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                path.chmod(mode & 0o755)  # the archive's modes, never setuid or world-writable
