"""Marathon's REST API v2 against a real `kade up`: driven by the `marathon` client from PyPI,
and with the exact requests marathon-lb makes."""

from __future__ import annotations

import collections
import collections.abc
import json
import queue
import threading
from typing import Any

import httpx
import pytest
from marathon import MarathonClient
from marathon.models import MarathonApp, MarathonHealthCheck
from marathon.models.container import MarathonContainer
from marathon.models.group import MarathonGroup

from tests.integration.harness import Kade, wait_for


@pytest.fixture(autouse=True)
def _python_311_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    """marathon 0.13.0 encodes nested objects with `collections.Iterable`, which Python 3.10
    moved to `collections.abc`; without it the client cannot send an app with a container."""
    monkeypatch.setattr(collections, "Iterable", collections.abc.Iterable, raising=False)


def _client(kade: Kade) -> MarathonClient:
    # HTTP Basic with the token as password: what marathon clients send to a secured Marathon
    return MarathonClient(f"http://{kade.addr}", username="kade", password=kade.token)


def _web(instances: int = 1) -> MarathonApp:
    return MarathonApp(
        instances=instances, cpus=0.01, mem=16, labels={"HAPROXY_GROUP": "external"},
        container=MarathonContainer(docker={"image": "kade/site:1"}),
        health_checks=[MarathonHealthCheck(protocol="HTTP", path="/health", port_index=0,
                                           interval_seconds=1, timeout_seconds=2,
                                           grace_period_seconds=60)],
    )


def _healthy(client: MarathonClient, app_id: str, count: int) -> list[Any]:
    def ready() -> list[Any] | None:
        app = client.get_app(app_id, embed_tasks=True)
        tasks = [t for t in app.tasks if t.state == "TASK_RUNNING"
                 and t.health_check_results and all(r.alive for r in t.health_check_results)]
        return tasks if len(tasks) == count == app.tasks_healthy else None
    return list(wait_for(ready, 90, f"{count} healthy tasks of {app_id}"))


def _events(client: MarathonClient, types: list[str]) -> queue.Queue[Any]:
    got: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        try:
            for event in client.event_stream(event_types=types):
                got.put(event)
        except Exception as e:  # noqa: BLE001 - the stream ends when kade stops
            got.put(e)

    threading.Thread(target=read, daemon=True).start()
    return got


def _wait_event(got: queue.Queue[Any], predicate: Any, what: str) -> Any:
    def next_match() -> Any:
        while True:
            event = got.get(timeout=60)
            if isinstance(event, Exception):
                raise event
            if predicate(event):
                return event
    return wait_for(next_match, 90, what)


def test_the_marathon_client_drives_an_app_through_its_life(kade: Kade) -> None:
    client = _client(kade)
    assert b"pong" in client.ping()
    info = client.get_info()
    assert info.elected is True and info.leader == kade.addr
    assert client.get_leader() == {"leader": kade.addr}
    events = _events(client, ["event_stream_attached", "api_post_event", "status_update_event",
                              "health_status_changed_event", "deployment_success",
                              "app_terminated_event"])
    # the stream starts now: changes made before it is attached would not be on it
    _wait_event(events, lambda e: e.event_type == "event_stream_attached", "the stream")

    created = client.create_app("/mara/web", _web())
    assert created.id == "/mara/web" and created.deployments
    _wait_event(events, lambda e: e.event_type == "api_post_event", "api_post_event")
    first = _healthy(client, "/mara/web", 1)
    _wait_event(events, lambda e: e.event_type == "status_update_event"
                and e.task_status == "TASK_RUNNING" and e.app_id == "/mara/web",
                "a TASK_RUNNING status update")
    _wait_event(events, lambda e: e.event_type == "health_status_changed_event"
                and e.alive, "the task turning healthy")

    apps = client.list_apps(embed_tasks=True, label="HAPROXY_GROUP==external")
    assert [a.id for a in apps] == ["/mara/web"]
    assert apps[0].tasks[0].host and apps[0].tasks[0].ports
    assert client.list_apps(label="HAPROXY_GROUP==internal") == []

    scaled = client.scale_app("/mara/web", instances=2)
    assert scaled["deploymentId"] and scaled["version"]
    _healthy(client, "/mara/web", 2)
    assert len(client.list_tasks("/mara/web")) == 2
    assert {t.app_id for t in client.list_tasks()} == {"/mara/web"}

    killed = client.kill_task("/mara/web", first[0].id)
    assert killed.id == first[0].id
    replaced = _healthy(client, "/mara/web", 2)
    assert first[0].id not in {t.id for t in replaced}

    restarted = client.restart_app("/mara/web")
    assert restarted["deploymentId"]
    before = {t.id for t in replaced}
    after = wait_for(lambda: (lambda ts: ts if not {t.id for t in ts} & before else None)(
        _healthy(client, "/mara/web", 2)), 90, "every task replaced by the restart")
    _wait_event(events, lambda e: e.event_type == "deployment_success", "deployment_success")

    versions = client.list_versions("/mara/web")
    assert len(versions) >= 3
    old = client.get_version("/mara/web", versions[-1])
    assert old.instances == 1

    client.kill_given_tasks([after[0].id], scale=True)
    wait_for(lambda: client.get_app("/mara/web").instances == 1, 30, "scaled down to 1")

    # what a client read, changed and sent back (a batch of one); then a rollback
    fetched = client.get_app("/mara/web", embed_tasks=True)
    fetched.labels["tier"] = "front"
    assert client.update_apps([fetched])["deploymentId"]
    current = client.get_app("/mara/web")
    assert current.labels["tier"] == "front" and current.instances == 1
    assert current.health_checks[0].path == "/health"
    assert client.rollback_app("/mara/web", versions[-1])["deploymentId"]
    assert "tier" not in client.get_app("/mara/web").labels

    deleted = client.delete_app("/mara/web")
    assert deleted["deploymentId"]
    _wait_event(events, lambda e: e.event_type == "app_terminated_event", "app terminated")
    wait_for(lambda: not kade.containers(), 60, "every container stopped")


