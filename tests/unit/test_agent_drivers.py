"""A node with Docker and exec side by side (two fake drivers named so): the app's shape picks
the driver, each workload is stopped by the driver that has it, both kinds are adopted after a
restart, and a kind of task the node does not run fails with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from kade import model
from kade.agent.node_drivers import NodeDrivers, driver_names
from kade.drivers.base import DriverError
from kade.model import Node
from kade.spec import AppSpec, parse_app
from kade.store import Store
from kade.testing.fake_driver import FakeDriver
from tests.unit.test_agent_support import (
    NODE,
    make_app,
    make_task,
    place,
    running_agent,
    store_app,
    until_status,
)

pytestmark = pytest.mark.timeout(60)


def image_app(app_id: str = "/shop/img") -> AppSpec:
    data = {"id": app_id, "container": {"docker": {"image": "busybox"}}}
    return parse_app(data).app.model_copy(update={"version": "v1"})


def both() -> tuple[FakeDriver, FakeDriver, NodeDrivers]:
    docker, exe = FakeDriver(name="docker"), FakeDriver(name="exec")
    return docker, exe, NodeDrivers([docker, exe])


async def test_each_task_runs_on_the_driver_its_app_needs(store: Store, tmp_path: Path) -> None:
    docker, exe, drivers = both()
    cmd, img = make_app("/shop/cmd"), image_app()
    await store_app(store, cmd)
    await store_app(store, img)
    c, i = make_task(cmd, "shop_cmd.1"), make_task(img, "shop_img.1")
    async with running_agent(store, drivers, tmp_path):
        await place(store, c)
        await place(store, i)
        await until_status(store, c.id, "running")
        await until_status(store, i.id, "running")
        assert ([w.task_id for w in exe.running()], [w.task_id for w in docker.running()]) == (
            [c.id], [i.id])
        await place(store, c.model_copy(update={"desired": "stop"}))
        await until_status(store, c.id, "killed")
    assert len(exe.called("stop")) == 1 and docker.called("stop") == []
    entry = await store.get(model.node_key(NODE))
    assert entry is not None and Node.load(entry.value).drivers == ["docker", "exec"]


async def test_both_kinds_are_adopted_after_a_restart(store: Store, tmp_path: Path) -> None:
    docker, exe, drivers = both()
    cmd, img = make_app("/shop/cmd"), image_app()
    await store_app(store, cmd)
    await store_app(store, img)
    c, i = make_task(cmd, "shop_cmd.1"), make_task(img, "shop_img.1")
    async with running_agent(store, drivers, tmp_path):
        await place(store, c)
        await place(store, i)
        before = {(await until_status(store, t.id, "running")).container_id for t in (c, i)}
    # a new agent (and a new driver set: nothing remembered) finds both kinds running
    async with running_agent(store, NodeDrivers([docker, exe]), tmp_path):
        after = {(await until_status(store, t.id, "running")).container_id for t in (c, i)}
        await place(store, i.model_copy(update={"desired": "stop"}))
        await until_status(store, i.id, "killed")
    assert after == before
    assert len(docker.called("start")) == len(exe.called("start")) == 1  # none restarted
    assert len(docker.called("stop")) == 1 and exe.called("stop") == []


async def test_a_kind_the_node_does_not_run_fails_with_the_reason(
    store: Store, tmp_path: Path
) -> None:
    drivers = NodeDrivers([FakeDriver(name="docker")])
    cmd = make_app("/shop/cmd")
    await store_app(store, cmd)
    task = make_task(cmd, "shop_cmd.1")
    async with running_agent(store, drivers, tmp_path):
        await place(store, task)
        failed = await until_status(store, task.id, "failed")
    assert failed.message == "node runs no command apps (drivers: docker)"


async def test_unknown_workloads_and_names() -> None:
    docker, exe, drivers = both()
    assert (drivers.name, driver_names(drivers), driver_names(docker)) == (
        "docker+exec", ["docker", "exec"], ["docker"])
    assert await drivers.stop("nobody-1", 1) is None
    assert not await drivers.alive("nobody-1")
    with pytest.raises(DriverError):
        await drivers.exec("nobody-1", "true", 1)
    with pytest.raises(ValueError):
        NodeDrivers([])
    await drivers.close()
    assert docker.closed and exe.closed


def test_kade_ups_log_keeps_a_long_record_on_one_line_in_a_file() -> None:
    import io
    import logging

    from rich.console import Console

    from kade.cli.up import log_handler

    out = io.StringIO()
    handler = log_handler(Console(file=out))  # not a terminal
    reason = "host port 31000/tcp on 127.0.0.1 is in use by another process " * 3
    handler.emit(logging.LogRecord("kade.agent", logging.WARNING, __file__, 1,
                                   "task %s of %s failed: %s", ("web.1", "/web", reason), None))
    [line] = out.getvalue().splitlines()
    assert line.endswith(f"WARNING kade.agent: task web.1 of /web failed: {reason}")
