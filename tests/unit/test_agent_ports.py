"""Host ports another process holds: a start fails with the reason, the node reports the
port, and a health result counts only while the task's own process runs. Real sockets play
the other process; the fake driver plays the runtime."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import cast

import pytest

from kade import model
from kade.agent import ports
from kade.drivers.base import ExecResult, Workload, WorkloadEvent
from kade.model import Node, TaskStatus
from kade.store import Event, Store
from tests.unit.test_agent_support import (
    HOST,
    NODE,
    Driver,
    make_app,
    make_task,
    place,
    running_agent,
    status_of,
    store_app,
    until,
    until_status,
    yield_to_agent,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def squatter() -> Iterator[int]:
    """A TCP port another process listens on (this test, for the agent)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def node_of(store: Store) -> Node:
    entry = await store.get(model.node_key(NODE))
    assert entry is not None
    return Node.load(entry.value)


def test_bind_test_per_protocol(squatter: int) -> None:
    assert ports.held_ports(HOST, [(squatter, "tcp")]) == [
        ports.Held(squatter, "tcp", "in use by another process")]
    assert ports.held_ports(HOST, [(squatter, "udp")]) == []  # UDP is another space
    assert [h.protocol for h in ports.held_ports(HOST, [(squatter, "udp,tcp")])] == ["tcp"]
    assert ports.held_ports(HOST, [(free_port(), "tcp"), (0, "tcp")]) == []
    free = free_port()
    assert ports.free_again(HOST, [squatter, free]) == [free]
    assert ports.protocols("udp,tcp") == ["udp", "tcp"] and ports.protocols("") == ["tcp"]


async def test_a_held_port_fails_the_start_and_is_reported_on_the_node(
    store: Store, driver: Driver, tmp_path: Path, squatter: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(portDefinitions=[{"port": 0}, {"port": 0}])
    await store_app(store, app)
    free = free_port()
    task = make_task(app, "shop_web.1", ports=(free, squatter))
    with caplog.at_level(logging.WARNING, logger="kade.agent"):
        async with running_agent(store, driver, tmp_path):
            await place(store, task)
            failed = await until_status(store, task.id, "failed")
            node = await node_of(store)
    assert failed.message == (f"host port {squatter}/tcp on {HOST} is in use by another "
                              "process: the task is placed again on another port")
    assert failed.health != "healthy"
    assert driver.started() == []  # never started, so never probed
    assert node.ports_in_use == [squatter]
    lines = [r.getMessage() for r in caplog.records if r.name == "kade.agent"]
    assert f"task {task.id} of /shop/web failed: {failed.message}" in lines


async def test_udp_ports_are_bound_as_udp(store: Store, driver: Driver, tmp_path: Path) -> None:
    app = make_app(portDefinitions=[{"port": 0, "protocol": "udp"}])
    tcp_app = make_app("/shop/tcp", portDefinitions=[{"port": 0}])
    await store_app(store, app)
    await store_app(store, tcp_app)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port = int(sock.getsockname()[1])
        async with running_agent(store, driver, tmp_path):
            tcp = make_task(tcp_app, "shop_tcp.1", ports=(port,))
            udp = make_task(app, "shop_web.1", ports=(port,))
            await place(store, tcp)
            await until_status(store, tcp.id, "running")  # TCP on the same number is free
            await place(store, udp)
            failed = await until_status(store, udp.id, "failed")
    assert f"host port {port}/udp" in failed.message


async def test_ports_seen_free_again_are_given_back_at_registration(
    store: Store, driver: Driver, tmp_path: Path, squatter: int
) -> None:
    free = free_port()
    old = Node(name=NODE, address=HOST, cpus=1, mem=1, ports_in_use=[free, squatter])
    await store.put(model.node_key(NODE), old.dump())
    async with running_agent(store, driver, tmp_path):
        assert (await node_of(store)).ports_in_use == [squatter]


async def test_update_node_keeps_what_others_wrote(store: Store) -> None:
    await store.put(model.node_key(NODE), Node(name=NODE, address=HOST, cpus=1, mem=1,
                                               draining=True, ports_in_use=[5]).dump())
    node = await ports.update_node(store, NODE, add=[7, 3], remove=[5])
    assert node is not None and node.ports_in_use == [3, 7] and node.draining
    assert await ports.update_node(store, "elsewhere", add=[1]) is None


async def test_a_check_that_passes_as_the_process_exits_never_makes_it_healthy(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    """The probe reached something (another process on the port) while the task's own
    process was already gone and its exit not yet announced: not counted."""
    app = make_app(healthChecks=[{"protocol": "COMMAND", "command": {"value": "true"},
                                  "intervalSeconds": 1}])
    await store_app(store, app)
    task = make_task(app, "shop_web.1")

    def gone_quietly(w: Workload, _command: str) -> ExecResult:
        driver.workloads[w.id] = dataclasses.replace(w, state="exited", exit_code=1)
        return ExecResult(0, "")  # the runtime has not told anyone yet

    driver.exec_result = gone_quietly
    async with running_agent(store, driver, tmp_path):
        await place(store, task)
        await until(store, lambda: _probed(driver))
        await yield_to_agent()
        workload = driver.by_task(task.id)
        assert workload is not None
        driver.emit(WorkloadEvent(workload.id, task.id, "exited", 1))  # the exit arrives
        failed = await until_status(store, task.id, "failed")
    assert failed.message == "exited with code 1"
    assert "healthy" not in await healths_seen(store, task.id)


async def _probed(driver: Driver) -> bool:
    return bool(driver.called("exec"))


async def healths_seen(store: Store, task_id: str) -> list[str]:
    """Every health the task's status record showed, in order."""
    key = model.status_key(task_id)
    last = await store.prefix_revision(key)
    seen: list[str] = []
    events = cast(AsyncGenerator[list[Event], None], store.watch(key, 0))
    async with contextlib.aclosing(events):
        async for batch in events:
            seen += [TaskStatus.load(e.entry.value).health for e in batch
                     if e.key == key and e.entry is not None]
            if batch[-1].revision >= last:
                return seen
    return seen


async def test_a_check_that_passes_while_the_process_runs_counts(
    store: Store, driver: Driver, tmp_path: Path
) -> None:
    app = make_app(healthChecks=[{"protocol": "COMMAND", "command": {"value": "true"}}])
    await store_app(store, app)
    task = make_task(app, "shop_web.1")
    async with running_agent(store, driver, tmp_path):
        await place(store, task)

        async def healthy() -> bool:
            status = await status_of(store, task.id)
            return status is not None and status.health == "healthy"

        await until(store, healthy)


async def test_a_port_let_go_of_is_given_back_to_the_planner(
    store: Store, driver: Driver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ports, "RECHECK_INTERVAL", 0.05)
    app = make_app()
    await store_app(store, app)
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen()
    port = int(sock.getsockname()[1])
    try:
        async with running_agent(store, driver, tmp_path):
            task = make_task(app, "shop_web.1", ports=(port,))
            await place(store, task)
            await until_status(store, task.id, "failed")
            assert (await node_of(store)).ports_in_use == [port]
            sock.close()  # the other process lets go of it

            async def given_back() -> bool:
                return (await node_of(store)).ports_in_use == []

            await until(store, given_back)
    finally:
        sock.close()
