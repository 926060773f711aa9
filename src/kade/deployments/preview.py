"""What a PUT of an app definition would do, before it is made (Nomad's `job plan`).

Nothing here plans on its own: the scheduler's pure `plan()` is run on a copy of the world in
which the app is replaced by the new definition, round after round, with every task it starts
reported healthy and every task it stops reported ended (the way `kade.scheduler.sim` plays
the agent), until it asks for nothing more. So the counts and rounds are the planner's own,
including its upgradeStrategy arithmetic, placement (a task that fits no node is *unplaced*,
with the planner's reason) and launch backoff. Whether a version and a deployment are made
follows `kade.deployments.intent.update_app`; which fields restart tasks, `spec_hash`.

Other apps are handed to the planner as unreadable, which it leaves exactly as they are: their
tasks keep holding their resources and ports, and no work is spent on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kade.deployments import intent
from kade.deployments.intent import same_definition
from kade.model import (
    Deployment,
    Node,
    NodeControl,
    QueueEntry,
    Task,
    TaskStatus,
)
from kade.scheduler.index import TaskIndex
from kade.scheduler.plan import Snapshot, plan
from kade.scheduler.sim import Simulation
from kade.spec import AppSpec, spec_hash

MAX_ROUNDS = 512  # planner rounds simulated; a longer rollout is cut short (complete=False)
MAX_TASK_ROUNDS = 100_000  # rounds x the app's tasks: what a round costs grows with them
MAX_FIELDS = 200  # changed fields listed; the rest are counted
PLAN_VERSION = "(new)"  # the version the new definition has while it is planned


@dataclass(frozen=True)
class World:
    """The records the planner reads, as the store has them now."""

    app_ids: frozenset[str]  # every app in the store, readable or not
    tasks: Mapping[str, Task]
    statuses: Mapping[str, TaskStatus]
    nodes: Mapping[str, Node]
    queue: Mapping[str, QueueEntry] = field(default_factory=dict)
    controls: Mapping[str, NodeControl] = field(default_factory=dict)
    down: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Round:
    start: int
    stop: int


@dataclass(frozen=True)
class Preview:
    app_id: str
    new: bool  # the app does not exist yet
    changed: bool  # a PUT would store a new version
    restarts_tasks: bool  # the new version has another spec: its tasks are replaced
    fields: list[dict[str, Any]]
    more_fields: int  # changed fields beyond MAX_FIELDS
    start: int
    stop: int
    replace: int
    keep: int
    unplaced: int  # wanted tasks the planner could not place (or that wait)
    waiting: str  # why, in the planner's words
    rounds: list[Round]
    complete: bool  # False when the rollout needs more than MAX_ROUNDS rounds
    deploys: bool  # a PUT would start a deployment (tasks must change)


def preview(old: AppSpec | None, new: AppSpec, world: World, now: float,
            port_range: tuple[int, int] = (31000, 32000)) -> Preview:
    """What storing `new` (admitted, no version) as the app's next version would change."""
    app_id = new.id
    old_wire = _comparable(old) if old is not None else {}
    fields, more = field_changes(old_wire, _comparable(new))
    changed = old is None or not same_definition(old, new)
    restarts = old is not None and spec_hash(old) != spec_hash(new)
    deploys = intent.starts_deployment(old, new)

    planned = new.model_copy(update={"version": PLAN_VERSION})
    sim = Simulation(
        apps={app_id: planned}, nodes=dict(world.nodes), tasks=dict(world.tasks),
        statuses=dict(world.statuses), queue=dict(world.queue), controls=dict(world.controls),
        down=dict(world.down), port_range=port_range,
    )
    # The tasks it makes are named `<app>.ffff00000001`…: no stored task's id (those are
    # random, or counted from 1 in a simulation) is overwritten.
    sim.serial = 0xFFFF_0000_0000
    # Indexed once and kept current by the simulation, as the scheduler loop keeps its index:
    # a round then costs what the app's tasks cost, not what the whole cluster's do.
    sim.index = TaskIndex.build(sim.tasks.values(), sim.statuses.values())
    others = world.app_ids - {app_id}
    before = {t.id for t in sim.active(app_id)}
    launched = stopped = 0
    rounds: list[Round] = []
    complete = False
    clock = now
    for _ in range(round_limit(max(len(before), planned.instances))):
        snap = Snapshot(apps=sim.apps, tasks=sim.tasks, statuses=sim.statuses, nodes=sim.nodes,
                        queue=sim.queue, controls=sim.controls, down=sim.down,
                        unreadable=others, index=sim.index)
        p = plan(snap, clock, port_range)
        created = sim.apply(p, clock)
        mine = [s for s in p.stops if sim.tasks[s.task_id].app_id == app_id]
        for task in created:
            if task.app_id == app_id:
                sim.report(task.id, "running", clock,
                           health="healthy" if planned.health_checks else "unknown")
        for s in mine:
            sim.report(s.task_id, "killed", clock)
        ours = sum(1 for t in created if t.app_id == app_id)
        if ours or mine:
            rounds.append(Round(start=ours, stop=len(mine)))
        launched += ours
        stopped += sum(1 for s in mine if s.task_id in before)
        if not (p.launches or p.stops or p.forgets):
            if p.wake_at is not None and p.wake_at > clock:
                clock = p.wake_at  # a launch delay (backoff): plan again when it ends
                continue
            complete = True
            break
    keep = len(before) - stopped
    replace = min(launched, stopped)
    active = len(sim.active(app_id))
    entry = sim.queue.get(app_id)
    wanted = planned.instances if planned.type != "system" else active
    return Preview(
        app_id=app_id, new=old is None, changed=changed, restarts_tasks=restarts,
        fields=fields, more_fields=more,
        start=launched - replace, stop=stopped - replace, replace=replace, keep=keep,
        unplaced=max(wanted - active, 0) if complete else 0,
        waiting=entry.waiting if entry is not None and complete else "",
        rounds=rounds, complete=complete,
        deploys=changed and deploys,
    )