def test_marathon_lb_finds_its_backends_and_follows_events(kade: Kade) -> None:
    url = f"http://{kade.addr}"
    headers = {**kade.auth, "Accept": "application/json", "Content-Type": "application/json"}
    created = httpx.post(f"{url}/v2/apps", headers=headers, json={
        "id": "/lb/web", "instances": 1, "cpus": 0.01, "mem": 16,
        "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "web.example.com"},
        "container": {"type": "DOCKER", "docker": {"image": "kade/site:1"}},
        "portDefinitions": [{"port": 10001, "protocol": "tcp", "name": "http"}],
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                          "intervalSeconds": 1, "timeoutSeconds": 2,
                          "gracePeriodSeconds": 60, "maxConsecutiveFailures": 3}],
    })
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v2/apps/lb/web"

    def backends() -> list[dict[str, Any]] | None:
        apps = httpx.get(f"{url}/v2/apps", params={"embed": "apps.tasks"},
                         headers=headers).json()["apps"]
        tasks = [t for t in apps[0]["tasks"] if t["state"] == "TASK_RUNNING"
                 and all(r["alive"] for r in t.get("healthCheckResults", []))
                 and t.get("healthCheckResults")]
        return apps if tasks else None

    app = wait_for(backends, 90, "a healthy backend")[0]
    # what marathon-lb reads of an app and its tasks
    assert app["id"] == "/lb/web" and app["labels"]["HAPROXY_0_VHOST"] == "web.example.com"
    assert app.get("container", {}).get("docker", {}).get("network", "") == ""
    assert [p["port"] for p in app["portDefinitions"]] == [10001]
    assert app["healthChecks"][0]["portIndex"] == 0
    assert app["healthChecks"][0]["protocol"] == "HTTP"
    assert app["tasksHealthy"] == 1 and app["instances"] == 1
    task = app["tasks"][0]
    assert task["host"] == "127.0.0.1" and len(task["ports"]) == 1
    assert task["ipAddresses"][0]["ipAddress"] == "127.0.0.1"
    assert task["appId"] == "/lb/web" and task["startedAt"] and task["version"]
    served = httpx.get(f"http://127.0.0.1:{task['ports'][0]}/health", timeout=5)
    assert served.status_code == 200

    # the event stream as marathon-lb opens it, filtered to the events it acts upon
    relevant = ["status_update_event", "health_status_changed_event", "api_post_event"]
    params = [("plan-format", "light")] + [("event_type", t) for t in relevant]
    seen: list[dict[str, Any]] = []
    with httpx.Client(timeout=httpx.Timeout(10, read=60)) as sse, sse.stream(
            "GET", f"{url}/v2/events", params=params,
            headers={**kade.auth, "Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        changed = httpx.put(f"{url}/v2/apps/lb/web", params={"force": "true"},
                            headers=headers, json={"instances": 2})
        assert changed.status_code == 200, changed.text
        assert set(changed.json()) == {"version", "deploymentId"}
        for line in stream.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line.split(":", 1)[1])
                seen.append(event)
                if event["eventType"] == "status_update_event":
                    break
    kinds = [e["eventType"] for e in seen]
    assert set(kinds) <= set(relevant), kinds
    post = next(e for e in seen if e["eventType"] == "api_post_event")
    assert post["appDefinition"]["id"] == "/lb/web" and post["appDefinition"]["instances"] == 2
    update = seen[-1]
    assert update["appId"] == "/lb/web" and update["taskStatus"].startswith("TASK_")

    gone = httpx.delete(f"{url}/v2/apps/lb/web", headers=headers)
    assert gone.status_code == 200 and gone.json()["deploymentId"]
    missing = httpx.get(f"{url}/v2/apps/lb/web", headers=headers)
    assert missing.status_code == 404 and "does not exist" in missing.json()["message"]


