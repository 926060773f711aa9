"""Marathon groups: a tree of apps deployed together, with `dependencies` between them.

kade stores apps, not groups: a group is the set of apps whose ids lie under its id, as in
Marathon's paths (`/shop/db`, `/shop/web` are the group `/shop`). A group definition is
flattened here into app definitions with absolute ids, their `dependencies` resolved to the
apps they name (a dependency on a group means every app in it), and checked for cycles. The
order of starts comes from the scheduler: an app whose dependencies are not all healthy is
not started yet (`kade.scheduler.plan`).

Pure: plain data in, plain data or a SpecError naming the field out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kade.spec.errors import SpecError

MAX_DEPTH = 16  # nested groups; deeper trees are refused rather than walked
_GROUP_KEYS = {"id", "apps", "groups", "dependencies", "version", "enforceRole"}


def parent_of(path: str) -> str:
    """`/shop/web` → `/shop`; `/web` → `/`."""
    head, _, _ = path.rstrip("/").rpartition("/")
    return head or "/"


def resolve_id(ref: str, base: str) -> str:
    """A path as Marathon resolves it: absolute if it starts with `/`, else relative to
    `base`, with `.` and `..` segments."""
    parts = [] if ref.startswith("/") else [p for p in base.split("/") if p]
    for seg in ref.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
        else:
            parts.append(seg)
    return "/" + "/".join(parts)


def is_group(data: Any) -> bool:
    """A group definition, not an app's: `apps` or `groups` listed, and nothing an app runs
    (`cmd`, `args`, `container`). A file given to `kade up --deploy` may hold either."""
    return (isinstance(data, dict)
            and any(isinstance(data.get(k), list) for k in ("apps", "groups"))
            and not {"cmd", "args", "container"} & set(data))


def is_under(app_id: str, group_id: str) -> bool:
    return group_id == "/" or app_id == group_id or app_id.startswith(group_id.rstrip("/") + "/")


@dataclass
class Flat:
    """A group definition flattened: its apps (plain definitions, absolute ids and resolved
    dependencies) and the ids of every group in it."""

    id: str
    apps: list[dict[str, Any]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def flatten(data: Any, *, group_id: str | None = None, known: Iterable[str] = ()) -> Flat:
    """Flatten a group definition. `group_id`: the id from the request's path, which the
    body's `id` (if any) must agree with. `known`: ids of apps that exist outside the
    definition, which dependencies may name."""
    if not isinstance(data, dict):
        raise SpecError(["group definition must be an object"])
    given = data.get("id")
    if group_id is None and not isinstance(given, str):
        raise SpecError(["id: is required"])
    root = resolve_id(str(group_id if group_id is not None else given), "/")
    if group_id is not None and isinstance(given, str) and resolve_id(given, "/") != root:
        raise SpecError([f"id: {given!r} does not match the path {root!r}"])
    flat = Flat(id=root)
    problems: list[str] = []
    declared: dict[str, list[str]] = {}  # app id -> dependency refs, resolved
    _walk(data, root, "", flat, declared, problems, 0)
    if problems:
        raise SpecError(problems)
    ids = {a["id"] for a in flat.apps}
    everything = ids | set(known)
    expanded: dict[str, list[str]] = {}
    for app_id, refs in declared.items():
        deps: list[str] = []
        for ref in refs:
            if ref in everything:
                matched = [ref]
            else:  # a group: every app in it
                matched = sorted(a for a in everything if is_under(a, ref))
            if not matched:
                problems.append(f"{app_id}: dependency {ref} is neither an app nor a group")
            deps += matched
        expanded[app_id] = sorted(set(deps) - {app_id})
    if problems:
        raise SpecError(problems)
    order = dependency_order({a: expanded[a] for a in ids})
    by_id = {a["id"]: a for a in flat.apps}
    flat.apps = [{**by_id[a], "dependencies": expanded[a]} for a in order if a in by_id]
    return flat


def _walk(group: dict[str, Any], gid: str, where: str, flat: Flat,
          declared: dict[str, list[str]], problems: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        problems.append(f"{where or 'groups'}: nested deeper than {MAX_DEPTH} groups")
        return
    flat.groups.append(gid)
    if group.get("pods"):
        problems.append(f"{where}pods: pods are not supported; define each container as an "
                        "app of the group")
    for key in sorted(set(group) - _GROUP_KEYS - {"pods"}):
        problems.append(f"{where}{key}: unknown field of a group")
    group_deps = _refs(group.get("dependencies", []), gid, f"{where}dependencies", problems)
    apps = group.get("apps", [])
    if not isinstance(apps, list):
        problems.append(f"{where}apps: must be a list")
        apps = []
    for i, app in enumerate(apps):
        at = f"{where}apps[{i}]"
        if not isinstance(app, dict) or not isinstance(app.get("id"), str) or not app["id"]:
            problems.append(f"{at}.id: is required")
            continue
        app_id = resolve_id(app["id"], gid)
        if not is_under(app_id, gid) or app_id == gid:
            problems.append(f"{at}.id: {app['id']!r} is not inside the group {gid}")
            continue
        if app_id in declared:
            problems.append(f"{at}.id: {app_id} is defined twice")
            continue
        own = _refs(app.get("dependencies", []), parent_of(app_id), f"{at}.dependencies",
                    problems)
        declared[app_id] = own + group_deps
        flat.apps.append({**app, "id": app_id})
    groups = group.get("groups", [])
    if not isinstance(groups, list):
        problems.append(f"{where}groups: must be a list")
        return
    for i, sub in enumerate(groups):
        at = f"{where}groups[{i}]"
        if not isinstance(sub, dict) or not isinstance(sub.get("id"), str) or not sub["id"]:
            problems.append(f"{at}.id: is required")
            continue
        sub_id = resolve_id(sub["id"], gid)
        if not is_under(sub_id, gid) or sub_id == gid:
            problems.append(f"{at}.id: {sub['id']!r} is not inside the group {gid}")
            continue
        _walk(sub, sub_id, f"{at}.", flat, declared, problems, depth + 1)


def _refs(value: Any, base: str, where: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}: must be a list of app or group ids")
        return []
    return [resolve_id(v, base) for v in value]


def dependency_order(deps: Mapping[str, Iterable[str]]) -> list[str]:
    """The apps in an order where each comes after what it depends on (ties by id); a cycle
    is refused, naming it. Dependencies outside `deps` are taken as already there."""
    graph = {a: sorted(d for d in ds if d in deps) for a, ds in deps.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = path[path.index(node):] + [node]
            raise SpecError([f"dependencies: cycle {' -> '.join(cycle)}"])
        state[node] = 1
        for dep in graph[node]:
            visit(dep, [*path, node])
        state[node] = 2
        order.append(node)

    for node in sorted(graph):
        visit(node, [])
    return order


def tree(app_ids: Iterable[str], group_id: str) -> dict[str, Any]:
    """The group `group_id` as nested ids, built from the ids of existing apps:
    `{"id", "apps": [app ids], "groups": [subtrees]}`."""
    mine = sorted(a for a in app_ids if is_under(a, group_id) and a != group_id)
    direct = [a for a in mine if parent_of(a) == group_id]
    children = sorted({_child(a, group_id) for a in mine if parent_of(a) != group_id})
    return {"id": group_id, "apps": direct,
            "groups": [tree(mine, child) for child in children]}


def _child(app_id: str, group_id: str) -> str:
    rest = app_id[len(group_id.rstrip("/")) + 1:]
    return group_id.rstrip("/") + "/" + rest.split("/")[0]
