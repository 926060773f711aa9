"""`POST /v1/apps/<id>/plan`: what a PUT of the same body would do, and nothing else.

The body passed the admission of a PUT already (`apps.py`); here the records the scheduler
plans from are read once and handed to the pure preview (`kade.deployments.preview`), off the
event loop. The answer is Nomad's `job plan` in kade's words: the fields that change, whether
tasks restart, how many instances start, stop, are replaced or kept, and the deployment's
steps as `/v1/deployments` shows them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kade import model
from kade.admission import Admitted
from kade.api.deployments import deployment_json
from kade.deployments import intent
from kade.deployments.preview import World, preview, steps_deployment
from kade.model import Node, NodeControl, QueueEntry, Task, TaskStatus, Unreadable, decode_all
from kade.spec import AppSpec
from kade.store.base import Store

AppsSnapshot = tuple[dict[str, AppSpec], list[Task], dict[str, TaskStatus],
                     dict[str, QueueEntry], dict[str, Unreadable]]


async def load_world(store: Store, apps: AppsSnapshot, now: float) -> World:
    """The planner's records: `apps` as `kade.api.apps.snapshot` read them, and the nodes;
    a registered node without its liveness key is down since now (the scheduler's view
    after a restart)."""
    good, tasks, statuses, queue, quarantined = apps
    nodes_e, _ = await store.range(model.NODES)
    ctl_e, _ = await store.range(model.NODECTL)
    alive_e, _ = await store.range(model.ALIVE)
    nodes = {n.name: n for n in decode_all(nodes_e, Node)[0]}
    alive = {e.key[len(model.ALIVE):] for e in alive_e}
    return World(
        app_ids=frozenset(good.keys() | quarantined.keys()),
        tasks={t.id: t for t in tasks}, statuses=statuses, nodes=nodes, queue=queue,
        controls={c.name: c for c in decode_all(ctl_e, NodeControl)[0]},
        down={name: now for name in nodes if name not in alive},
    )


async def plan_json(store: Store, new: Admitted, apps: AppsSnapshot, now: float
                    ) -> dict[str, Any]:
    """The plan of putting `new` (admitted), as the API answers it. The body is the caller's
    own (a deploy permission for the app), so env values are shown as written."""
    try:
        old = await intent.get_app(store, new.app.id)
    except intent.Quarantined:
        old = None  # a PUT replaces an unreadable app whole
    world = await load_world(store, apps, now)
    p = await asyncio.to_thread(preview, old, new.app, world, now)
    dep = steps_deployment(p, old.version if old is not None else None, now)
    body: dict[str, Any] = {
        "app": p.app_id,
        "new": p.new,
        "changed": p.changed,
        "fields": p.fields,
        "moreFields": p.more_fields,
        "restartsTasks": p.restarts_tasks,
        "instances": {"start": p.start, "stop": p.stop, "replace": p.replace, "keep": p.keep,
                      "unplaced": p.unplaced},
        "waiting": p.waiting,
        "complete": p.complete,
        "deployment": None,
        "warnings": new.warnings,
    }
    if dep is not None:
        shown = deployment_json(dep)
        body["deployment"] = {
            "steps": shown["steps"], "totalSteps": shown["totalSteps"],
            "rounds": [{"start": r.start, "stop": r.stop} for r in p.rounds],
        }
    return body
