"""kade's own series, from plain records: what the built-in alert rules read."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kade import model
from kade.metrics.cluster import DEPLOYMENTS, STATUSES, count_transitions, state_samples
from kade.model import Deployment, Node, Task, TaskStatus
from kade.spec import parse_app
from kade.store.mirror import Batch, Change

NOW = 1_700_000_000_000


def _task(tid: str, app: str, desired: str = "run") -> Task:
    return Task(id=tid, app_id=app, version="v1", spec_hash="h", node="n1",
                desired=desired, created_at=0)  # type: ignore[arg-type]


def _status(tid: str, app: str, state: str, health: str = "unknown") -> TaskStatus:
    return TaskStatus(task_id=tid, app_id=app, node="n1", state=state,  # type: ignore[arg-type]
                      health=health, updated_at=0)  # type: ignore[arg-type]


def _values(samples: list[tuple[dict[str, str], int, float]]) -> dict[str, float]:
    return {",".join(f"{k}={v}" for k, v in sorted(labels.items())): value
            for labels, _, value in samples}


def test_apps_tasks_nodes_and_disks(tmp_path: Path) -> None:
    apps = {"/web": parse_app({"id": "/web", "cmd": "x", "instances": 3}).app}
    tasks = {t.id: t for t in (_task("a", "/web"), _task("b", "/web"), _task("c", "/web"),
                               _task("d", "/web", desired="stop"))}
    statuses = {"a": _status("a", "/web", "running", "healthy"),
                "b": _status("b", "/web", "running", "unhealthy"),
                "d": _status("d", "/web", "killing")}
    nodes = {"n1": Node(name="n1", address="x", cpus=1, mem=1, liveness_ttl=10),
             "n2": Node(name="n2", address="y", cpus=1, mem=1, liveness_ttl=10)}
    got = _values(state_samples(apps, tasks, statuses, nodes, {"n1"}, Counter({"/web": 2}),
                                Counter(), Counter({("/web", "deploy", "failed"): 1}),
                                {"kade": tmp_path}, NOW))
    assert got["__name__=kade_app_instances,app=/web"] == 3
    assert got["__name__=kade_app_tasks,app=/web,state=running"] == 2
    assert got["__name__=kade_app_tasks,app=/web,state=healthy"] == 1
    assert got["__name__=kade_app_tasks,app=/web,state=staging"] == 1  # c: no status yet
    assert got["__name__=kade_app_tasks,app=/web,state=killing"] == 0  # d is being stopped
    assert got["__name__=kade_app_task_failures_total,app=/web"] == 2
    assert got["__name__=kade_deployments_total,app=/web,kind=deploy,status=failed"] == 1
    assert got["__name__=kade_node_up,node=n1"] == 1
    assert got["__name__=kade_node_up,node=n2"] == 0
    free = got["__name__=kade_disk_free_bytes,store=kade"]
    assert 0 < free <= got["__name__=kade_disk_size_bytes,store=kade"]


def test_failures_lost_tasks_and_deployments_are_counted_once() -> None:
    failures: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    deployments: Counter[tuple[str, str, str]] = Counter()
    running = _status("a", "/web", "running")
    failed = _status("a", "/web", "failed")
    gone = _status("b", "/web", "lost")
    dep = Deployment(id="d1", app_id="/web", kind="deploy", version="v2", from_version="v1",
                     started_at=0, deadline=1)
    batch = Batch(2, (
        Change(STATUSES.prefix, model.STATUS + "a", "a", running, failed),
        Change(STATUSES.prefix, model.STATUS + "b", "b", None, gone),
        Change(DEPLOYMENTS.prefix, model.DEPLOYMENTS + "d1", "d1", dep,
               dep.model_copy(update={"status": "succeeded"})),
    ))
    count_transitions(batch, failures, lost, deployments)
    again = Batch(3, (Change(STATUSES.prefix, model.STATUS + "a", "a", failed,
                             failed.model_copy(update={"message": "x"})),))
    count_transitions(again, failures, lost, deployments)  # still failed: not a new failure
    assert failures == Counter({"/web": 1}) and lost == Counter({"/web": 1})
    assert deployments == Counter({("/web", "deploy", "succeeded"): 1})
