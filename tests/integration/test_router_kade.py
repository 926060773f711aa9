"""A router with an HTTPS entrypoint following a real `kade up`: certificates written to KV
reach it through the control plane, and a renewed one replaces the old while it runs."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Kade
from tests.integration.test_router_support import RouterProcess, free_port, wait_until
from tests.unit.test_router_tls import self_signed

pytestmark = [pytest.mark.timeout(180), pytest.mark.docker]


async def peer_names(port: int, server_name: str, trust: str) -> list[str]:
    """The DNS names of the certificate served for `server_name`, verified against `trust`."""
    ctx = ssl.create_default_context(cadata=trust)
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                              server_hostname=server_name)
    try:
        peer: dict[str, Any] = writer.get_extra_info("peercert")
        return [v for k, v in peer.get("subjectAltName", ()) if k == "DNS"]
    finally:
        writer.close()


async def test_certificates_in_kv_reach_the_router(kade: Kade, tmp_path: Path) -> None:
    first_cert, first_key = self_signed("secure.localhost")
    kade.client.request("PUT", "/v1/kv/kade/tls/secure/key", content=first_key)
    kade.client.request("PUT", "/v1/kv/kade/tls/secure/cert", content=first_cert)
    https_port = free_port()
    router = RouterProcess(tmp_path / "router", f"http://{kade.addr}", "--https-addr",
                           f"127.0.0.1:{https_port}", "--token-file",
                           str(kade.data_dir / "router" / "token"), name="tls-router")
    try:
        await router.start()

        async def served(trust: str) -> list[str] | None:
            try:
                return await peer_names(https_port, "secure.localhost", trust)
            except (ssl.SSLError, OSError):
                return None

        assert await wait_until(lambda: served(first_cert), 30, "the certificate from KV") \
            == ["secure.localhost"]
        # renewed: the router's blocking query ends on the change, the new one is served
        second_cert, second_key = self_signed("secure.localhost", "www.secure.localhost")
        kade.client.request("PUT", "/v1/kv/kade/tls/secure/key", content=second_key)
        kade.client.request("PUT", "/v1/kv/kade/tls/secure/cert", content=second_cert)
        assert await wait_until(lambda: served(second_cert), 30, "the renewed certificate") \
            == ["secure.localhost", "www.secure.localhost"]
        assert await router.stop() == 0
        logs = router.logs()
        assert "PRIVATE KEY" not in logs and "Traceback" not in logs, logs
        assert "PRIVATE KEY" not in kade.logs()
    finally:
        await router.stop()
