"""Writes of user intent: apps and their versions. Validation happens before any of these.

Every accepted change is a new version (`versions/<id>/<version>`), written in the same
transaction as the app itself, guarded by the app's mod_revision: a write that lost a race is
retried from a fresh read, never merged blindly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from kade import model
from kade.api.views import iso
from kade.model import Task
from kade.spec import AppSpec
from kade.store.base import Compare, Delete, Put, Store

MAX_VERSIONS = 100  # per app; older ones are pruned
_RETRIES = 20


class NotFound(LookupError):
    pass


class Conflict(Exception):
    pass


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
    entry = await store.get(model.app_key(app_id))
    return AppSpec.model_validate_json(entry.value) if entry else None


async def put_app(
    store: Store, app: AppSpec, now: float, *, create_only: bool = False
) -> tuple[AppSpec, bool]:
    """Store `app` as the app's new version. Returns (stored app, whether anything changed)."""
    return await update_app(store, app.id, lambda _old: app, now, create_only=create_only,
                            allow_create=True)


async def update_app(
    store: Store,
    app_id: str,
    change: Callable[[AppSpec], AppSpec],
    now: float,
    *,
    create_only: bool = False,
    allow_create: bool = False,
) -> tuple[AppSpec, bool]:
    key = model.app_key(app_id)
    for _ in range(_RETRIES):
        entry = await store.get(key)
        old = AppSpec.model_validate_json(entry.value) if entry else None
        if old is not None and create_only:
            raise Conflict(f"app {app_id} already exists (use PUT or `kade deploy` to replace it)")
        if old is None and not allow_create:
            raise NotFound(f"app {app_id} does not exist")
        new = change(old) if old is not None else change(AppSpec(id=app_id, cmd="true"))
        if old is not None and _same(old, new):
            return old, False
        version = _new_version(now, old.version if old else None)
        new = new.model_copy(update={"version": version})
        raw = new.model_dump_json(by_alias=True).encode()
        ops: list[Put | Delete] = [
            Put(key, raw),
            Put(model.version_key(app_id, version), raw),
        ]
        result = await store.txn(
            [Compare(key, entry.mod_revision if entry else 0)], ops
        )
        if result.succeeded:
            await _prune_versions(store, app_id)
            return new, True
    raise Conflict(f"app {app_id} is changing too fast, try again")


def _same(a: AppSpec, b: AppSpec) -> bool:
    return a.model_copy(update={"version": None}) == b.model_copy(update={"version": None})


async def _prune_versions(store: Store, app_id: str) -> None:
    entries, _ = await store.range(model.versions_prefix(app_id))
    for entry in entries[:-MAX_VERSIONS]:
        await store.delete(entry.key)


async def delete_app(store: Store, app_id: str) -> None:
    """Remove the app; the scheduler stops its tasks. Its versions stay, for history."""
    key = model.app_key(app_id)
    entry = await store.get(key)
    if entry is None:
        raise NotFound(f"app {app_id} does not exist")
    await store.delete(key, expect=entry.mod_revision)


async def list_versions(store: Store, app_id: str) -> list[str]:
    entries, _ = await store.range(model.versions_prefix(app_id))
    return sorted((e.key.rsplit("/", 1)[1] for e in entries), reverse=True)


async def get_version(store: Store, app_id: str, version: str) -> AppSpec | None:
    entry = await store.get(model.version_key(app_id, version))
    return AppSpec.model_validate_json(entry.value) if entry else None


async def kill_task(store: Store, task_id: str, now: float, *, scale: bool) -> Task:
    """Ask for one task to be stopped: it is replaced, unless `scale` lowers the app's count.

    This is the one place where the API writes a task record: the user's intent "stop this
    task" is the task's `desired` field. The guard keeps it from racing the scheduler.
    """
    for _ in range(_RETRIES):
        entry = await store.get(model.task_key(task_id))
        if entry is None:
            raise NotFound(f"task {task_id} does not exist")
        task = Task.load(entry.value)
        if task.desired == "stop":
            return task  # already being stopped
        stopped = task.model_copy(update={"desired": "stop", "stop_reason": "killed on request"})
        compares = [Compare(entry.key, entry.mod_revision)]
        ops: list[Put | Delete] = [Put(entry.key, stopped.dump())]
        if scale:
            app_entry = await store.get(model.app_key(task.app_id))
            if app_entry is not None:
                app = AppSpec.model_validate_json(app_entry.value)
                scaled = app.model_copy(
                    update={"instances": max(app.instances - 1, 0),
                            "version": _new_version(now, app.version)}
                )
                raw = scaled.model_dump_json(by_alias=True).encode()
                compares.append(Compare(app_entry.key, app_entry.mod_revision))
                ops += [Put(app_entry.key, raw),
                        Put(model.version_key(task.app_id, scaled.version or ""), raw)]
        result = await store.txn(compares, ops)
        if result.succeeded:
            return stopped
    raise Conflict(f"task {task_id} is changing too fast, try again")
