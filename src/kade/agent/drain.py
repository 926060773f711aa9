"""Draining a task before it is stopped: no router may still send it a request.

A task being stopped has already left the catalog, so routers get a table without it; each
acknowledges the table it applied, and again once its in-flight requests to the task have
finished (the API turns these into `routers/<name>` facts). The agent learns all of this from
the store, never from the router itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from kade import model
from kade.store.base import Store

log = logging.getLogger("kade.agent")

DRAIN_TIMEOUT = 30.0  # longest wait for routers to stop sending a task requests
ROUTER_STALE = 150.0  # a router silent this long is gone (live ones report every minute)


async def wait_drained(store: Store, task_id: str, clock: Callable[[], float],
                       timeout: float = DRAIN_TIMEOUT) -> None:
    """Return once no live router lists `task_id`, or after `timeout`."""
    deadline = clock() + timeout
    while True:
        entries, revision = await store.range(model.ROUTERS)
        now = clock()
        waiting_for = []
        for entry in entries:
            try:
                router = json.loads(entry.value)
                fresh = now - float(router.get("seen_at", 0)) < ROUTER_STALE
                listed = task_id in router.get("tasks", ())
            except (ValueError, TypeError, AttributeError):
                continue  # cannot be read (`GET /v1/quarantine` shows it): no router to wait for
            if fresh and listed:
                waiting_for.append(str(router.get("name", entry.key)))
        if not waiting_for:
            return
        if now >= deadline:
            log.warning("task %s: routers %s did not drain it in %.0fs; stopping anyway",
                        task_id, ", ".join(waiting_for), timeout)
            return
        await store.wait(model.ROUTERS, revision, deadline - now)
