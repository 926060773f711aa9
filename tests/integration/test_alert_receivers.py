"""kade's notifications reach real receivers: a webhook gets Alertmanager's webhook body,
and a real Alertmanager takes kade's alerts, routes them to its own webhook, and is told
when they resolve."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from kade.alerts.notify import Dispatcher, Timing, send
from kade.alerts.state import Alert
from kade.testing.alertmanager import AlertmanagerServer
from tests.integration.webhooks import Hook

T = Timing(group_wait=0, group_interval=0, repeat_interval=3600, resend_delay=1)


def _alert(state: str, now: float) -> Alert:
    return Alert(rule="/shop/web/HighErrorRate", fingerprint="0123456789abcdef",
                 labels={"alertname": "HighErrorRate", "app": "/shop/web",
                         "severity": "critical"},
                 annotations={"summary": "5% of /shop/web's requests fail"},
                 state=state, value=0.05, active_at=now - 120,  # type: ignore[arg-type]
                 fired_at=now - 60, resolved_at=now if state == "resolved" else None,
                 last_seen=now)


async def _wait(condition: Any, what: str) -> None:
    for _ in range(300):
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(what)


async def test_a_webhook_gets_alertmanager_s_body(hook: Hook) -> None:

    now = time.time()
    d = Dispatcher(webhooks=[hook.url], timing=T, external_url="http://127.0.0.1:7400")
    async with httpx.AsyncClient() as client:
        for n in d.due([_alert("firing", now)], {}, now):
            assert await send(client, n) is None
        for n in d.due([_alert("resolved", now + 5)], {}, now + 5):
            assert await send(client, n) is None
    await _wait(lambda: len(hook.bodies) == 2, "two notifications")
    first, second = hook.bodies
    assert first["status"] == "firing" and first["alerts"][0]["labels"]["app"] == "/shop/web"
    assert second["status"] == "resolved" and second["alerts"][0]["status"] == "resolved"


async def test_a_real_alertmanager_routes_kade_s_alerts(hook: Hook, tmp_path: Path) -> None:

    am = AlertmanagerServer(tmp_path / "am", hook.url)
    await asyncio.to_thread(am.start)
    try:
        now = time.time()
        d = Dispatcher(alertmanagers=[am.url], timing=T)
        async with httpx.AsyncClient() as client:
            for n in d.due([_alert("firing", now)], {}, now):
                assert await send(client, n) is None
            await _wait(lambda: [a["labels"]["app"] for a in am.alerts()] == ["/shop/web"],
                        "the alert in Alertmanager")
            # Alertmanager's own webhook carries what kade sent
            await _wait(lambda: any(b["status"] == "firing" for b in hook.bodies),
                        "Alertmanager's notification")
            got = next(b for b in hook.bodies if b["status"] == "firing")
            assert got["alerts"][0]["annotations"]["summary"] == "5% of /shop/web's requests fail"
            later = time.time()
            for n in d.due([_alert("resolved", later)], {}, later):
                assert await send(client, n) is None
            await _wait(lambda: any(b["status"] == "resolved" for b in hook.bodies),
                        "the resolution through Alertmanager")
    finally:
        await asyncio.to_thread(am.stop)


async def test_a_receiver_that_fails_is_reported() -> None:
    d = Dispatcher(webhooks=["http://127.0.0.1:9/hook"], timing=T)
    async with httpx.AsyncClient() as client:
        [n] = d.due([_alert("firing", 0)], {}, 0)
        error = await send(client, n)
    assert error is not None and error.startswith("http://127.0.0.1:9/hook:")
