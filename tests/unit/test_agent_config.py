"""The agent's configuration of tasks (templates rendered from the KV tree) and the drain that
comes before a stop, against the real SQLite store and the fake driver."""

from __future__ import annotations

import io
import os
import pwd
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kade import model
from kade.agent.templating import (
    MOUNT_POINT,
    SANDBOX_DIR,
    Owner,
    Templating,
    _replace,
    file_owner,
)
from kade.drivers.base import DriverError, LaunchSpec, Mount
from kade.drivers.docker_config import container_config, link_archive
from kade.drivers.exec import _link_mounts
from kade.spec import AppSpec
from kade.store import Store
from kade.templates import TemplateError, TemplateLimits, TemplateWorkers, encode_kv_value
from tests.unit.interleaving_store import InterleavingStore
from tests.unit.test_agent_support import (
    Driver,
    make_app,
    make_task,
    place,
    router_record,
    running_agent,
    settle,
    status_of,
    store_app,
    until,
    until_status,
    until_true,
    yield_to_agent,
)

pytestmark = pytest.mark.timeout(60)


async def put_kv(store: Store, key: str, value: bytes) -> None:
    await store.put(model.KV + key, encode_kv_value(value))


def read(path: str) -> str:
    return Path(path).read_text()


def inode(path: str | Path) -> int:
    return Path(path).stat().st_ino


def files(mounts: list[Mount]) -> dict[str, Path]:
    """Each destination and the host file its link leads to (mounted directory + name)."""
    return {path: Path(m.host_path) / name for m in mounts for path, name in m.links}


def only_file(mounts: list[Mount]) -> Path:
    [path] = files(mounts).values()
    return path


def templated_app(change_mode: str = "restart") -> dict[str, Any]:
    return {"templates": [
        {"destination": "/etc/app.conf", "source": 'greeting={{ key "cfg/greeting" }}',
         "changeMode": change_mode},
        {"destination": "/etc/app.env", "source": 'GREETING={{ key "cfg/greeting" }}',
         "env": True},
    ]}


async def test_a_task_waits_for_a_missing_key_then_starts_with_it(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(**templated_app())
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)

        async def waiting() -> bool:
            status = await status_of(store, task.id)
            return status is not None and "cfg/greeting" in status.message

        await until(store, waiting)
        status = await status_of(store, task.id)
        assert status is not None and status.state == "staging"
        assert status.message.startswith("waiting: ")
        assert driver.called("start") == []

        await put_kv(store, "cfg/greeting", b"hello")
        running = await until_status(store, task.id, "running")
        assert running.message == ""
        spec = driver.specs[task.id]
        assert spec.env["GREETING"] == "hello"
        [mount] = spec.mounts  # the directory; the env template is not a file in it
        assert (mount.container_path, mount.read_only) == (MOUNT_POINT, True)
        assert mount.links == (("/etc/app.conf", "0-app.conf"),)
        assert read(only_file(spec.mounts)) == "greeting=hello"
        assert Path(mount.host_path).is_relative_to(tmp_path / "node")


async def test_a_task_stopped_while_it_waits_for_a_key_is_killed_unstarted(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(**templated_app())
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)

        async def waiting() -> bool:
            status = await status_of(store, task.id)
            return status is not None and "cfg/greeting" in status.message

        await until(store, waiting)
        await place(store, task.model_copy(update={"desired": "stop",
                                                   "stop_reason": "scaled down"}))
        killed = await until_status(store, task.id, "killed")
        assert killed.message == "scaled down"
        await put_kv(store, "cfg/greeting", b"hello")  # too late: nothing starts
        await settle(store, driver, app)
        assert driver.started() == ["marker.settle"]
        assert driver.called("stop") == []


async def test_a_signal_template_is_rewritten_and_the_task_signalled(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(templates=[{"destination": "/etc/app.conf",
                               "source": 'greeting={{ key "cfg/greeting" }}',
                               "changeMode": "signal", "changeSignal": "SIGUSR1"}])
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await put_kv(store, "cfg/greeting", b"hello")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)
        await until_status(store, task.id, "running")
        path = only_file(driver.specs[task.id].mounts)
        before = inode(path)

        await put_kv(store, "cfg/greeting", b"bonjour")
        await until_true(store, lambda: driver.signals == [(task.id, "SIGUSR1")])
        assert read(path) == "greeting=bonjour"
        assert inode(path) != before  # a new file renamed over the old one
        assert os.listdir(path.parent) == [path.name]  # no temporary file left
        status = await status_of(store, task.id)
        assert status is not None
        assert (status.state, status.config_stale) == ("running", False)
        assert driver.started() == [task.id]


