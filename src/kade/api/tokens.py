"""`/v1/tokens`: make, list and revoke API tokens (admin only, by kade.auth.policy)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from kade.admission.nodes import NodeRequestError, check_node_name
from kade.auth import TokenRecord, create_token
from kade.auth.policy import Role
from kade.auth.tokens import TOKENS, token_key
from kade.model import decode_all
from kade.store.base import Store

MAX_TOKENS = 1000

_APP_GLOB = r"^/[a-z0-9*?.\-/]{0,254}$"
_KV_PREFIX = r"^[^\x00-\x1f]{0,255}$"


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    apps: list[str] | None = Field(default=None, max_length=50)
    kv: list[str] | None = Field(default=None, max_length=50)
    node: str | None = None  # node tokens: bound to this node (`kade agent --node`)
    description: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f]*$")
    expires_in_seconds: float | None = Field(default=None, gt=0, le=10 * 365 * 86400,
                                             alias="expiresInSeconds")


def _check_scope(body: NewToken) -> list[str]:
    problems = []
    for i, glob in enumerate(body.apps or []):
        if not re.match(_APP_GLOB, glob):
            problems.append(f"apps.{i}: {glob!r} must be an app id or glob such as /shop/*")
    for i, prefix in enumerate(body.kv or []):
        if not re.match(_KV_PREFIX, prefix):
            problems.append(f"kv.{i}: must be a key prefix of at most 255 printable characters")
    if body.node is not None:
        if body.role != "node":
            problems.append(f"node: a {body.role} token is not bound to a node: node applies "
                            "to node tokens")
        try:
            check_node_name(body.node, "node")
        except NodeRequestError as e:
            problems += e.problems
    if body.role not in ("deploy",) and (body.apps is not None or body.kv is not None):
        problems.append(f"role: a {body.role} token has no scope: apps and kv apply to deploy "
                        "tokens")
    return problems


def tokens_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/tokens")
    async def list_tokens() -> dict[str, Any]:
        entries, _ = await store.range(TOKENS)
        records = decode_all(entries, TokenRecord)[0]
        return {"tokens": [r.public() for r in sorted(records, key=lambda r: r.created_at)]}

    @r.post("/v1/tokens", status_code=201)
    async def make_token(body: NewToken) -> JSONResponse:
        problems = _check_scope(body)
        if problems:
            raise HTTPException(400, "; ".join(problems))
        entries, _ = await store.range(TOKENS)
        if len(entries) >= MAX_TOKENS:
            raise HTTPException(507, f"there are {len(entries)} tokens already (the limit): "
                                     "revoke some first")
        now = clock()
        expires = now + body.expires_in_seconds if body.expires_in_seconds else None
        text, record = await create_token(store, role=body.role, apps=body.apps, kv=body.kv,
                                          description=body.description, now=now,
                                          expires_at=expires, node=body.node)
        return JSONResponse({"token": text, **record.public()}, status_code=201)

    @r.delete("/v1/tokens/{token_id}")
    async def revoke(token_id: str) -> dict[str, Any]:
        if not token_id.isalnum() or len(token_id) > 32:
            raise HTTPException(400, "token id: letters and digits only")
        if await store.get(token_key(token_id)) is None:
            raise HTTPException(404, f"token {token_id} does not exist")
        await store.delete(token_key(token_id))
        return {"revoked": token_id}

    return r
