"""Writes of user intent: apps and their versions. Validation happens before any of these.

Every accepted change is a new version (`versions/<id>/<version>`), written in the same
transaction as the app itself, guarded by the app's mod_revision: a write that lost a race is
retried from a fresh read, never merged blindly.

A stored app that cannot be read (quarantined, see `kade.model.decode`) can be replaced by a
valid definition or deleted; changes that need the old definition (scale, restart, kill with
scale) are refused with the reason, as `Quarantined`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Literal

from kade import model
from kade.model import (
    DRIVER_DOCKER,
    Deployment,
    Node,
    Task,
    Unreadable,
    decode,
    decode_all,
    driver_for,
    iso,
)
from kade.scheduler.placement import unrunnable
from kade.spec import AppSpec, SpecError, spec_hash
from kade.store.base import Compare, Delete, Entry, Put, Store

MAX_VERSIONS = 100  # per app; older ones are pruned
_RETRIES = 20


class NotFound(LookupError):
    pass


class Conflict(Exception):
    pass


class Quarantined(Conflict):
    """A stored record this change needs cannot be read."""

    def __init__(self, what: str, bad: Unreadable) -> None:
        super().__init__(f"{what} cannot be read ({bad}): replace it with a valid definition "
                         "(PUT) or delete it")
        self.bad = bad


def _read_app(entry: Entry | None) -> AppSpec | Unreadable | None:
    return decode(entry, AppSpec) if entry is not None else None


def _new_version(now: float, previous: str | None) -> str:
    version = iso(now)
    assert version is not None
    if previous is not None and version <= previous:
        # Two changes within one millisecond: keep versions unique and increasing.
        last = dt.datetime.fromisoformat(previous.replace("Z", "+00:00"))
        version = iso(last.timestamp() + 0.001)
        assert version is not None
    return version


async def get_app(store: Store, app_id: str) -> AppSpec | None:
    """The app, None if there is none; raises Quarantined if it cannot be read."""
    app = _read_app(await store.get(model.app_key(app_id)))
    if isinstance(app, Unreadable):
        raise Quarantined(f"app {app_id}", app)
    return app


async def put_app(
    store: Store, app: AppSpec, now: float, *, create_only: bool = False,
    kind: DeploymentKind = "deploy",
) -> tuple[AppSpec, bool]:
    """Store `app` as the app's new version. Returns (stored app, whether anything changed).
    Raises SpecError when no registered node can run it."""
    await refuse_unrunnable(store, app)
    return await update_app(store, app.id, lambda _old: app, now, create_only=create_only,
                            allow_create=True, kind=kind)


def starts_deployment(old: AppSpec | None, new: AppSpec) -> bool:
    """Storing `new` over `old` starts a deployment: its tasks must change (a new app, a
    definition that restarts them, another number of instances)."""
    return old is None or spec_hash(old) != spec_hash(new) or old.instances != new.instances


async def update_app(
    store: Store,
    app_id: str,
    change: Callable[[AppSpec], AppSpec],
    now: float,
    *,
    create_only: bool = False,
    allow_create: bool = False,
    kind: DeploymentKind = "deploy",
) -> tuple[AppSpec, bool]:
    """Apply `change` to the app and store the result as a new version, with a deployment
    when tasks must change (new spec or instance count); running deployments of the app are
    superseded in the same transaction."""
    key = model.app_key(app_id)
    for _ in range(_RETRIES):
        entry = await store.get(key)
        old = _read_app(entry)
        if isinstance(old, Unreadable):
            if create_only or not allow_create:
                raise Quarantined(f"app {app_id}", old)
            old = None  # replaced whole by a valid definition; the guard below still holds
        if old is not None and create_only:
            raise Conflict(f"app {app_id} already exists (use PUT or `kade deploy` to replace it)")
        if old is None and not allow_create:
            raise NotFound(f"app {app_id} does not exist")
        new = change(old) if old is not None else change(AppSpec(id=app_id, cmd="true"))
        if old is not None and same_definition(old, new):
            return old, False
        version = _new_version(now, old.version if old else None)
        new = new.model_copy(update={"version": version})
        raw = new.model_dump_json(by_alias=True).encode()
        compares = [Compare(key, entry.mod_revision if entry else 0)]
        ops: list[Put | Delete] = [
            Put(key, raw),
            Put(model.version_key(app_id, version), raw),
        ]
        if starts_deployment(old, new):
            dep_compares, dep_ops = await _start_deployment(
                store, app_id, kind, new, old.version if old else None, now)
            compares += dep_compares
            ops += dep_ops
        result = await store.txn(compares, ops)
        if result.succeeded:
            await _prune_versions(store, app_id)
            return new, True
    raise Conflict(f"app {app_id} is changing too fast, try again")


async def refuse_unrunnable(store: Store, app: AppSpec) -> None:
    """A definition that no registered node can run (e.g. a command app where every node
    runs only Docker) is refused with the reason, rather than waiting forever."""
    entries, _ = await store.range(model.NODES)
    driver = driver_for(app)
    why = unrunnable(driver, decode_all(entries, Node)[0])
    if why is not None:
        field = "container.docker.image" if driver == DRIVER_DOCKER else "cmd"
        raise SpecError([f"{field}: {why}"])


def same_definition(a: AppSpec, b: AppSpec) -> bool:
    return a.model_copy(update={"version": None}) == b.model_copy(update={"version": None})


async def _prune_versions(store: Store, app_id: str) -> None:
    """Keep the newest MAX_VERSIONS versions, and any version a task still runs."""
    entries, _ = await store.range(model.versions_prefix(app_id))
    if len(entries) <= MAX_VERSIONS:
        return
    tasks, _ = await store.range(model.TASKS)
    in_use = {t.version for t in decode_all(tasks, Task)[0] if t.app_id == app_id}
    for entry in entries[:-MAX_VERSIONS]:
        if entry.key.rsplit("/", 1)[1] not in in_use:
            await store.delete(entry.key)


DeploymentKind = Literal["deploy", "scale", "restart", "destroy", "rollback"]


async def _start_deployment(
    store: Store, app_id: str, kind: DeploymentKind, new: AppSpec | None,
    from_version: str | None, now: float,
) -> tuple[list[Compare], list[Put | Delete]]:
    """The writes that start a deployment of `new` and supersede the app's running ones."""
    compares: list[Compare] = []
    ops: list[Put | Delete] = []
    entries, _ = await store.range(model.DEPLOYMENTS)
    for entry in entries:
        running = decode(entry, Deployment)
        if isinstance(running, Unreadable):
            continue  # quarantined: not ours to supersede
        if running.app_id == app_id and running.status == "running":
            ended = running.model_copy(update={
                "status": "superseded", "finished_at": now,
                "message": f"superseded by a {kind}" + (f" to {new.version}" if new else ""),
            })
            compares.append(Compare(entry.key, entry.mod_revision))
            ops.append(Put(entry.key, ended.dump()))
    deadline = new.upgrade_strategy.progress_deadline_seconds if new else 300.0
    dep = Deployment(
        id=uuid.uuid4().hex[:12], app_id=app_id, kind=kind,
        version=new.version if new else None, from_version=from_version,
        started_at=now, deadline=now + deadline, instances=new.instances if new else 0,
    )
    ops.append(Put(model.deployment_key(dep.id), dep.dump()))
    return compares, ops


