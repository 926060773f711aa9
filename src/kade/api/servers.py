"""`/v1/servers`: the servers of a cluster and which one leads.

Every `kade server` stands in the election for the leader's loops (`kade.store.election`,
name `leader`) while it runs, so the candidates are exactly the live servers; the first one
leads. `kade up` has no election: it is the only server and leads itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kade.store.base import Store
from kade.store.election import Election

ELECTION = "leader"


def candidate_value(name: str, url: str) -> bytes:
    return f"{name} {url}".encode()


def _server(value: bytes, leader: bool) -> dict[str, Any]:
    name, _, url = value.decode(errors="replace").partition(" ")
    return {"name": name, "url": url, "leader": leader}


async def servers(store: Store) -> list[dict[str, Any]]:
    """The servers standing, the leader first; empty without an election (kade up)."""
    election = Election(store, ELECTION)
    entries, _ = await store.range(election.prefix)
    entries.sort(key=lambda e: e.create_revision)
    return [_server(e.value, i == 0) for i, e in enumerate(entries)]


def servers_router(store: Store) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/servers")
    async def list_servers(request: Request) -> dict[str, Any]:
        found = await servers(store)
        if not found:  # a single kade up
            here = f"{request.url.scheme}://{request.headers.get('host', '')}"
            found = [{"name": "", "url": here, "leader": True}]
        return {"leader": found[0], "servers": found}

    return r
