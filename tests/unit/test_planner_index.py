"""The task index kept change by change is the index built from scratch, and says what changed."""

from __future__ import annotations

import random

import pytest

from kade.model import Task, TaskStatus
from kade.scheduler.index import Changed, TaskIndex, units

STATES = ("staging", "running", "failed", "killed", "finished", "lost", "starting")


def task(i: int, rng: random.Random) -> Task:
    return Task(id=f"t{i}", app_id=f"/a{i % 4}", version="v", spec_hash="h",
                node=rng.choice(["n1", "n2", "n3"]), host_ports=rng.sample(range(31000, 31006), 1),
                cpus=rng.choice([0.1, 0.2, 0.25, 1.0]), mem=rng.choice([32.0, 64.5]),
                created_at=1.0, desired=rng.choice(["run", "stop"]))


def status(task_id: str, app_id: str, rng: random.Random) -> TaskStatus:
    return TaskStatus(task_id=task_id, app_id=app_id, node="n1", state=rng.choice(STATES),
                      updated_at=1.0)


def view(index: TaskIndex) -> tuple[object, ...]:
    usage = {n: (u.cpus, u.mem, dict(u.ports)) for n, u in index.usage.items()
             if u.cpus or u.mem or u.ports}
    apps = sorted(index.app_ids())
    return (
        usage,
        {a: [t.id for t in index.tasks_of(a)] for a in apps},
        {n: sorted(index.apps_on(n)) for n in ("n1", "n2", "n3")},
        {n: sorted(index.apps_holding(n)) for n in ("n1", "n2", "n3")},
        sorted(index.orphans),
    )


@pytest.mark.parametrize("seed", range(40))
def test_kept_change_by_change_it_is_the_index_built_at_once(seed: int) -> None:
    rng = random.Random(seed)
    kept = TaskIndex()
    tasks: dict[str, Task] = {}
    statuses: dict[str, TaskStatus] = {}
    for _ in range(300):
        i = rng.randint(0, 30)
        roll = rng.random()
        if roll < 0.35:
            t = task(i, rng)
            tasks[t.id] = t
            kept.put_task(t)
        elif roll < 0.5:
            tasks.pop(f"t{i}", None)
            kept.delete_task(f"t{i}")
        elif roll < 0.85:
            s = status(f"t{i}", f"/a{i % 4}", rng)
            statuses[s.task_id] = s
            kept.put_status(s)
        else:
            statuses.pop(f"t{i}", None)
            kept.delete_status(f"t{i}")
        built = TaskIndex.build(tasks.values(), statuses.values())
        assert view(kept) == view(built)
    held = [t for t in tasks.values()
            if t.id not in statuses or statuses[t.id].state not in
            ("failed", "killed", "finished", "lost")]
    assert sum(u.cpus for u in kept.usage.values()) == sum(units(t.cpus) for t in held)


def test_it_remembers_what_changed_until_asked() -> None:
    index = TaskIndex()
    assert index.take_changes() is None  # nothing planned yet: a full plan
    assert index.take_changes() == Changed()
    rng = random.Random(1)
    t = task(1, rng)
    index.put_task(t)
    index.node_changed("n9")
    index.app_changed("/b")
    assert index.take_changes() == Changed(frozenset({t.app_id, "/b"}), frozenset({"n9"}))
    index.put_status(status("ghost", "/gone", rng))  # a status whose task is gone
    assert index.take_changes() == Changed(frozenset({"/gone"}))
    assert index.orphans == {"ghost"}
    index.everything_changed()
    assert index.take_changes() is None
