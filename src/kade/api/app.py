"""The HTTP API: one FastAPI app composed of each component's routes.

Errors are always JSON `{"message": ...}` with a 4xx status that says what was wrong; a
rejected request changes nothing (validation happens before any write).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

import kade
from kade.admission import ContainerPolicy
from kade.admission.located import Located, unlocated
from kade.api.apps import apps_router
from kade.api.deployments import deployments_router
from kade.api.events import events_router
from kade.api.marathon import marathon_router
from kade.api.marathon_events import marathon_events_router
from kade.api.marathon_groups import groups_router
from kade.api.nodes import nodes_router
from kade.api.quarantine import quarantine_router
from kade.api.security import SecurityConfig, SecurityMiddleware
from kade.api.servers import servers_router
from kade.api.store_api import store_router
from kade.api.tokens import tokens_router
from kade.deployments import intent
from kade.spec import SpecError
from kade.store.base import CasFailed, NoQuorum, Store, Unavailable

log = logging.getLogger("kade.api")


def create_app(
    store: Store,
    *,
    extra: list[APIRouter] | None = None,
    clock: Callable[[], float] = time.time,
    security: SecurityConfig | None = None,
    policy: ContainerPolicy | None = None,
) -> FastAPI:
    """The API with its front door (kade.api.security): no request reaches a handler without
    a valid token whose role allows it."""
    app = FastAPI(title="kade", version=kade.__version__,
                  description="Deploy, scale, configure, discover, route to and update containers")
    app.include_router(apps_router(store, clock=clock, policy=policy))
    app.include_router(events_router(store))
    app.include_router(deployments_router(store, clock))
    app.include_router(marathon_router(store, clock=clock, policy=policy))
    app.include_router(marathon_events_router(store, clock))
    app.include_router(groups_router(store, clock=clock, policy=policy))
    app.include_router(quarantine_router(store))
    app.include_router(_info_router(store))
    app.include_router(tokens_router(store, clock))
    app.include_router(store_router(store))
    app.include_router(nodes_router(store, clock))
    app.include_router(servers_router(store))
    for router in extra or []:
        app.include_router(router)
    _errors(app)
    app.add_middleware(SecurityMiddleware, store=store, config=security or SecurityConfig(),
                       clock=clock)
    return app


def _info_router(store: Store) -> APIRouter:
    r = APIRouter()

    @r.get("/ping")
    async def ping() -> str:
        return "pong"

    @r.get("/v1/info")
    async def info() -> dict[str, Any]:
        return {"name": "kade", "version": kade.__version__,
                "revision": await store.revision()}

    return r


def _message(status: int, message: str, headers: Mapping[str, str] | None = None,
             **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status, headers=headers)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(SpecError)
    async def spec_error(_: Request, e: SpecError) -> JSONResponse:
        if isinstance(e, Located):
            return _message(400 if e.refused else 422, f"invalid app definition: {e}",
                            details=e.problems, problems=e.located)
        return _message(422, f"invalid app definition: {e}", details=e.problems,
                        problems=unlocated(e.problems))

    @app.exception_handler(intent.NotFound)
    async def not_found(_: Request, e: intent.NotFound) -> JSONResponse:
        return _message(404, str(e))

    @app.exception_handler(intent.Conflict)
    async def conflict(_: Request, e: intent.Conflict) -> JSONResponse:
        return _message(409, str(e))

    @app.exception_handler(CasFailed)
    async def cas(_: Request, e: CasFailed) -> JSONResponse:
        return _message(409, f"changed concurrently, try again: {e}")

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, e: Unavailable) -> JSONResponse:
        # The log has the endpoints and what each said; the answer only what a client needs.
        log.warning("%s %s: %s", request.method, request.url.path, e)
        message = ("the store (etcd) has no quorum: writes are refused until it returns"
                   if isinstance(e, NoQuorum) else "the store (etcd) is unavailable: try again")
        return _message(503, message, headers={"Retry-After": "1"})

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        return _message(e.status_code, str(e.detail), headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in err['loc'][1:]) or err['loc'][0]}: {err['msg']}"
            for err in e.errors()
        ]
        return _message(400, "; ".join(problems), details=problems)

    @app.exception_handler(RecursionError)
    async def too_deep(_: Request, e: RecursionError) -> JSONResponse:
        return _message(400, "the request is nested too deeply")

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception) -> JSONResponse:
        # The answer names an id, never the exception: its text may show internals.
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", error_id, request.method, request.url.path,
                  exc_info=e)
        return _message(500, f"internal error {error_id}: the details are in kade's log",
                        errorId=error_id)
