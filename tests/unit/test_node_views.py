"""A node's status, usage and drain progress, computed from plain records."""

from __future__ import annotations

from kade.api.node_views import (
    DrainView,
    drain_view,
    index_tasks,
    known_names,
    node_json,
    node_status,
)
from kade.model import DrainSpec, Node, NodeControl, Task, TaskState, TaskStatus
from kade.scheduler.sim import Simulation, app_spec
from kade.scheduler.sim import node as sim_node
from kade.spec import AppSpec

T0 = 1_800_000_000.0
CHECKED = {"healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}
APPS = {"/web": app_spec("/web", instances=1, **CHECKED),
        "/agent": app_spec("/agent", type="system"),
        "/job": app_spec("/job", instances=1)}


def node(name: str = "n1", **fields: object) -> Node:
    return Node(name=name, address="10.0.0.1", hostname="host1", cpus=4, mem=4096,
                **fields)  # type: ignore[arg-type]


def task(tid: str, app: str = "/web", on: str = "n1", *, created: float = T0 - 100,
         desired: str = "run", ports: tuple[int, ...] = ()) -> Task:
    return Task(id=tid, app_id=app, version="v1", spec_hash="h", node=on, cpus=0.5, mem=128,
                host_ports=list(ports), created_at=created, desired=desired)  # type: ignore[arg-type]


def status(t: Task, state: TaskState = "running", health: str = "healthy") -> TaskStatus:
    return TaskStatus(task_id=t.id, app_id=t.app_id, node=t.node, state=state,
                      health=health, updated_at=T0)  # type: ignore[arg-type]


def drain_progress(name: str, control: NodeControl, tasks: list[Task],
                   statuses: dict[str, TaskStatus], apps: dict[str, AppSpec]
                   ) -> DrainView | None:
    return drain_view(name, control, index_tasks(tasks, statuses, apps))


def draining(keep_system: bool = False, tasks: int = 0) -> NodeControl:
    return NodeControl(name="n1", eligible=False, drain=DrainSpec(
        started_at=T0, deadline=T0 + 300, keep_system=keep_system, tasks_at_start=tasks))


def test_no_drain_no_progress() -> None:
    assert drain_progress("n1", NodeControl(name="n1"), [], {}, APPS) is None


def test_progress_counts_left_moving_done_and_kept() -> None:
    a, b, c = task("a"), task("b"), task("c", "/job")
    sys_task = task("s", "/agent")
    # a's replacement is starting on n2; b has no replacement yet; c was stopped already
    # (its replacement served, so the old one is on its way out); d is gone from the store.
    a2 = task("a2", on="n2", created=T0 + 5)
    c_old = c.model_copy(update={"desired": "stop"})
    c2 = task("c2", "/job", on="n2", created=T0 + 1)
    tasks = [a, b, c_old, sys_task, a2, c2]
    statuses = {a.id: status(a), b.id: status(b), c.id: status(c, "killing"),
                sys_task.id: status(sys_task), a2.id: status(a2, "starting", "unknown"),
                c2.id: status(c2)}
    p = drain_progress("n1", draining(keep_system=True, tasks=5), tasks, statuses, APPS)
    assert p is not None
    assert (p.total, p.left, p.moving, p.done, p.kept) == (5, 1, 2, 1, 1)
    assert not p.complete
    assert p.json(T0 + 10)["tasks"] == {"total": 5, "left": 1, "moving": 2, "done": 1,
                                        "kept": 1}
    assert p.json(T0 + 10)["deadlinePassed"] is False
    assert p.json(T0 + 300)["deadlinePassed"] is True


def test_a_replacement_that_serves_no_longer_makes_its_task_moving() -> None:
    """Surge-first: once the replacement is healthy the old task is stopped; until the
    scheduler does so, the task is left (its replacement no longer counts as moving it)."""
    a, a2 = task("a"), task("a2", on="n2", created=T0 + 5)
    p = drain_progress("n1", draining(tasks=1), [a, a2], {a.id: status(a), a2.id: status(a2)},
                       APPS)
    assert p is not None and (p.left, p.moving) == (1, 0)
    # a task the app runs anyway (its second instance) starting elsewhere is not a
    # replacement: the task on the node has none yet
    other = task("a3", on="n2", created=T0 + 5)
    p = drain_progress("n1", draining(tasks=1), [a, other],
                       {a.id: status(a), other.id: status(other, "starting", "unknown")},
                       {**APPS, "/web": APPS["/web"].model_copy(update={"instances": 2})})
    assert p is not None and (p.left, p.moving) == (1, 0)


def test_without_health_checks_a_running_replacement_serves() -> None:
    j, j2 = task("j", "/job"), task("j2", "/job", on="n2", created=T0 + 1)
    statuses = {j.id: status(j), j2.id: status(j2, "running", "unknown")}
    p = drain_progress("n1", draining(tasks=1), [j, j2], statuses, APPS)
    assert p is not None and (p.left, p.moving) == (1, 0)
    statuses[j2.id] = status(j2, "staging", "unknown")
    p = drain_progress("n1", draining(tasks=1), [j, j2], statuses, APPS)
    assert p is not None and (p.left, p.moving) == (0, 1)


def test_complete_when_nothing_is_left_but_kept_system_tasks() -> None:
    s = task("s", "/agent")
    p = drain_progress("n1", draining(keep_system=True, tasks=3), [s], {s.id: status(s)}, APPS)
    assert p is not None and p.complete and (p.done, p.kept) == (2, 1)
    # without keepSystem the system task is the last to move
    p = drain_progress("n1", draining(tasks=3), [s], {s.id: status(s)}, APPS)
    assert p is not None and not p.complete and p.left == 1
    # ended tasks are not on the node any more
    p = drain_progress("n1", draining(tasks=3), [s], {s.id: status(s, "killed")}, APPS)
    assert p is not None and p.complete and p.done == 3


def test_status() -> None:
    assert node_status(None, None) == "down"
    assert node_status(node(), None, alive=False) == "down"  # its agent's lease ended
    assert node_status(node(), None) == "ready"
    assert node_status(node(draining=True), None) == "draining"
    empty = drain_progress("n1", draining(), [], {}, APPS)
    assert node_status(node(), empty) == "drained"
    a = task("a")
    busy = drain_progress("n1", draining(), [a], {a.id: status(a)}, APPS)
    assert node_status(node(), busy) == "draining"


def test_a_node_as_the_api_shows_it() -> None:
    a, b = task("a", ports=(31000,)), task("b", ports=(31001,))
    gone = task("g", ports=(31002,))
    elsewhere = task("e", on="n2")
    statuses = {a.id: status(a), b.id: status(b, "starting", "unknown"),
                gone.id: status(gone, "failed")}
    n = node(attributes={"az": "1a"}, ports_in_use=[31500], updated_at=T0)
    shown = node_json("n1", n, NodeControl(name="n1", eligible=False),
                      index_tasks([a, b, gone, elsewhere], statuses, APPS), T0)
    assert shown == {
        "name": "n1", "address": "10.0.0.1", "hostname": "host1", "attributes": {"az": "1a"},
        "drivers": [], "status": "ready", "eligible": False, "tasks": 2,
        "cpus": {"used": 1.0, "total": 4.0}, "mem": {"used": 256.0, "total": 4096.0},
        "portsInUse": [31000, 31001, 31500], "portsHeld": [31500],
        "lastSeen": "2027-01-15T08:00:00.000Z", "drain": None,
    }


def test_a_node_whose_record_is_gone_is_down() -> None:
    a = task("a")
    shown = node_json("n1", None, None, index_tasks([a], {a.id: status(a)}, APPS), T0)
    assert (shown["status"], shown["eligible"], shown["tasks"], shown["lastSeen"]) == (
        "down", True, 1, None)
    assert known_names(["n2"], ["n3"], [a, task("x", on="n4", desired="stop")]) == [
        "n1", "n2", "n3"]


def test_the_api_shows_the_planners_progress_through_a_whole_drain() -> None:
    """A drain played by the planner itself (the simulator): the API's view counts down to
    complete exactly when the planner has nothing left to move, and it only ever moves
    forward — done never shrinks, and it ends with every task of the node done."""
    sim = Simulation()
    for name in ("n1", "n2", "n3"):
        sim.add_node(sim_node(name, cpus=8, mem=8192))
    web = sim.add_app(app_spec("/web", instances=6, **CHECKED))
    sim.step(T0)
    for t in sim.active("/web"):
        sim.report(t.id, "running", T0, health="healthy")
    on_n1 = sum(1 for t in sim.active("/web") if t.node == "n1")
    assert on_n1 >= 1
    sim.control(NodeControl(name="n1", eligible=False, drain=DrainSpec(
        started_at=T0, deadline=T0 + 3600, tasks_at_start=on_n1)))
    done_seen: list[int] = []
    for step in range(1, 40):
        now = T0 + step
        sim.step(now)
        view = drain_view("n1", sim.controls["n1"],
                          index_tasks(sim.tasks.values(), sim.statuses, sim.apps))
        assert view is not None and view.total == on_n1
        done_seen.append(view.done)
        left_on_n1 = [t for t in sim.tasks.values() if t.node == "n1"
                      and not (sim.statuses.get(t.id) and sim.statuses[t.id].state == "killed")]
        assert view.complete == (not left_on_n1)
        if view.complete:
            break
        for t in list(sim.tasks.values()):  # replacements turn healthy, stopped tasks end
            status = sim.statuses.get(t.id)
            if t.desired == "run" and (status is None or status.health != "healthy"):
                sim.report(t.id, "running", now, health="healthy")
            elif t.desired == "stop" and (status is None or status.state != "killed"):
                sim.report(t.id, "killed", now)
    assert done_seen == sorted(done_seen) and done_seen[-1] == on_n1
    assert sum(1 for t in sim.active("/web") if t.node != "n1") == web.instances
