"""Store events become Marathon's events: changes are reported once, env values hidden."""

from __future__ import annotations

import json

from marathon.models.events import EventFactory

from kade import model
from kade.api.marathon_events import Translator, frame
from kade.auth import Principal
from kade.auth.policy import REDACTED
from kade.model import Deployment, Task, TaskStatus
from kade.scheduler.sim import app_spec
from kade.store.base import Entry, Event

T0 = 1_700_000_000.0
READER = Principal("r1", "read")


def _put(key: str, value: bytes, revision: int = 1) -> Event:
    return Event(revision, "put", key, Entry(key, value, revision, revision, 1))


def _status(state: str, health: str = "unknown") -> Event:
    status = TaskStatus(task_id="web.1", app_id="/web", node="n1", state=state,  # type: ignore[arg-type]
                        health=health, updated_at=T0)  # type: ignore[arg-type]
    return _put(model.status_key("web.1"), status.dump())


TASK = Task(id="web.1", app_id="/web", version="2023-11-14T22:13:20.000Z", spec_hash="h",
            node="n1", host="10.0.0.5", host_ports=[31001], created_at=T0)


def test_task_states_and_health_changes_are_reported_once() -> None:
    t = Translator(None, lambda: T0)
    out = t.translate(_status("starting"), TASK)
    assert [kind for kind, _ in out] == ["status_update_event"]
    body = out[0][1]
    assert (body["taskStatus"], body["host"], body["ports"]) == ("TASK_STARTING", "10.0.0.5",
                                                                  [31001])
    assert t.translate(_status("starting"), TASK) == []  # a rewrite is no change
    out = t.translate(_status("running", "healthy"), TASK)
    assert [kind for kind, _ in out] == ["status_update_event", "health_status_changed_event"]
    assert out[1][1]["alive"] is True
    assert t.translate(_status("running", "healthy"), TASK) == []
    out = t.translate(_status("running", "unhealthy"), TASK)
    assert [(k, b["alive"]) for k, b in out] == [("health_status_changed_event", False)]
    for kind, body in out:  # the marathon client reads every event kade sends
        assert EventFactory().process(body).event_type == kind
    assert t.translate(Event(9, "delete", model.status_key("web.1"), None)) == []
    assert t.states == {} and t.health == {}  # a long stream keeps nothing of gone tasks


def test_app_writes_are_api_post_events_with_env_hidden_from_readers() -> None:
    app = app_spec("/web", "2023-11-14T22:13:20.000Z", env={"PASSWORD": "s3cret"})
    raw = app.model_dump_json(by_alias=True).encode()
    [(kind, body)] = Translator(READER, lambda: T0).translate(_put(model.app_key("/web"), raw))
    assert kind == "api_post_event" and body["uri"] == "/v2/apps/web"
    assert body["appDefinition"]["env"] == {"PASSWORD": REDACTED}
    assert "s3cret" not in json.dumps(body)
    gone = Event(2, "delete", model.app_key("/web"), None)
    assert Translator(None, lambda: T0).translate(gone)[0][1]["appId"] == "/web"


def test_deployments_are_announced_then_succeed_or_fail() -> None:
    t = Translator(None, lambda: T0)
    dep = Deployment(id="d1", app_id="/web", kind="deploy", version="v2", from_version="v1",
                     started_at=T0, deadline=T0 + 60, instances=1)
    key = model.deployment_key("d1")
    [(kind, body)] = t.translate(_put(key, dep.dump()))
    assert kind == "deployment_info" and body["plan"]["id"] == "d1"
    assert EventFactory().process(body).plan.steps
    assert t.translate(_put(key, dep.model_copy(update={"updated": 1}).dump())) == []
    done = dep.model_copy(update={"status": "succeeded"})
    assert [k for k, _ in t.translate(_put(key, done.dump()))] == ["deployment_success"]
    failed = dep.model_copy(update={"id": "d2", "status": "failed", "message": "deadline"})
    [(kind, body)] = t.translate(_put(model.deployment_key("d2"), failed.dump()))
    assert (kind, body["reason"]) == ("deployment_failed", "deadline")


def test_frames_are_server_sent_events() -> None:
    assert frame(7, ("x_event", {"eventType": "x_event"})) == (
        b'id: 7\nevent: x_event\ndata: {"eventType":"x_event"}\n\n')
