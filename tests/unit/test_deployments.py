"""Judging deployments: a pure function of the app, its tasks and the time."""

from __future__ import annotations

from kade.deployments.assess import assess
from kade.model import Deployment, Task, TaskStatus
from kade.spec import AppSpec, parse_app, spec_hash

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
