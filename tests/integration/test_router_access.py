"""Who may talk to whom: the router's token for the control plane, and its admin endpoint
kept on loopback unless asked otherwise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.test_router_support import ControlPlane, RouterProcess, wait_until

pytestmark = pytest.mark.timeout(120)

TOKEN = "kade-router-0123456789abcdef"


async def exits_with(router: RouterProcess) -> tuple[int, str]:
    router._spawn()
    assert router.proc is not None
    code = await asyncio.to_thread(router.proc.wait, 20)
    router.proc = None
    return code, router.logs()


async def test_the_router_sends_its_token_on_every_call(tmp_path: Path) -> None:
    token_file = tmp_path / "router.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    cp = await ControlPlane().start()
    router = RouterProcess(tmp_path / "state", cp.url, "--token-file", str(token_file))
    try:
        await router.start()
        revision = cp.set_table([], {})
        await wait_until(lambda: cp.acked(revision), 20, "an ack")
        assert len(cp.authorization) >= 2  # a table fetch and an ack at least
        assert set(cp.authorization) == {f"Bearer {TOKEN}"}
        assert await router.stop() == 0
        assert TOKEN not in router.logs()
    finally:
        await router.stop()
        await cp.stop()


async def test_without_a_token_no_authorization_is_sent(tmp_path: Path) -> None:
    cp = await ControlPlane().start()
    router = RouterProcess(tmp_path / "state", cp.url)
    try:
        await router.start()
        revision = cp.set_table([], {})
        await wait_until(lambda: cp.acked(revision), 20, "an ack")
        assert set(cp.authorization) == {None}
    finally:
        await router.stop()
        await cp.stop()


async def test_a_token_file_others_may_read_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "router.token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    code, logs = await exits_with(RouterProcess(tmp_path / "state", "http://127.0.0.1:9",
                                                "--token-file", str(token_file)))
    assert code == 2
    assert f"--token-file {token_file}: mode 0644 lets others read it" in logs
    assert TOKEN not in logs


async def test_a_public_admin_address_needs_admin_public(tmp_path: Path) -> None:
    router = RouterProcess(tmp_path / "state", "http://127.0.0.1:9")
    router.extra = ["--admin-addr", f"0.0.0.0:{router.admin_port}"]  # the last one wins
    code, logs = await exits_with(router)
    assert code == 2
    assert f"--admin-addr 0.0.0.0:{router.admin_port}: not a loopback address" in logs
    assert "--admin-public" in logs
    router = RouterProcess(tmp_path / "state2", "http://127.0.0.1:9", "--admin-public")
    router.extra = ["--admin-addr", f"0.0.0.0:{router.admin_port}", "--admin-public"]
    try:
        await router.start()  # answers /ping on 127.0.0.1 through the wildcard address
    finally:
        assert await router.stop() == 0

