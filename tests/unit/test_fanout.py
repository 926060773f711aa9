"""A server's fan-out to the nodes (kade.fanout) against real listeners on loopback: what a
node answers is read up to a bound, and a node answering more is named, not held in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from kade import model
from kade.auth.assertions import ServerKey
from kade.fanout import NodeFanOut
from kade.store import SqliteStore
from tests.unit.test_logs_api import serve

CHUNK = b"x" * (64 << 10)


def listener() -> FastAPI:
    """A node's listener that answers `/small` with 3 bytes, `/endless` with a body that
    never ends, and `/refused` with an error."""
    app = FastAPI()

    @app.get("/small")
    async def small() -> StreamingResponse:
        return StreamingResponse(iter([b"abc"]))

    @app.get("/endless")
    async def endless() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield CHUNK
                await asyncio.sleep(0.01)

        return StreamingResponse(chunks())

    @app.get("/refused")
    async def refused() -> JSONResponse:
        return JSONResponse({"message": "no"}, status_code=403)

    return app


@pytest.fixture
async def fanout(tmp_path: Path) -> AsyncIterator[NodeFanOut]:
    store = SqliteStore(tmp_path / "store")
    f = NodeFanOut(store, ServerKey("s1"), timeout=10)
    yield f
    await f.close()
    await store.close()


async def test_a_node_answering_more_than_the_bound_is_cut_off_and_named(
        fanout: NodeFanOut, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kade.fanout.MAX_ANSWER", 1 << 20)
    served = await serve(listener())
    try:
        node = model.Node(name="n1", address="127.0.0.1", cpus=1, mem=1, api_url=served.url)
        loaded: list[int] = []

        def load(data: bytes) -> int:
            loaded.append(len(data))
            return len(data)

        answers, missing = await fanout.ask([node], "/small", [], load)
        assert (answers, missing) == ([("n1", 3)], [])
        answers, missing = await fanout.ask([node], "/endless", [], load)
        assert answers == [] and [(m.node, m.reason) for m in missing] == [
            ("n1", "its answer is larger than 1 MiB")]
        assert loaded == [3]  # what was read of it never reached the loader
        _, [refused] = await fanout.ask([node], "/refused", [], load)
        assert (refused.reason, refused.status) == ("403 no", 403)
    finally:
        await served.stop()