async def test_a_restart_template_that_changes_marks_the_task_stale(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(**templated_app("restart"))
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await put_kv(store, "cfg/greeting", b"hello")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)
        await until_status(store, task.id, "running")
        path = only_file(driver.specs[task.id].mounts)

        await put_kv(store, "cfg/greeting", b"bonjour")

        async def stale() -> bool:
            status = await status_of(store, task.id)
            return status is not None and status.config_stale

        await until(store, stale)
        # The running task keeps the config it started with; the scheduler replaces it.
        assert read(path) == "greeting=hello"
        assert driver.signals == []
        assert driver.started() == [task.id]


async def test_a_stop_waits_until_routers_no_longer_send_the_task_requests(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app()
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        running = await until_status(store, task.id, "running")
        await store.put(model.ROUTERS + "r1", router_record("r1", [task.id, "other.1"]))
        await store.put(model.ROUTERS + "r2", router_record("r2", []))

        await place(store, task.model_copy(update={"desired": "stop"}))
        await until_status(store, task.id, "killing")
        await store.put(model.ROUTERS + "r2", router_record("r2", ["other.1"]))
        await yield_to_agent()
        assert driver.called("stop") == []  # r1 still routes to it
        status = await status_of(store, task.id)
        assert status is not None and status.state == "killing"

        await store.put(model.ROUTERS + "r1", router_record("r1", ["other.1"]))
        await until_status(store, task.id, "killed")
        assert driver.stopped() == [running.container_id]


# -- files: size, modes, owners ----------------------------------------------------------------


def mode_of(path: Path | str) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


@pytest.fixture
def workers() -> Iterator[TemplateWorkers]:
    w = TemplateWorkers(TemplateLimits(max_size=64))
    yield w
    w.close()


def docker_app(**fields: Any) -> AppSpec:
    return make_app(cmd=None, container={"docker": {"image": "kade/site:1", **fields}},
                    templates=[{"destination": "/etc/app.conf", "source": "x"}])


async def test_rendered_files_are_private_in_private_directories(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(templates=[
        {"destination": "/etc/app.conf", "source": 'greeting={{ key "cfg/greeting" }}'},
        {"destination": "/etc/public.conf", "source": "open", "mode": "0644"}])
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await put_kv(store, "cfg/greeting", b"hello")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)
        await until_status(store, task.id, "running")
        private, public = files(driver.specs[task.id].mounts).values()
        assert (mode_of(private), mode_of(public)) == (0o600, 0o644)
        assert private.stat().st_uid == os.geteuid()  # no user: kade's own
        assert mode_of(private.parent) == 0o711  # .../tasks/<task>/templates: walk, not list
        assert mode_of(private.parent.parent) == 0o700  # .../tasks/<task>
        assert mode_of(tmp_path / "node" / "tasks") == 0o711


async def test_a_file_over_the_size_cap_is_an_error_and_the_last_good_file_stays(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(templates=[{"destination": "/etc/app.conf", "changeMode": "noop",
                               "source": '{{ key "cfg/blob" }}' * 3}])
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await put_kv(store, "cfg/blob", b"small")
    async with running_agent(store, driver, tmp_path / "node"):
        await place(store, task)
        await until_status(store, task.id, "running")
        path = only_file(driver.specs[task.id].mounts)

        await put_kv(store, "cfg/blob", b"x" * 400_000)  # three times: over 1 MiB

        async def config_error() -> str:
            status = await status_of(store, task.id)
            return status.config_error if status is not None else ""

        error = await until(store, config_error)
        assert error == ("template /etc/app.conf: the rendered file is larger than the "
                         "1 MiB limit")
        assert read(path) == "small" * 3
        await put_kv(store, "cfg/blob", b"fine")
        await until_true(store, lambda: read(path) == "fine" * 3)
        assert await config_error() == ""


async def test_a_template_over_the_cap_fails_the_task_before_it_starts(
    tmp_path: Path, workers: TemplateWorkers
) -> None:
    templating = Templating(tmp_path / "tasks", lambda: {"k": b"v" * 40}, lambda: {},
                            workers=workers)
    app = make_app(templates=[{"destination": "/etc/app.conf",
                               "source": '{{ key "k" }}{{ key "k" }}'}])
    with pytest.raises(TemplateError) as e:
        await templating.prepare_async(app, "shop_web.1", {})
    assert str(e.value) == ("template /etc/app.conf: the rendered file is larger than the "
                            "64 bytes limit")


async def test_files_belong_to_the_user_the_task_runs_as(
    tmp_path: Path, workers: TemplateWorkers
) -> None:
    templating = Templating(tmp_path / "tasks", lambda: {}, lambda: {}, workers=workers)
    app = docker_app(parameters=[{"key": "user", "value": "1000:2000"}])
    config = await templating.prepare_async(app, "shop_web.1", {})
    path = only_file(config.mounts)
    assert (path.stat().st_uid, path.stat().st_gid, mode_of(path)) == (1000, 2000, 0o600)
    # the container walks the mounted directory to its file, never the ones above it
    assert (mode_of(path.parent), mode_of(path.parent.parent)) == (0o711, 0o700)


async def test_a_command_app_run_as_a_user_can_walk_to_its_files(
    tmp_path: Path, workers: TemplateWorkers
) -> None:
    nobody = pwd.getpwnam("nobody")
    templating = Templating(tmp_path / "tasks", lambda: {}, lambda: {}, workers=workers)
    app = make_app(user="nobody", templates=[{"destination": "/etc/app.conf", "source": "x"}])
    config = await templating.prepare_async(app, "shop_web.1", {})
    path = only_file(config.mounts)
    assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == mode_of(path.parent.parent) == 0o711  # walk, not list


def test_the_owner_of_files_is_the_user_a_task_runs_as() -> None:
    nobody = pwd.getpwnam("nobody")
    assert file_owner(make_app()) is None
    assert file_owner(make_app(user="root")) is None
    assert file_owner(make_app(user="0:0")) is None
    assert file_owner(make_app(user="nobody")) == Owner(nobody.pw_uid, nobody.pw_gid, True)
    assert file_owner(make_app(user=str(nobody.pw_uid))) == \
        Owner(nobody.pw_uid, nobody.pw_gid, True)
    assert file_owner(make_app(user="54321:7")) == Owner(54321, 7, True)
    assert file_owner(make_app(user="no-such-user-here")) is None  # the driver refuses it
    # a command app without a user runs as the driver's default (`nobody` when kade is root)
    assert file_owner(make_app(), "nobody") == Owner(nobody.pw_uid, nobody.pw_gid, True)
    assert file_owner(docker_app(), "nobody") is None  # not for a container
    assert file_owner(docker_app(parameters=[{"key": "user", "value": "1000"}])) == \
        Owner(1000, 0, False)
    # a name inside an image means nothing on this host: the file stays root's
    assert file_owner(docker_app(parameters=[{"key": "user", "value": "nginx"}])) is None
    assert file_owner(make_app(cmd=None, user="1000:1000",
                               container={"docker": {"image": "kade/site:1"}})) == \
        Owner(1000, 1000, False)


async def test_a_write_never_follows_a_link_put_in_place_of_a_file(
    tmp_path: Path, workers: TemplateWorkers
) -> None:
    kv = {"k": b"one"}
    templating = Templating(tmp_path / "tasks", lambda: kv, lambda: {}, workers=workers)
    app = make_app(templates=[{"destination": "/etc/app.conf", "source": '{{ key "k" }}',
                               "changeMode": "noop"}])
    config = await templating.prepare_async(app, "shop_web.1", {})
    path = only_file(config.mounts)
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    path.unlink()
    path.symlink_to(target)
    (path.parent / f".{path.name}.tmp").symlink_to(target)  # nor the temporary file's name
    kv["k"] = b"two"
    config.touched({"k"}, set(), 1.0)
    change = await templating.refresh_async(config, {}, 2.0)
    assert change.errors == []
    assert target.read_text() == "keep"  # the links were replaced, not written through
    assert not path.is_symlink() and read(path) == "two"


# A task's program reading its file without pause, as another process (a thread of this
# one would share the interpreter's lock with the writer and starve it): it stops at the end
# of its stdin and prints how many reads it made and the lengths of those that were torn.
_READER = """
import select, sys
path, reads, torn = sys.argv[1], 0, []
while not select.select([sys.stdin], [], [], 0)[0]:
    with open(path, "rb") as f:
        data = f.read()
    reads += 1
    if reads == 1:
        print("reading", flush=True)
    if len(set(data)) != 1 or len(data) % 100_000:
        torn.append(len(data))
print(reads, *torn[:20])
"""


def test_a_reader_sees_the_old_file_or_the_new_one_never_a_mix(tmp_path: Path) -> None:
    """A file replaced again and again — longer, then shorter — while another process reads
    it without pause. (Written in place, a reader finds the new text followed by the rest of
    the old one, or a file cut short, within a few hundred writes.)"""
    path = tmp_path / "0-big.conf"
    _replace(path, "a" * 100_000, 0o600, None)
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline() == "reading\n"
        for i in range(2000):
            _replace(path, chr(ord("a") + i % 26) * (100_000 * (1 + i % 2)), 0o600, None)
        out, _ = reader.communicate("", timeout=30)
    finally:
        reader.kill()
        reader.wait()
    reads, *torn = (int(n) for n in out.split())
    assert torn == [] and reads > 100
    assert os.listdir(tmp_path) == [path.name] and mode_of(path) == 0o600


async def test_a_read_only_container_gets_its_files_mounted_one_by_one(
    tmp_path: Path, workers: TemplateWorkers
) -> None:
    """No links can be put into a read-only root file system: each file is bind-mounted and
    rewritten in place (the mount pins its inode)."""
    kv = {"k": b"one"}
    templating = Templating(tmp_path / "tasks", lambda: kv, lambda: {}, workers=workers)
    app = docker_app(parameters=[{"key": "read-only", "value": "true"}])
    app = app.model_copy(update={"templates": [
        app.templates[0].model_copy(update={"source": '{{ key "k" }}', "change_mode": "noop"})]})
    config = await templating.prepare_async(app, "shop_web.1", {})
    [mount] = config.mounts
    assert (mount.container_path, mount.links) == ("/etc/app.conf", ())
    before = inode(mount.host_path)
    kv["k"] = b"two"
    config.touched({"k"}, set(), 1.0)
    assert (await templating.refresh_async(config, {}, 2.0)).errors == []
    assert (read(mount.host_path), inode(mount.host_path)) == ("two", before)
    assert mode_of(Path(mount.host_path).parent) == 0o700


async def test_a_command_apps_files_are_in_its_sandbox_owned_by_its_user(
    tmp_path: Path, workers: TemplateWorkers
) -> None:
    nobody = pwd.getpwnam("nobody")
    templating = Templating(tmp_path / "tasks", lambda: {}, lambda: {}, workers=workers,
                            command_user="nobody", sandbox=lambda t: tmp_path / "boxes" / t)
    app = make_app(templates=[{"destination": "/etc/app.conf", "source": "x"}])
    config = await templating.prepare_async(app, "shop_web.1", {})
    [mount] = config.mounts
    directory = tmp_path / "boxes" / "shop_web.1" / SANDBOX_DIR
    assert mount.host_path == str(directory)
    path = only_file(config.mounts)
    for p, mode in ((directory, 0o700), (path, 0o600)):
        assert (p.stat().st_uid, p.stat().st_gid, mode_of(p)) == \
            (nobody.pw_uid, nobody.pw_gid, mode)
    # a container's files stay under kade's own directory, whatever the sandbox
    other = await templating.prepare_async(docker_app(), "shop_web.2", {})
    assert Path(other.mounts[0].host_path).is_relative_to(tmp_path / "tasks")


def launch(app: AppSpec, mounts: list[Mount]) -> LaunchSpec:
    return LaunchSpec(task_id="shop_web.1", app=app, version="v1", spec_hash="h", node="n1",
                      host="127.0.0.1", host_ports=[8080], env={}, mounts=mounts)


def test_the_sandbox_links_each_destination_into_the_rendered_directory(
    tmp_path: Path
) -> None:
    box = tmp_path / "box"
    rendered = box / SANDBOX_DIR
    rendered.mkdir(parents=True)
    (rendered / "0-app.conf").write_text("v1")
    mount = Mount(str(rendered), MOUNT_POINT, links=(("/etc/app.conf", "0-app.conf"),))
    _link_mounts(box, launch(make_app(), [mount]))
    link = box / "etc" / "app.conf"
    assert os.readlink(link) == f"../{SANDBOX_DIR}/0-app.conf"  # never leaves the sandbox
    (rendered / "next").write_text("v2")
    os.replace(rendered / "next", rendered / "0-app.conf")
    assert link.read_text() == "v2"

    missing = Mount(str(rendered), MOUNT_POINT, links=(("/etc/other.conf", "1-other.conf"),))
    with pytest.raises(DriverError, match="'/etc/other.conf': .*1-other.conf is missing"):
        _link_mounts(tmp_path / "box2", launch(make_app(), [missing]))


def test_a_container_gets_the_directory_mounted_and_links_to_its_files() -> None:
    mount = Mount("/var/lib/kade/tasks/t/templates", MOUNT_POINT,
                  links=(("/www/value.txt", "0-value.txt"), ("/etc/app.conf", "1-app.conf")))
    app = docker_app()
    config = container_config(launch(app, [mount]))
    assert config["HostConfig"]["Binds"] == [f"/var/lib/kade/tasks/t/templates:{MOUNT_POINT}:ro"]
    data = link_archive([mount])
    assert data is not None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert [(m.name, m.issym(), m.linkname) for m in tar.getmembers()] == [
            ("www/value.txt", True, f"{MOUNT_POINT}/0-value.txt"),
            ("etc/app.conf", True, f"{MOUNT_POINT}/1-app.conf")]
    assert link_archive([Mount("/data", "/data")]) is None


async def test_a_sandbox_with_only_rendered_files_goes_when_the_task_is_forgotten(
    tmp_path: Path, workers: TemplateWorkers
) -> None:
    boxes = tmp_path / "boxes"
    templating = Templating(tmp_path / "tasks", lambda: {}, lambda: {}, workers=workers,
                            sandbox=lambda t: boxes / t)
    app = make_app(templates=[{"destination": "/etc/app.conf", "source": "x"}])
    await templating.prepare_async(app, "shop_web.1", {})
    await templating.prepare_async(app, "shop_web.2", {})
    (boxes / "shop_web.2" / "stdout").write_text("the driver's")
    templating.forget("shop_web.1")
    templating.forget("shop_web.2")
    assert sorted(p.name for p in boxes.iterdir()) == ["shop_web.2"]
    assert [p.name for p in (boxes / "shop_web.2").iterdir()] == ["stdout"]


@pytest.mark.parametrize("app", [docker_app(), make_app(templates=[
    {"destination": "/etc/app.conf", "source": "x"}])], ids=["container", "command app"])
async def test_a_task_started_by_an_older_kade_keeps_its_files_rewritten_in_place(
    tmp_path: Path, workers: TemplateWorkers, app: AppSpec
) -> None:
    """Its files were bind-mounted one by one (or hard-linked into its sandbox), which only
    sees a file that keeps its inode: it is adopted as it is, not restarted."""
    kv = {"k": b"two"}
    templating = Templating(tmp_path / "tasks", lambda: kv, lambda: {}, workers=workers,
                            sandbox=lambda t: tmp_path / "boxes" / t)
    app = app.model_copy(update={"templates": [app.templates[0].model_copy(
        update={"source": '{{ key "k" }}', "change_mode": "noop"})]})
    old = tmp_path / "tasks" / "shop_web.1" / "templates"
    old.mkdir(parents=True, mode=0o700)
    (old / "0-app.conf").write_text("one")
    before = inode(old / "0-app.conf")
    config = templating.adopt(app, "shop_web.1", 1.0)
    assert [(m.host_path, m.container_path) for m in config.mounts] == \
        [(str(old / "0-app.conf"), "/etc/app.conf")]
    assert (await templating.refresh_async(config, {}, 2.0)).errors == []
    assert (read(old / "0-app.conf"), inode(old / "0-app.conf")) == ("two", before)
    # a task of this kade is adopted with its directory and links
    fresh = await templating.prepare_async(app, "shop_web.2", {})
    assert templating.adopt(app, "shop_web.2", 1.0).mounts == fresh.mounts


async def test_a_key_written_while_the_agent_loads_reaches_the_template(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    """On a store where writers go on between the agent's reads, a KV write right after it
    read the tree is still seen: its placements and KV are followed from one revision."""
    app = make_app(**templated_app())
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    await place(store, task)

    async def user_writes(prefix: str) -> None:
        if prefix == model.KV:
            await put_kv(store, "cfg/greeting", b"hello")

    async with running_agent(InterleavingStore(store, user_writes), driver, tmp_path / "node"):
        await until_status(store, task.id, "running")
        assert driver.specs[task.id].env["GREETING"] == "hello"
