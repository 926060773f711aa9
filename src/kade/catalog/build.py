"""build_catalog: apps, tasks, statuses and nodes → the catalog of services. Pure.

Rules (docs/discovery.md explains the choices):
- a task is listed from the moment its container started (`starting` or `running`) until the
  scheduler marks it to stop (`desired == "stop"`): it leaves discovery *before* it is
  stopped, so no client is sent to a task that is about to go;
- it is *passing* when it is `running` and healthy (or its app has no health checks);
  otherwise it is listed with a critical check, as Consul lists a failing instance;
- every port is an instance of the app's service; a named port adds its name as a tag
  (as mesos-consul does), and a port label `kade.service.name` moves it to its own service.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from kade.catalog.model import Catalog, CatalogNode, Check, Instance, Status
from kade.model import Node, Task, TaskStatus
from kade.spec.model import AppSpec, HealthCheck, PortSpec

NAME_LABEL = "kade.service.name"
TAGS_LABEL = "kade.service.tags"
TRAEFIK_PREFIX = "traefik."  # labels copied as `key=value` tags, for Traefik's consulCatalog

LISTED_STATES = frozenset({"starting", "running"})

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def default_service_name(app_id: str) -> str:
    """`/shop/web` → `web-shop`: the most specific segment first, as Mesos-DNS names tasks."""
    segments = [s for s in app_id.strip("/").split("/") if s]
    return "-".join(reversed(segments)).replace(".", "-")


def check_service_name(name: str) -> str | None:
    """Why `name` cannot be a service name, or None when it can (it must be one DNS label)."""
    if not _DNS_LABEL.match(name):
        return (
            f"{name!r} is not a valid service name: use 1 to 63 lowercase letters, digits and "
            "dashes, starting and ending with a letter or digit"
        )
    return None


def check_app(app: AppSpec) -> list[str]:
    """Problems with an app's discovery labels, as `field: message` (for validation on write)."""
    problems = []
    name = app.labels.get(NAME_LABEL)
    if name is not None and (why := check_service_name(name)):
        problems.append(f"labels.{NAME_LABEL}: {why}")
    for port in app.ports():
        name = port.labels.get(NAME_LABEL)
        if name is not None and (why := check_service_name(name)):
            problems.append(f"ports.{port.index}.labels.{NAME_LABEL}: {why}")
    return problems


def service_name(app: AppSpec) -> tuple[str, str | None]:
    """The app's service name, and a problem when its label was invalid and ignored."""
    label = app.labels.get(NAME_LABEL)
    default = default_service_name(app.id)
    if label is None:
        return default, None
    why = check_service_name(label)
    if why:
        return default, f"{app.id}: label {NAME_LABEL}: {why}; using {default!r}"
    return label, None


def split_tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def app_tags(app: AppSpec) -> list[str]:
    tags = split_tags(app.labels.get(TAGS_LABEL, ""))
    tags += [f"{k}={v}" for k, v in sorted(app.labels.items()) if k.startswith(TRAEFIK_PREFIX)]
    return tags


def build_catalog(
    apps: Iterable[AppSpec],
    tasks: Iterable[Task],
    statuses: Iterable[TaskStatus],
    nodes: Iterable[Node],
    *,
    datacenter: str = "dc1",
    index: int = 0,
    alive: Collection[str] | None = None,
) -> Catalog:
    """`alive`: the names under `alive/`; a node that keeps a liveness lease and is not among
    them is down (None: every node is up)."""
    node_map = {n.name: catalog_node(n, alive) for n in nodes}
    status_of = {s.task_id: s for s in statuses}
    tasks_of: dict[str, list[Task]] = {}
    for task in tasks:
        tasks_of.setdefault(task.app_id, []).append(task)
    parts = {a.id: app_part(a, tasks_of.get(a.id, ()), status_of, node_map) for a in apps}
    return assemble(parts, node_map, datacenter=datacenter, index=index)


@dataclass(frozen=True, slots=True)
class AppPart:
    """What one app contributes to the catalog: the unit of incremental rebuilds."""

    instances: tuple[Instance, ...] = ()
    extra_nodes: tuple[CatalogNode, ...] = ()  # nodes its tasks run on that are not in nodes/
    problems: tuple[str, ...] = ()

    def services(self) -> set[str]:
        return {i.service for i in self.instances}


def catalog_node(node: Node, alive: Collection[str] | None = None) -> CatalogNode:
    down = alive is not None and not node.alive(alive)
    return CatalogNode(node.name, node.address, tuple(sorted(node.attributes.items())), down)


def app_part(
    app: AppSpec,
    tasks: Iterable[Task],
    status_of: Mapping[str, TaskStatus],
    nodes: Mapping[str, CatalogNode],
) -> AppPart:
    name, problem = service_name(app)
    problems = {problem} if problem else set()
    tags = app_tags(app)
    ports = app.ports()
    instances: list[Instance] = []
    extra: dict[str, CatalogNode] = {}
    for task in sorted(tasks, key=lambda t: t.id):  # sorted: the same part for any order
        status = status_of.get(task.id)
        if status is None or task.desired != "run" or status.state not in LISTED_STATES:
            continue
        node = nodes.get(task.node)
        address = task.host or (node.address if node else "")
        if not address:
            continue  # nowhere to send anyone
        if node is None and task.node not in extra:
            extra[task.node] = CatalogNode(task.node, address)
        instances += task_instances(app, ports, task, status, name, tags, address, problems,
                                    node_down=node is not None and node.down)
    return AppPart(tuple(instances), tuple(extra.values()), tuple(sorted(problems)))