def round_limit(tasks: int) -> int:
    """How many planner rounds a preview of an app of `tasks` tasks may simulate: about 0.8 ms
    a round for 100 tasks (bench/plan_preview.py), so at most ~100 ms of rounds."""
    return max(min(MAX_ROUNDS, MAX_TASK_ROUNDS // max(tasks, 1)), 8)


def field_changes(old: Any, new: Any, path: str = "") -> tuple[list[dict[str, Any]], int]:
    """The leaves that differ between two documents, as `{"path", "from", "to"}` (paths as
    the problems of admission name fields: `healthChecks[0].path`); a value missing on one side
    is None. Lists of different lengths compare item by item. At most MAX_FIELDS are listed;
    the second value counts the others."""
    out: list[dict[str, Any]] = []
    more = 0

    def walk(a: Any, b: Any, where: str) -> None:
        nonlocal more
        if a == b:
            return
        if isinstance(a, dict) and b is None or a is None and isinstance(b, dict):
            a, b = a or {}, b or {}  # an object added or removed: its leaves are listed
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(a.keys() | b.keys()):
                walk(a.get(key), b.get(key), f"{where}.{key}" if where else key)
        elif isinstance(a, list) and isinstance(b, list) and a and b:
            for i in range(max(len(a), len(b))):
                walk(a[i] if i < len(a) else None, b[i] if i < len(b) else None,
                     f"{where}[{i}]")
        elif len(out) < MAX_FIELDS:
            out.append({"path": where or "(app)", "from": a, "to": b})
        else:
            more += 1

    walk(old, new, path)
    return out, more


def steps_deployment(p: Preview, from_version: str | None, now: float) -> Deployment | None:
    """The deployment a PUT would start, not started yet: its steps are Marathon's
    (`kade.api.deployments`)."""
    if not p.deploys:
        return None
    return Deployment(id="(plan)", app_id=p.app_id, kind="deploy", version=PLAN_VERSION,
                      from_version=from_version, started_at=now, deadline=now,
                      instances=p.start + p.replace + p.keep + p.unplaced)


def _comparable(app: AppSpec) -> dict[str, Any]:
    wire = app.wire()
    wire.pop("version", None)
    return wire
