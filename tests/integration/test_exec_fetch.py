"""`fetch` / `uris` of command apps: files served by a local HTTP server put into the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import pwd
import signal
import tarfile
import threading
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kade.drivers import DriverError, ExecDriver, LaunchSpec
from kade.drivers.exec import TaskRecord, is_running
from kade.drivers.fetch import FetchLimits
from kade.spec import parse_app

pytestmark = pytest.mark.timeout(60)


class Files:
    """A local HTTP server for a directory; counts requests per path. `/slow/…` never ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: dict[str, int] = {}
        files = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                files.hits[self.path] = files.hits.get(self.path, 0) + 1
                if self.path.startswith("/slow/"):
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        for _ in range(100):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.1)
                    return
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    root = tmp_path / "served"
    root.mkdir()
    (root / "run.sh").write_text("#!/bin/sh\necho ran from $(pwd)\n")
    (root / "notes.txt").write_text("plain\n")
    with tarfile.open(root / "app.tgz", "w:gz") as tar:
        for name, text in (("app/hello.txt", "hello from the tgz\n"), ("app/bin/x", "x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    with zipfile.ZipFile(root / "site.zip", "w") as z:
        z.writestr("site/index.html", "zipped\n")
    with tarfile.open(root / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"!"))
    (root / "big.bin").write_bytes(b"0" * 20000)
    server = Files(root)
    try:
        yield server
    finally:
        server.close()


def launch(cmd: str, **app: Any) -> LaunchSpec:
    spec = parse_app({"id": "/kadetest/fetch", "cmd": cmd, **app}).app
    return LaunchSpec(task_id=f"kadetest_fetch.{uuid.uuid4().hex[:12]}", app=spec,
                      version="v1", spec_hash="h1", node="testnode", host="127.0.0.1",
                      host_ports=[], env={})


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[ExecDriver]:
    d = ExecDriver(tmp_path / "tasks", fetch_limits=FetchLimits(max_bytes=16384, timeout=2))
    try:
        yield d
    finally:
        await d.close()
        for meta in (tmp_path / "tasks").glob("*/task.json"):
            rec = TaskRecord(**json.loads(meta.read_text()))
            if is_running(rec):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(rec.pid, signal.SIGKILL)


async def output_of(driver: ExecDriver, spec: LaunchSpec, lines: int) -> list[str]:
    out = driver.sandbox(spec.task_id) / "stdout"
    deadline = time.monotonic() + 20
    while len(text := out.read_text().splitlines() if out.exists() else []) < lines:
        assert time.monotonic() < deadline, f"the task's output: {text}"
        await asyncio.sleep(0.05)
    return text


async def test_fetched_files_are_in_the_sandbox_before_the_command_starts(
        driver: ExecDriver, files: Files) -> None:
    spec = launch("./run.sh; cat app/hello.txt site/index.html notes.txt; sleep 300", fetch=[
        {"uri": files.url("run.sh"), "executable": True},
        {"uri": files.url("app.tgz")},
        {"uri": files.url("site.zip")},
        {"uri": files.url("notes.txt") + "?v=2"},
    ])
    progress: list[str] = []
    await driver.start(spec, progress.append)
    box = driver.sandbox(spec.task_id)
    assert await output_of(driver, spec, 4) == [
        f"ran from {box}", "hello from the tgz", "zipped", "plain"]
    assert (box / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (box / "notes.txt").stat().st_mode & 0o777 == 0o644
    assert (box / "app.tgz").is_file()  # the archive stays beside what it held
    assert progress[0] == f"fetching {files.url('run.sh')}"


async def test_legacy_uris_extract_archives_and_extract_false_keeps_them_packed(
        driver: ExecDriver, files: Files) -> None:
    legacy = launch("ls; sleep 300", uris=[files.url("app.tgz")])
    await driver.start(legacy, lambda _: None)
    assert (driver.sandbox(legacy.task_id) / "app" / "hello.txt").is_file()
    packed = launch("sleep 300", fetch=[{"uri": files.url("app.tgz"), "extract": False,
                                         "outputFile": "bundle.tgz"}])
    await driver.start(packed, lambda _: None)
    box = driver.sandbox(packed.task_id)
    assert sorted(p.name for p in box.iterdir() if p.name not in (
        "stdout", "stderr", "task.json")) == ["bundle.tgz"]


async def test_cached_uris_are_downloaded_once_and_kept_private(
        driver: ExecDriver, files: Files) -> None:
    fetch = [{"uri": files.url("notes.txt"), "cache": True}]
    for _ in range(2):
        spec = launch("cat notes.txt; sleep 300", fetch=fetch)
        await driver.start(spec, lambda _: None)
        assert await output_of(driver, spec, 1) == ["plain"]
    assert files.hits["/notes.txt"] == 1
    assert driver.fetch_cache.stat().st_mode & 0o777 == 0o700
    [kept] = driver.fetch_cache.iterdir()
    assert kept.stat().st_mode & 0o777 == 0o600
    uncached = launch("sleep 300", fetch=[{"uri": files.url("notes.txt")}])
    await driver.start(uncached, lambda _: None)
    assert files.hits["/notes.txt"] == 2


async def test_a_node_file_can_be_fetched(driver: ExecDriver, files: Files) -> None:
    spec = launch("cat notes.txt; sleep 300",
                  fetch=[{"uri": f"file://{files.root / 'notes.txt'}"}])
    await driver.start(spec, lambda _: None)
    assert await output_of(driver, spec, 1) == ["plain"]


@pytest.mark.parametrize(("name", "reason"), [
    ("missing.txt", "HTTP 404"),
    ("big.bin", "20000 bytes, more than the 16384 allowed"),
    ("slow/file", "not done within 2 s"),
    ("evil.tar", "refused archive member"),
])
async def test_a_fetch_that_fails_fails_the_task_with_the_reason(
        driver: ExecDriver, files: Files, name: str, reason: str) -> None:
    spec = launch("sleep 300", fetch=[{"uri": files.url(name)}])
    with pytest.raises(DriverError) as info:
        await driver.start(spec, lambda _: None)
    assert str(info.value).startswith(f"fetch {files.url(name)}: ")
    assert reason in str(info.value)
    assert not driver.sandbox(spec.task_id).exists()  # nothing half-fetched is left
    assert not (files.root.parent / "tasks" / "outside.txt").exists()


async def test_fetched_files_belong_to_the_tasks_user(tmp_path: Path, files: Files) -> None:
    nobody = pwd.getpwnam("nobody")
    d = ExecDriver(tmp_path / "tasks", default_user="nobody")
    try:
        spec = launch("echo more >> app/hello.txt && cat app/hello.txt; sleep 300",
                      fetch=[{"uri": files.url("app.tgz")}])
        await d.start(spec, lambda _: None)
        assert await output_of(d, spec, 2) == ["hello from the tgz", "more"]
        box = d.sandbox(spec.task_id)
        for path in (box / "app.tgz", box / "app", box / "app" / "bin" / "x"):
            assert path.stat().st_uid == nobody.pw_uid
    finally:
        await d.close()
        for meta in (tmp_path / "tasks").glob("*/task.json"):
            rec = TaskRecord(**json.loads(meta.read_text()))
            if is_running(rec):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(rec.pid, signal.SIGKILL)


async def test_the_cache_keeps_what_was_used_last_within_its_size(
        tmp_path: Path, files: Files) -> None:
    (files.root / "a.bin").write_bytes(b"a" * 3000)
    (files.root / "b.bin").write_bytes(b"b" * 3000)
    d = ExecDriver(tmp_path / "tasks", fetch_limits=FetchLimits(cache_bytes=5000))
    try:
        for name in ("a.bin", "b.bin", "b.bin", "a.bin"):
            await d.start(launch("sleep 300", fetch=[{"uri": files.url(name), "cache": True}]),
                          lambda _: None)
        # a was evicted for b (both do not fit), then fetched again, evicting b
        assert (files.hits["/a.bin"], files.hits["/b.bin"]) == (2, 1)
        assert len(list(d.fetch_cache.iterdir())) == 1
    finally:
        await d.close()
        for meta in (tmp_path / "tasks").glob("*/task.json"):
            rec = TaskRecord(**json.loads(meta.read_text()))
            if is_running(rec):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(rec.pid, signal.SIGKILL)
