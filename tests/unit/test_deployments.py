"""Judging deployments: a pure function of the app, its tasks and the time; and the deployer
that judges them, past records that cannot be read."""

from __future__ import annotations

import asyncio

import pytest

from kade import model
from kade.deployments import intent
from kade.deployments.assess import assess
from kade.deployments.controller import Deployer
from kade.model import Deployment, Task, TaskStatus, decode_all
from kade.spec import AppSpec, parse_app, spec_hash
from kade.store import SqliteStore, Store
from tests.unit.interleaving_store import InterleavingStore
from tests.unit.test_agent_support import until

V1 = "2026-01-01T00:00:00.000Z"
V2 = "2026-01-02T00:00:00.000Z"


def app(image: str = "kade/site:2", instances: int = 2, version: str = V2) -> AppSpec:
    parsed = parse_app({"id": "/a", "instances": instances,
                        "container": {"docker": {"image": image}},
                        "healthChecks": [{"protocol": "HTTP"}]})
    return parsed.app.model_copy(update={"version": version})


def dep(**changes: object) -> Deployment:
    base = Deployment(id="d1", app_id="/a", kind="deploy", version=V2, from_version=V1,
                      started_at=0, deadline=100)
    return base.model_copy(update=changes)


def task(i: int, spec: AppSpec, desired: str = "run") -> Task:
    return Task(id=f"a.{i}", app_id="/a", version=spec.version or "", spec_hash=spec_hash(spec),
                node="n", host="127.0.0.1", host_ports=[31000 + i], desired=desired,  # type: ignore[arg-type]
                created_at=i)


def status(t: Task, state: str = "running", health: str = "healthy") -> TaskStatus:
    return TaskStatus(task_id=t.id, app_id="/a", node="n", state=state,  # type: ignore[arg-type]
                      health=health, updated_at=0)  # type: ignore[arg-type]


def test_running_while_old_tasks_remain() -> None:
    new, old = app(), app(image="kade/site:1", version=V1)
    tasks = [task(1, new), task(2, new), task(3, old)]
    statuses = {t.id: status(t) for t in tasks}
    judged = assess(dep(), new, tasks, statuses, now=10)
    assert judged.status == "running"
    assert (judged.updated, judged.healthy, judged.old) == (2, 2, 1)


def test_succeeds_when_all_new_tasks_are_healthy_and_old_ones_gone() -> None:
    new = app()
    tasks = [task(1, new), task(2, new)]
    judged = assess(dep(), new, tasks, {t.id: status(t) for t in tasks}, now=10)
    assert judged.status == "succeeded" and judged.finished_at == 10


def test_a_stopping_task_keeps_it_running_until_it_is_gone() -> None:
    new = app()
    tasks = [task(1, new), task(2, new), task(3, new, desired="stop")]
    statuses = {t.id: status(t) for t in tasks}
    assert assess(dep(), new, tasks, statuses, now=10).status == "running"
    statuses["a.3"] = status(tasks[2], state="killed")
    assert assess(dep(), new, tasks, statuses, now=10).status == "succeeded"


def test_fails_past_its_deadline_saying_how_far_it_got() -> None:
    new = app()
    tasks = [task(1, new), task(2, new)]
    statuses = {"a.1": status(tasks[0]), "a.2": status(tasks[1], health="unhealthy")}
    assert assess(dep(), new, tasks, statuses, now=99).status == "running"
    judged = assess(dep(), new, tasks, statuses, now=100)
    assert judged.status == "failed"
    assert "1/2 tasks of version" in judged.message


def test_superseded_by_a_newer_version() -> None:
    newer = app(version="2026-01-03T00:00:00.000Z")
    assert assess(dep(), newer, [], {}, now=1).status == "superseded"


def test_destroy_succeeds_when_no_task_is_left() -> None:
    old = app()
    t = task(1, old, desired="stop")
    d = dep(kind="destroy", version=None)
    assert assess(d, None, [t], {t.id: status(t)}, now=1).status == "running"
    assert assess(d, None, [], {}, now=1).status == "succeeded"


def test_finished_deployments_are_left_alone() -> None:
    done = dep(status="failed")
    assert assess(done, app(), [], {}, now=1000) == done


