"""/v2 answers carry Marathon's keys only (its Python client refuses any other), without
nulls (marathon-lb reads `app.get("container", {}).get("docker", {})`)."""

from __future__ import annotations

import inspect

from marathon.models import MarathonApp, MarathonDeployment, MarathonTask

from kade.api.marathon_views import (
    app_labels_match,
    embeds,
    service_ports,
    v2_app,
    v2_definition,
    v2_deployment,
    v2_queue_item,
    v2_task,
)
from kade.api.views import AppTasks
from kade.model import Deployment, HealthResult, QueueEntry, Task, TaskStatus
from kade.scheduler.sim import app_spec

T0 = 1_700_000_000.0
V1 = "2023-11-14T22:13:20.000Z"


def _keys(cls: type) -> set[str]:
    """The camelCase keys the marathon client's model accepts."""
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    return {"".join([p.split("_")[0], *(w.title() for w in p.split("_")[1:])])
            for p in params if p != "self"}


def _web() -> object:
    return app_spec("/shop/web", V1, instances=2, container={"docker": {"image": "nginx"}},
                    env={"SECRET": "x"}, labels={"HAPROXY_GROUP": "external"},
                    routes=[{"rule": "Host(`shop`)"}],
                    upgradeStrategy={"minimumHealthCapacity": 0.5,
                                     "progressDeadlineSeconds": 60},
                    healthChecks=[{"protocol": "HTTP", "path": "/health"}])


def _task(tid: str = "shop_web.1") -> Task:
    return Task(id=tid, app_id="/shop/web", version=V1, spec_hash="h", node="n1",
                host="10.0.0.5", host_ports=[31001], created_at=T0)


def _status(tid: str = "shop_web.1") -> TaskStatus:
    return TaskStatus(task_id=tid, app_id="/shop/web", node="n1", state="running",
                      health="healthy", started_at=T0 + 1, updated_at=T0 + 2,
                      health_results=[HealthResult(index=0, alive=True, last_success=T0 + 2)])


def test_an_app_has_only_marathon_s_keys_and_no_nulls() -> None:
    app = _web()
    dep = Deployment(id="d1", app_id="/shop/web", kind="deploy", version="v1",
                     from_version=None, started_at=T0, deadline=T0 + 60, instances=2)
    group = AppTasks(tasks=[(_task(), _status())])
    body = v2_app(app, group, None, T0 + 3, deployments=[dep], tasks=True)  # type: ignore[arg-type]
    assert set(body) <= _keys(MarathonApp)
    assert "routes" not in body and "status" not in body
    assert body["deployments"] == [{"id": "d1"}]
    assert body["upgradeStrategy"] == {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 1.0}
    assert set(body["container"]) <= {"type", "docker", "portMappings", "volumes"}
    assert (body["tasksRunning"], body["tasksHealthy"]) == (1, 1)
    assert "null" not in str(body) and None not in body.values()
    parsed = MarathonApp.from_json(body)
    assert parsed.tasks[0].host == "10.0.0.5" and parsed.tasks[0].ports == [31001]
    assert parsed.tasks[0].health_check_results[0].alive is True


def test_a_command_app_has_no_container_key() -> None:
    body = v2_definition(app_spec("/job", cmd="sleep 1"))
    assert "container" not in body and body["ports"] == [0]


def test_a_task_in_marathon_s_shape() -> None:
    body = v2_task(_task(), _status(), _web())  # type: ignore[arg-type]
    assert set(body) <= _keys(MarathonTask)
    assert body["state"] == "TASK_RUNNING" and body["slaveId"] == "n1"
    assert body["ipAddresses"] == [{"ipAddress": "10.0.0.5", "protocol": "IPv4"}]
    assert body["startedAt"].endswith("Z") and MarathonTask.from_json(body).started_at
    staged = v2_task(_task(), None)
    assert staged["state"] == "TASK_STAGING" and "startedAt" not in staged


def test_a_deployment_in_marathon_s_shape() -> None:
    dep = Deployment(id="d1", app_id="/shop/web", kind="scale", version="v2",
                     from_version="v1", started_at=T0, deadline=T0 + 60, instances=3,
                     updated=3, healthy=1)
    body = v2_deployment(dep)
    assert set(body) <= _keys(MarathonDeployment)
    assert body["affectedApps"] == ["/shop/web"] and body["currentStep"] == 2
    assert body["currentActions"] == [{"action": "ScaleApplication", "app": "/shop/web",
                                       "readinessCheckResults": []}]
    assert MarathonDeployment.from_json(body).steps[0].actions[0].app == "/shop/web"


def test_queue_item_counts_what_is_missing_and_the_delay() -> None:
    entry = QueueEntry(app_id="/shop/web", failures=2, delay_until=T0 + 30,
                       last_failure_at=T0)
    item = v2_queue_item(_web(), entry, 1, T0 + 10)  # type: ignore[arg-type]
    assert item["count"] == 1
    assert item["delay"] == {"timeLeftSeconds": 20, "overdue": False}


def test_service_ports_follow_the_network_mode() -> None:
    bridge = app_spec("/b", container={"docker": {"image": "x", "network": "BRIDGE",
                                                  "portMappings": [{"containerPort": 80,
                                                                    "servicePort": 10080}]}})
    assert service_ports(bridge) == [10080]
    assert service_ports(app_spec("/h", portDefinitions=[{"port": 10001}, {"port": 0}])) == [
        10001, 0]


def test_label_filter_and_embeds_as_marathon_reads_them() -> None:
    labels = {"HAPROXY_GROUP": "external", "tier": "web"}
    assert app_labels_match(labels, "HAPROXY_GROUP==external")
    assert app_labels_match(labels, "tier, HAPROXY_GROUP!=internal")
    assert not app_labels_match(labels, "HAPROXY_GROUP==internal")
    assert not app_labels_match(labels, "missing")
    assert embeds(["apps.tasks", "app.deployments,apps.lastTaskFailure"]) == {
        "tasks", "deployments", "lastTaskFailure"}