def assemble(
    parts: Mapping[str, AppPart],
    nodes: Mapping[str, CatalogNode],
    *,
    datacenter: str = "dc1",
    index: int = 0,
) -> Catalog:
    """Join the apps' parts: instances grouped by service and sorted by id, nodes by name."""
    services: dict[str, list[Instance]] = {}
    all_nodes = dict(nodes)
    problems: set[str] = set()
    for app_id in sorted(parts):
        part = parts[app_id]
        for inst in part.instances:
            services.setdefault(inst.service, []).append(inst)
        for node in part.extra_nodes:
            all_nodes.setdefault(node.name, node)
        problems.update(part.problems)
    return Catalog(
        datacenter=datacenter,
        services={k: sort_instances(v) for k, v in sorted(services.items())},
        nodes=dict(sorted(all_nodes.items())),
        index=index,
        problems=tuple(sorted(problems)),
    )


def sort_instances(instances: Iterable[Instance]) -> tuple[Instance, ...]:
    return tuple(sorted(instances, key=lambda i: i.id))


def task_instances(
    app: AppSpec,
    app_ports: list[PortSpec],
    task: Task,
    status: TaskStatus,
    name: str,
    tags: list[str],
    address: str,
    problems: set[str],
    *,
    node_down: bool = False,
) -> list[Instance]:
    """One instance per port with a host port; a single port-less one when there is none.
    On a node that is down, none passes: nobody knows that it still runs."""
    passing, why = task_passing(app, status)
    if node_down:
        passing, why = False, f"node {task.node} is down (its agent stopped answering)"
    ports: list[tuple[PortSpec | None, int]] = [
        (p, task.host_ports[p.index])
        for p in app_ports
        if p.index < len(task.host_ports) and task.host_ports[p.index] > 0
    ]
    if not ports:
        ports = [(None, 0)]
    out = []
    for port, host_port in ports:
        inst_id = task.id if port is None else f"{task.id}:{port.index}"
        inst_name = name
        inst_tags = list(tags)
        meta: dict[str, str] = {"app_id": app.id, "task_id": task.id, "version": task.version}
        if port is not None:
            meta["port_index"] = str(port.index)
            label = port.labels.get(NAME_LABEL)
            if label is not None:
                if (bad := check_service_name(label)) is None:
                    inst_name = label
                else:
                    problems.add(f"{app.id}: port {port.index}: label {NAME_LABEL}: {bad}")
            if port.name:
                meta["port_name"] = port.name
                inst_tags.append(port.name)
            inst_tags += split_tags(port.labels.get(TAGS_LABEL, ""))
            inst_tags += [
                f"{k}={v}" for k, v in sorted(port.labels.items()) if k.startswith(TRAEFIK_PREFIX)
            ]
        out.append(
            Instance(
                id=inst_id,
                service=inst_name,
                task_id=task.id,
                app_id=app.id,
                node=task.node,
                address=address,
                port=host_port,
                port_index=None if port is None else port.index,
                port_name=None if port is None else port.name,
                tags=tuple(dict.fromkeys(inst_tags)),
                meta=tuple(sorted(meta.items())),
                checks=instance_checks(inst_id, app.health_checks, status, passing, why),
            )
        )
    return out


def task_passing(app: AppSpec, status: TaskStatus) -> tuple[bool, str]:
    """Whether the task may receive traffic, and the output of its state check saying why."""
    if status.state != "running":
        return False, f"task is {status.state}"
    if not app.health_checks:
        return True, "task is running (the app has no health checks)"
    if status.health == "healthy":
        return True, "task is running and healthy"
    return False, f"task is running, health {status.health}"


def instance_checks(
    inst_id: str,
    health_checks: list[HealthCheck],
    status: TaskStatus,
    passing: bool,
    why: str,
) -> tuple[Check, ...]:
    """The task-state check, then one per health check of the app.

    When the task passes, every check passes, so that Consul's `?passing` filter (all checks
    passing) and kade's rule always agree; otherwise the state check carries the reason.
    """
    checks = [Check(f"service:{inst_id}", "Task state", "passing" if passing else "critical", why)]
    results = {r.index: r for r in status.health_results}
    for i, hc in enumerate(health_checks):
        result = results.get(i)
        state: Status
        if passing or (result is not None and result.alive):
            state, output = "passing", "alive"
        else:
            state = "critical"
            output = result.last_failure_cause if result and result.last_failure_cause else (
                "failing" if result else "no result yet"
            )
        checks.append(Check(f"service:{inst_id}:{i + 1}", _check_name(hc), state, output,
                            _CHECK_TYPES.get(hc.kind, "")))
    return tuple(checks)


_CHECK_TYPES = {"HTTP": "http", "HTTPS": "http", "TCP": "tcp", "COMMAND": "script"}


def _check_name(hc: HealthCheck) -> str:
    if hc.kind in ("HTTP", "HTTPS"):
        return f"{hc.kind} {hc.path}"
    if hc.kind == "COMMAND" and hc.command is not None:
        return f"COMMAND {hc.command.value}"
    return hc.kind