def _group(db_health_path: str) -> dict[str, Any]:
    site = {"cpus": 0.01, "mem": 16, "container": {"docker": {"image": "kade/site:1"}}}
    return {
        "id": "/grp",
        "groups": [
            {"id": "data", "apps": [{
                **site, "id": "db",
                "healthChecks": [{"protocol": "HTTP", "path": db_health_path,
                                  "intervalSeconds": 1, "timeoutSeconds": 2,
                                  "gracePeriodSeconds": 60}],
            }]},
            {"id": "front", "dependencies": ["/grp/data"], "apps": [{**site, "id": "web"}]},
        ],
    }


def test_a_group_is_deployed_in_dependency_order(kade: Kade) -> None:
    client = _client(kade)
    url = f"http://{kade.addr}"
    headers = {**kade.auth, "Content-Type": "application/json"}
    # the database never turns healthy: the app that depends on it is not started
    created = httpx.post(f"{url}/v2/groups", headers=headers, json=_group("/missing"))
    assert created.status_code == 201, created.text
    assert set(created.json()) == {"version", "deploymentId"}
    wait_for(lambda: kade.get("/v1/apps/grp/data/db")["app"]["tasks"], 60, "the db's task")
    web = wait_for(lambda: (lambda a: a if a.get("queue", {}).get("waiting") else None)(
        kade.app("/grp/front/web")), 30, "web to wait")
    assert web["queue"]["waiting"] == "waiting for dependencies to be healthy: /grp/data/db"
    assert web["tasks"] == [] and web["dependencies"] == ["/grp/data/db"]

    group = client.get_group("/grp")
    assert [g.id for g in group.groups] == ["/grp/data", "/grp/front"]
    assert group.groups[1].apps[0].dependencies == ["/grp/data/db"]
    assert "/grp" in [g.id for g in client.list_groups()]
    again = httpx.post(f"{url}/v2/groups", headers=headers, json=_group("/health"))
    assert again.status_code == 409 and "already exists" in again.json()["message"]

    # fixed: the database turns healthy, then the web app starts
    client.update_group("/grp", _group_model(_group("/health")))
    _healthy(client, "/grp/data/db", 1)
    wait_for(lambda: client.get_app("/grp/front/web", embed_tasks=True).tasks_running == 1,
             90, "web started after its dependency")

    client.scale_group("/grp", 2)
    wait_for(lambda: client.get_app("/grp/front/web").instances == 2, 30, "scaled by 2")

    bad = httpx.put(f"{url}/v2/groups/grp", headers=headers, json={
        "apps": [{"id": "a", "cmd": "x", "dependencies": ["b"]},
                 {"id": "b", "cmd": "x", "dependencies": ["a"]}]})
    assert bad.status_code == 422 and "cycle /grp/a -> /grp/b -> /grp/a" in bad.text
    assert client.get_app("/grp/front/web").instances == 2  # a refused change changes nothing

    deleted = client.delete_group("/grp")
    assert deleted["deploymentId"]
    assert httpx.get(f"{url}/v2/groups/grp", headers=headers).status_code == 404
    wait_for(lambda: not kade.containers(), 60, "every container stopped")


def _group_model(data: dict[str, Any]) -> MarathonGroup:
    return MarathonGroup.from_json(data)


def test_v2_asks_for_tokens_hides_env_and_keeps_scopes(kade: Kade) -> None:
    url = f"http://{kade.addr}"

    def token(**body: Any) -> str:
        made = httpx.post(f"{url}/v1/tokens", headers=kade.auth, json=body)
        assert made.status_code == 201, made.text
        return str(made.json()["token"])

    app = {"id": "/shop/web", "instances": 0, "env": {"DB_PASSWORD": "s3cret"},
           "container": {"docker": {"image": "kade/site:1"}}}
    dcos = {"Authorization": f"token={kade.token}"}  # how DC/OS clients send a token
    assert httpx.post(f"{url}/v2/apps", headers=dcos, json=app).status_code == 201
    assert httpx.get(f"{url}/v2/apps").status_code == 401

    reader = {"Authorization": f"token={token(role='read')}"}
    listed = httpx.get(f"{url}/v2/apps", headers=reader).json()["apps"]
    assert "s3cret" not in json.dumps(listed) and listed[0]["env"]["DB_PASSWORD"] != "s3cret"
    refused = httpx.put(f"{url}/v2/apps/shop/web", headers=reader, json={"instances": 1})
    assert refused.status_code == 403 and "needs a deploy token" in refused.json()["message"]

    shop = {"Authorization": f"token={token(role='deploy', apps=['/shop/*'])}"}
    assert httpx.put(f"{url}/v2/apps/shop/web", headers=shop,
                     json={"instances": 0, "labels": {"a": "b"}}).status_code == 200
    other = httpx.post(f"{url}/v2/apps", headers=shop, json={**app, "id": "/other/web"})
    assert other.status_code == 403 and "may not change app /other/web" in other.text
    group = httpx.post(f"{url}/v2/groups", headers=shop, json={"id": "/shop", "apps": []})
    assert group.status_code == 403
    assert httpx.get(f"{url}/v2/apps/shop/web", headers=kade.auth).json()["app"]["labels"] == {
        "a": "b"}
