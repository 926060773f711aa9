"""The pages of the web interface that show what happened: an app's or a task's log lines
(`/ui/logs`), the domain events apps published (`/ui/domain-events`), and the state-change
stream (`/ui/events`).

The server renders each page with its form and what it can judge alone (the log query is
admitted here by `kade.admission.logs`, so a wrong filter is named before anything is read);
the lines and events themselves come to the browser from the JSON API (`/v1/logs`,
`/v1/domain-events`, `/v1/events`) through `static/logs.js`: they are streams, the API
already bounds and authorizes them, and on a `kade server` the lines are fetched from every
node by the API's fan-out, which only the API has.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kade import model
from kade.admission.logs import LogQueryError, admit_log_query
from kade.api.events import EVENT_TYPES
from kade.store.base import Store
from kade.ui.render import page

# What the logs page passes on to /v1/logs (its form's fields); `tail` is the history a
# live tail starts with.
LOG_FILTERS = ("app", "task", "stream", "q", "grep", "since", "until", "previous", "tail")
MAX_WHERE_FIELDS = 8  # `where` inputs the form shows (the API admits up to 16)
SHOWN_LINES = 2000  # lines kept on screen; older ones leave it (the download has them)
SHOWN_EVENTS = 500  # rows kept on the domain events and events pages
DEFAULT_TAIL = "200"


def log_params(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The page's query parameters that select log lines, empty ones left out, in the
    order of the form: what /v1/logs is asked with."""
    out = [(name, value.strip()) for name in LOG_FILTERS for key, value in pairs
           if key == name and value.strip()]
    out += [("where", value.strip()) for key, value in pairs
            if key == "where" and value.strip()]
    return out


def admitted(params: list[tuple[str, str]], now: float) -> str:
    """'' when /v1/logs admits these parameters, else its message naming the parameter.
    Nothing selected (neither app nor task) is no error: the page asks for one."""
    if not any(name in ("app", "task") for name, _ in params):
        return ""
    try:
        admit_log_query(params, now)
    except LogQueryError as e:
        return str(e)
    return ""


def api_url(path: str, params: Sequence[tuple[str, str]], **extra: str) -> str:
    return f"{path}?{urlencode([*params, *extra.items()])}"


async def app_ids(store: Store) -> list[str]:
    entries, _ = await store.range(model.APPS)
    return sorted("/" + e.key[len(model.APPS):] for e in entries)


def logs_pages_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/ui/logs")
    async def logs(request: Request) -> Response:
        pairs = request.query_params.multi_items()
        params = log_params(pairs)
        given = {name: "" for name in LOG_FILTERS} | dict(params)
        error = admitted(params, clock())
        selected = bool(given["app"] or given["task"]) and not error
        if selected and not given["tail"] and not given["since"]:
            params.append(("tail", DEFAULT_TAIL))
        where = [v for k, v in params if k == "where"][:MAX_WHERE_FIELDS]
        if len(where) < MAX_WHERE_FIELDS:
            where.append("")  # one more to fill in
        shown = [p for p in params if p[0] != "tail"]
        return page(request, "logs.html", {
            "given": given, "filtered": bool(params), "where": where,
            "error": error, "selected": selected, "apps": await app_ids(store),
            "stream_url": api_url("/v1/logs", params, format="json") if selected else "",
            "tasks_url": api_url("/v1/logs/tasks", [
                p for p in params if p[0] in ("app", "task")]) if selected else "",
            "download_text": api_url("/v1/logs", shown, download="1") if selected else "",
            "download_json": api_url("/v1/logs", shown, format="json", download="1")
            if selected else "",
            "shown_lines": SHOWN_LINES, "default_tail": DEFAULT_TAIL,
        }, title=f"Logs {given['app'] or given['task']}".strip(), nav="logs")

    @r.get("/ui/domain-events")
    async def domain_events(request: Request) -> Response:
        params = request.query_params
        return page(request, "domain_events.html", {
            "q": params.get("q", ""), "since": params.get("since", "") or "1d",
            "until": params.get("until", ""), "event": params.get("event", ""),
            "shown": SHOWN_EVENTS,
        }, title="Domain events", nav="domain-events")

    @r.get("/ui/events")
    async def events(request: Request) -> Response:
        return page(request, "events.html", {
            "types": EVENT_TYPES, "shown": SHOWN_EVENTS,
            "key": request.query_params.get("key", ""),
        }, title="Events", nav="events")

    return r
