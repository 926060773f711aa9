"""The deploy / edit page: an app definition in a text editor, its plan before it is submitted.

`/ui/deploy` starts from an example; `/ui/deploy/<id>` from the app's definition as a
person would write it (kade.ui.definition), in YAML or JSON as the user picks; the version
shown is live, so a change made elsewhere while editing is said at once. Everything
else happens in the browser against the JSON API (`static/editor.js`): "Plan" posts the text
to `/v1/apps/<id>/plan` and shows the fields, instances and steps, or the admission's problems
at their lines; "Deploy" PUTs it and goes to the app's page. The text is sent as written
(`application/yaml` or `application/json`), so the lines the API names are the editor's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from kade.api.security import principal_of
from kade.auth import redact_env
from kade.deployments import intent
from kade.spec import normalize_id
from kade.store.base import Store
from kade.ui.definition import FORMATS, NEW_APP, Format, as_text, written
from kade.ui.render import page


def _format(asked: str | None) -> Format:
    for fmt in FORMATS:
        if asked == fmt:
            return fmt
    return "yaml"


def editor_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/ui/deploy")
    async def deploy(request: Request, format: str | None = None) -> Response:
        fmt = _format(format)
        return page(request, "editor.html", {
            "app_id": "", "text": as_text(NEW_APP, fmt), "fmt": fmt, "hidden_env": False,
            "version": "",
        }, title="Deploy an app", nav="deploy")

    @r.get("/ui/deploy/{path:path}")
    async def edit(path: str, request: Request, format: str | None = None) -> Response:
        app_id = normalize_id(path)
        try:
            app = await intent.get_app(store, app_id)
        except intent.Quarantined as e:
            raise HTTPException(409, f"{e}: deploy a new definition from /ui/deploy") from None
        version = app.version if app is not None else ""  # "": destroyed meanwhile
        if request.query_params.get("fragment") == "live_version":
            # every open editor asks on every change of an app: the version is all it shows
            return page(request, "editor.html", {"app_id": app_id, "version": version},
                        title=f"Edit {app_id}", nav="apps")
        if app is None:
            raise HTTPException(404, f"app {app_id} does not exist")
        fmt = _format(format)
        definition = await asyncio.to_thread(written, app)
        shown = redact_env(definition, principal_of(request))
        return page(request, "editor.html", {
            "app_id": app_id, "text": as_text(shown, fmt), "fmt": fmt,
            "hidden_env": shown is not definition,
            "version": version,
        }, title=f"Edit {app_id}", nav="apps")

    return r