async def delete_app(store: Store, app_id: str, now: float) -> None:
    """Remove the app; the scheduler stops its tasks. Its versions stay, for history."""
    key = model.app_key(app_id)
    for _ in range(_RETRIES):
        entry = await store.get(key)
        if entry is None:
            raise NotFound(f"app {app_id} does not exist")
        old = _read_app(entry)
        from_version = old.version if isinstance(old, AppSpec) else None
        compares, ops = await _start_deployment(store, app_id, "destroy", None, from_version,
                                                now)
        result = await store.txn([Compare(key, entry.mod_revision), *compares],
                                 [Delete(key), *ops])
        if result.succeeded:
            return
    raise Conflict(f"app {app_id} is changing too fast, try again")


async def list_versions(store: Store, app_id: str) -> list[str]:
    entries, _ = await store.range(model.versions_prefix(app_id))
    return sorted((e.key.rsplit("/", 1)[1] for e in entries), reverse=True)


async def get_version(store: Store, app_id: str, version: str) -> AppSpec | None:
    """That version of the app, None if there is none; raises Quarantined if it cannot be
    read."""
    app = _read_app(await store.get(model.version_key(app_id, version)))
    if isinstance(app, Unreadable):
        raise Quarantined(f"version {version} of app {app_id}", app)
    return app


async def kill_task(store: Store, task_id: str, now: float, *, scale: bool) -> Task:
    """Ask for one task to be stopped: it is replaced, unless `scale` lowers the app's count.

    This is the one place where the API writes a task record: the user's intent "stop this
    task" is the task's `desired` field. The guard keeps it from racing the scheduler.
    """
    for _ in range(_RETRIES):
        entry = await store.get(model.task_key(task_id))
        if entry is None:
            raise NotFound(f"task {task_id} does not exist")
        task = decode(entry, Task)
        if isinstance(task, Unreadable):
            raise Quarantined(f"task {task_id}", task)
        if task.desired == "stop":
            return task  # already being stopped
        stopped = task.model_copy(update={"desired": "stop", "stop_reason": "killed on request"})
        compares = [Compare(entry.key, entry.mod_revision)]
        ops: list[Put | Delete] = [Put(entry.key, stopped.dump())]
        if scale:
            app_entry = await store.get(model.app_key(task.app_id))
            if app_entry is not None:
                app = decode(app_entry, AppSpec)
                if isinstance(app, Unreadable):
                    raise Quarantined(f"app {task.app_id}", app)
                scaled = app.model_copy(
                    update={"instances": max(app.instances - 1, 0),
                            "version": _new_version(now, app.version)}
                )
                raw = scaled.model_dump_json(by_alias=True).encode()
                compares.append(Compare(app_entry.key, app_entry.mod_revision))
                ops += [Put(app_entry.key, raw),
                        Put(model.version_key(task.app_id, scaled.version or ""), raw)]
                dep_compares, dep_ops = await _start_deployment(
                    store, task.app_id, "scale", scaled, app.version, now)
                compares += dep_compares
                ops += dep_ops
        result = await store.txn(compares, ops)
        if result.succeeded:
            return stopped
    raise Conflict(f"task {task_id} is changing too fast, try again")


async def roll_back(store: Store, app_id: str, version: str | None, now: float) -> AppSpec:
    """Make `version` (default: the last version with another spec) the app's new version."""
    if version is None:
        current = await get_app(store, app_id)
        if current is None:
            raise NotFound(f"app {app_id} does not exist")
        for candidate in await list_versions(store, app_id):
            try:
                old = await get_version(store, app_id, candidate)
            except Quarantined:
                continue  # an unreadable version is no rollback target
            if old is not None and spec_hash(old) != spec_hash(current):
                version = candidate
                break
        if version is None:
            raise NotFound(f"app {app_id} has no earlier version with another spec")
    target = await get_version(store, app_id, version)
    if target is None:
        raise NotFound(f"app {app_id} has no version {version}")
    stored, _ = await update_app(
        store, app_id, lambda _old: target.model_copy(update={"version": None}), now,
        kind="rollback", allow_create=True,
    )
    return stored