def test_the_api_shows_marathons_steps_with_the_current_one() -> None:
    from kade.api.deployments import deployment_json

    halfway = dep(instances=2, updated=2, healthy=1, old=1)
    shown = deployment_json(halfway)
    assert shown["totalSteps"] == 3 and shown["currentStep"] == 2
    assert [s["done"] for s in shown["steps"]] == [True, False, False]
    assert shown["steps"][0]["actions"] == [{"action": "RestartApplication", "app": "/a"}]
    finished = deployment_json(dep(instances=2, updated=2, healthy=2, old=0,
                                   status="succeeded"))
    assert finished["currentStep"] == 3 and all(s["done"] for s in finished["steps"])


# -- the deployer past records that cannot be read (real SQLite store) --------------------------

BROKEN_APP = b'{"id": "/bad", "cmd": "x", "mem": null}'


async def deployments_of(store: Store, app_id: str) -> list[Deployment]:
    entries, _ = await store.range(model.DEPLOYMENTS)
    found = [d for d in decode_all(entries, Deployment)[0] if d.app_id == app_id]
    return sorted(found, key=lambda d: d.started_at)


async def place_running(store: Store, spec: AppSpec, task_id: str) -> None:
    t = Task(id=task_id, app_id=spec.id, version=spec.version or "", spec_hash=spec_hash(spec),
             node="n", host="127.0.0.1", created_at=1)
    await store.put(model.task_key(t.id), t.dump())
    await store.put(model.status_key(t.id), status(t).model_copy(update={"app_id": spec.id})
                    .dump())


async def test_the_deployer_judges_the_rest_and_holds_an_unreadable_apps_deployment(
    store: SqliteStore,
) -> None:
    now = [100.0]
    good, _ = await intent.put_app(store, parse_app({"id": "/good", "cmd": "x"}).app, now[0])
    await place_running(store, good, "good.1")
    await intent.put_app(store, parse_app({"id": "/bad", "cmd": "x"}).app, now[0])
    await store.put(model.app_key("/bad"), BROKEN_APP)
    await store.put(model.deployment_key("zzz"), b'{"id": "zzz"}')
    await store.put(model.task_key("x.1"), b"{")
    await store.put(model.status_key("x.1"), b"[]")
    now[0] = 1000.0  # past every deadline: /bad's deployment would fail and roll back
    deployer = Deployer(store, clock=lambda: now[0])
    runner = asyncio.create_task(deployer.run())
    try:
        async def judged() -> list[Deployment] | None:
            deps = await deployments_of(store, "/good")
            return deps if deps[-1].status == "succeeded" else None

        await until(store, judged)
        [held] = await deployments_of(store, "/bad")
        assert (held.status, held.message) == ("running", "")  # not "destroyed", not failed
        assert sorted(deployer.quarantined) == ["apps/bad", "deployments/zzz", "status/x.1",
                                                "tasks/x.1"]
        await intent.delete_app(store, "/bad", now[0])  # what the user can do about it

        async def destroyed() -> list[Deployment] | None:
            deps = await deployments_of(store, "/bad")
            return deps if deps[-1].status == "succeeded" else None

        deps = await until(store, destroyed)
        assert [(d.kind, d.status) for d in deps] == [("deploy", "superseded"),
                                                      ("destroy", "succeeded")]
        assert "apps/bad" not in deployer.quarantined
        assert not runner.done()
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_a_task_turning_healthy_while_the_deployer_loads_is_not_missed(
    store: SqliteStore,
) -> None:
    """On a store where other writers go on between the deployer's reads, a write to what it
    read first is still seen: its load is at one revision, its watch starts there."""
    now = [100.0]
    spec = app(instances=1).model_copy(update={"id": "/a", "version": None})
    spec, _ = await intent.put_app(store, spec, now[0])
    t = task(1, spec)
    await store.put(model.task_key(t.id), t.dump())
    await store.put(model.status_key(t.id), status(t, health="unknown").dump())

    async def agent_reports(prefix: str) -> None:
        if prefix == model.STATUS:  # the deployer read the statuses; the task turns healthy
            await store.put(model.status_key(t.id), status(t).dump())

    deployer = Deployer(InterleavingStore(store, agent_reports), clock=lambda: now[0])
    runner = asyncio.create_task(deployer.run())
    try:
        async def succeeded() -> Deployment | None:
            [d] = await deployments_of(store, "/a")
            return d if d.status == "succeeded" else None

        done = await until(store, succeeded, timeout=5)
        assert (done.healthy, done.instances) == (1, 1)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
