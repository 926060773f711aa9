"""Real Marathon definitions (tests/corpus/marathon, sources in its SOURCES.md) as users send them.

Every definition that fits one Docker host is admitted (some once the server opens what they
ask of the host, as an operator would); every other one is refused with the reason kade gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kade.admission import Admitted, ContainerPolicy, admit_file
from kade.api.marathon_views import v2_definition
from kade.spec import SpecError

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "marathon"
DENY = ContainerPolicy()

# file → the policy it is admitted under (the operator's `kade up` flags)
ADMITTED: dict[str, ContainerPolicy] = {
    "marathon-1.5-apps_create.json": DENY,
    "marathon-docs-app-check-http-example.json": DENY,
    "marathon-docs-app-simple.json": DENY,
    "marathon-docs-basics-0.json": DENY,
    "marathon-docs-basics-1.json": DENY,
    "marathon-docs-basics-2.json": DENY,
    "marathon-docs-basics-3-cache.json": DENY,
    "marathon-docs-basics-3-docker.json": DENY,
    "marathon-docs-basics-4.json": DENY,
    "marathon-docs-native-docker-inky.json": DENY,
    "marathon-examples-Group-1.json": DENY,
    "marathon-examples-Group-2.json": DENY,
    "marathon-lb-1.9-docker_bridge.json": DENY,
    "marathon-lb-1.9-ucr_host.json": DENY,
    "marathon-lb-ucr_bridge.json": DENY,
    "marathon-lb-ucr_ippc.json": DENY,
    "public-abhayaggarwal-cd-demo.json": DENY,
    "public-alanniu99-movie-microservice.json": DENY,
    "public-anthonymoralez-sa-dcos-example.json": DENY,
    "public-arthurstrokov-eureka-server.json": DENY,
    "public-auduny-opstest.json": DENY,
    "public-capgemini-mesos-ui.json": DENY,
    "public-containersolutions-cd-demo-app.json": DENY,
    "public-generalelectric-dcosb-cassandra.json": DENY,
    "public-globallogic-robotshop-web.json": DENY,
    "public-higino-bind-server.json": ContainerPolicy(allow_privileged=True,
                                                      allow_host_paths=("/vagrant/bind",)),
    "public-higino-simplewebapp.json": DENY,
    "public-hulikeji-kafka.json": ContainerPolicy(allow_host_paths=("/tmp/kafka",)),
    "public-jessezhen-petclinic.json": DENY,
    "public-los-essnet-odile.json": DENY,
    "public-sergeydz-jenkins-status-api.json": DENY,
    "public-seventy-two-tweeter-go.json": DENY,
    "public-stevelasker-dockercon-group.json": DENY,
    "public-tracyhe-weather-service.json": DENY,
    "marathon-examples-Docker.json": ContainerPolicy(allow_host_paths=("/var/data",)),
    "marathon-examples-PythonSimpleHTTPServer.json": DENY,
    "marathon-examples-Rails.json": DENY,
    "marathon-examples-Tomcat-Docker.json": DENY,
    "marathon-examples-Tomcat.json": DENY,
    "marathon-examples-bridge.json": DENY,
    "marathon-examples-labels.json": DENY,
    "marathon-lb-1-nginx-marathon1.5.json": DENY,
    "marathon-lb-1-nginx.json": DENY,
    "marathon-lb-docker_bridge.json": DENY,
    "marathon-lb-docker_host.json": DENY,
    "marathon-lb-docker_ippc.json": DENY,
    "marathon-lb-ucr_host.json": DENY,
    "public-ack-mesosphere-router.json": DENY,
    "public-alanbover-grafana-dcos.json": DENY,
    "public-amuraru-docker-dynamic-ports.json": DENY,
    "public-andygrunwald-simple-webserver.json": DENY,
    "public-arangodb-zdf-lobby-radar-restore.json": DENY,
    "public-anners-cat-service.json": DENY,
    "public-aslanbakirov-fibonacci-service.json": DENY,
    "public-bankofse-mon-accounts.json": DENY,
    "public-luganotechtalks-newscron-crawler.json": ContainerPolicy(
        allow_host_paths=("/root/DISCO_Dictionaries",)),
    "public-simonpnorra-cd-demo-app.json": DENY,
    "public-schibsted-polyglot-api.json": DENY,
    "public-fundingcircle-eremetic.json": DENY,
    "public-henriquemcastro-mesos-ui.json": DENY,
    "public-laisky-go-fluentd.json": ContainerPolicy(allow_devices=True,
                                                     allow_caps=frozenset({"SYS_ADMIN"})),
}

_ID = ("is invalid: each path segment must be lowercase letters, digits, dashes and dots, "
       "starting and ending with a letter or digit")  # Marathon refuses these ids too
# file → (the policy, the first problem kade names)
REFUSED: dict[str, tuple[ContainerPolicy, str]] = {
    "marathon-docs-pod.json": (DENY, "containers: pods are not supported: deploy each "
                                     "container as an app"),
    "marathon-docs-persistent-postgres.json": (DENY, "residency: resident tasks are not "
                                                     "supported"),
    "marathon-docs-persistent-mysql.json": (DENY, "container.volumes.0.persistent: persistent "
                                                  "(local) volumes are not supported"),
    "marathon-docs-native-docker-privileged-job.json": (
        ContainerPolicy.permissive(),
        "container.docker.parameters.2: 'lxc-conf' is not a docker run option with an Engine "
        "API equivalent"),
    # a reference listing every field, some contradicting others (Marathon refuses it too)
    "marathon-docs-app.json": (DENY, "cmd: cmd and args cannot both be set"),
    "marathon-examples-Play.json": (DENY, f"id: 'Hello-Play' {_ID}"),
    "marathon-examples-start_rails.json": (DENY, f"id: 'Rails' {_ID}"),
    "public-aman343-gunicorn-flask.json": (DENY, f"id: 'Armature-250' {_ID}"),
    "public-abhishekray07-test-python-app.json": (
        DENY, "invalid JSON at line 3 column 10: Expecting value"),
    "public-luganotechtalks-newscron-crawler.json": (
        DENY, "container.volumes.0.hostPath: the host path /root/DISCO_Dictionaries/ is outside "
              "the allowed directories and is refused by this server (start kade with "
              "--allow-host-paths /root/DISCO_Dictionaries)"),
    # as published, with a trailing comma (Marathon refuses it too)
    "public-smartenergyplatform-device-sim.json": (
        DENY, "invalid JSON at line 38 column 6: Expecting property name enclosed in double "
              "quotes"),
    "public-laisky-go-fluentd.json": (
        DENY, "container.docker.parameters.1 (cap-add=SYS_ADMIN): adding the capability "
              "SYS_ADMIN is refused by this server (start kade with --allow-caps SYS_ADMIN)"),
    "public-higino-bind-server.json": (
        DENY, "container.docker.privileged: privileged containers are refused by this server "
              "(start kade with --allow-privileged)"),
    "public-hulikeji-kafka.json": (
        DENY, "container.volumes.0.hostPath: the host path /tmp/kafka is outside the allowed "
              "directories and is refused by this server (start kade with --allow-host-paths "
              "/tmp/kafka)"),
    # a dependency on a group the file does not define (department-b; Marathon: department-a)
    "marathon-examples-Group.json": (
        DENY, "/department-a/product-a/service-a: dependency /department-b/service-common is "
              "neither an app nor a group"),
    # written for Marathon 1.4, which ignored `networks`: the two ways disagree (Marathon 1.5
    # and later refuse mixing them at all)
    "marathon-lb-1.9-docker_host.json": (
        DENY, "container.docker.network: HOST disagrees with networks (mode container/bridge): "
              "set networks only"),
    "marathon-lb-1.9-docker_ippc.json": (DENY, "ipAddress: set networks or ipAddress, not both"),
    # as published, with a trailing comma (Marathon refuses them too)
    "public-andrew-jones-mesos-router.json": (
        DENY, "invalid JSON at line 24 column 3: Expecting property name enclosed in double "
              "quotes"),
    "public-valassis-helloworld-nodejs.json": (
        DENY, "invalid JSON at line 24 column 5: Expecting property name enclosed in double "
              "quotes"),
    # registry credentials fetched from the node: a host path, refused unless allowed
    "public-aronim-cloud-gateway.json": (
        DENY, "fetch.0.uri: the host path /etc/.dockercfg is outside the allowed directories"),
    "public-aucfan-codeigniter.json": (DENY, f"id: '/sample/sampleApp' {_ID}"),
    # Marathon refuses these too: both uris and fetch; a health capacity above 1; no image
    "public-azulinho-docker-compose.json": (DENY, "uris: set fetch or the older uris, not both"),
    "public-capgemini-angular-cart.json": (
        DENY, "upgradeStrategy.minimumHealthCapacity: must be <= 1.0"),
    "public-jin-an-jenkins-demo.json": (DENY, "container.docker.image: must not be empty"),
    "public-benwhitehead-finch.json": (
        DENY, "container.image: the container format of Marathon before 0.7 (container.image, "
              "container.options) is not supported: write container.docker.image"),
    "public-stratio-mskafka.json": (
        DENY, "env.APPROLE: secret references are not supported"),
}


BRIDGED_PORTS = "ports: the app's ports are its container.portMappings; ignored"


def load(name: str, policy: ContainerPolicy) -> list[Admitted]:
    return admit_file((CORPUS / name).read_bytes(), name, policy=policy)


def test_every_file_of_the_corpus_has_an_expectation_and_a_source() -> None:
    """A file in both tables is refused by default and admitted once the operator allows it."""
    files = {p.name for p in CORPUS.glob("*.json")}
    assert files == set(ADMITTED) | set(REFUSED)
    sources = (CORPUS / "SOURCES.md").read_text()
    assert all(f"| {name} |" in sources for name in files)


@pytest.mark.parametrize("name", sorted(ADMITTED))
def test_definitions_that_fit_one_docker_host_are_admitted(name: str) -> None:
    apps = load(name, ADMITTED[name])
    assert apps and all(a.app.id.startswith("/") for a in apps)
    for a in apps:  # nothing Marathon acts on is dropped (bridged apps' legacy ports are)
        assert not any("fetch" in w or "ipAddress" in w or "destPath" in w
                       or w.startswith("ports") and not w.startswith(BRIDGED_PORTS)
                       for w in a.warnings), a.warnings


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_definitions_kade_cannot_run_are_refused_naming_why(name: str) -> None:
    policy, reason = REFUSED[name]
    with pytest.raises(SpecError) as info:
        load(name, policy)
    assert info.value.problems[0].startswith(reason), info.value.problems


def test_what_the_corpus_definitions_mean() -> None:
    [dynamic] = load("public-amuraru-docker-dynamic-ports.json", DENY)
    assert [p.requested_host_port for p in dynamic.app.ports()] == [0, 0, 0]
    [eremetic] = load("public-fundingcircle-eremetic.json", DENY)
    assert [(p.container_port, p.name) for p in eremetic.app.ports()] == [
        (8000, "http"), (0, None)]
    [ippc] = load("marathon-lb-docker_ippc.json", DENY)
    assert (ippc.app.network_mode, ippc.app.docker_network_name) == ("container", "dcos")
    assert [p.container_port for p in ippc.app.ports()] == [80]
    [tomcat] = load("marathon-examples-Tomcat.json", DENY)
    assert [(f.uri.rpartition("/")[2], f.extract) for f in tomcat.app.fetch] == [
        ("apache-tomcat-7.0.67.tar.gz", True), ("Calendar.war", False)]
    [rails] = load("marathon-examples-Rails.json", DENY)
    assert rails.app.fetch[0].extract and not rails.app.fetch[0].cache
    [webserver] = load("public-andygrunwald-simple-webserver.json", DENY)
    assert [p.requested_host_port for p in webserver.app.ports()] == [0]  # requirePorts false
    [router] = load("public-ack-mesosphere-router.json", DENY)
    assert [p.requested_host_port for p in router.app.ports()] == [80, 443]
    [fluentd] = load("public-laisky-go-fluentd.json", ADMITTED["public-laisky-go-fluentd.json"])
    assert [p.key for p in fluentd.app.container.docker.parameters] == [  # type: ignore[union-attr]
        "add-host", "cap-add", "device"]


def test_what_the_added_definitions_mean() -> None:
    """Ports, networks, health checks, env, volumes and fetch, as Marathon reads them."""
    [basic1] = load("marathon-docs-basics-1.json", DENY)
    assert [(f.uri.rpartition("/")[2], f.executable) for f in basic1.app.fetch] == [
        ("cool-script.sh", True)]
    [basic2] = load("marathon-docs-basics-2.json", DENY)
    [cached] = load("marathon-docs-basics-3-cache.json", DENY)
    assert [(f.extract, f.cache) for f in basic2.app.fetch + cached.app.fetch] == [
        (True, False), (True, True)]
    [basic4] = load("marathon-docs-basics-4.json", DENY)  # Marathon's destPath
    assert [f.output_file for f in basic4.app.fetch] == ["cool-script.sh"]
    assert [f["destPath"] for f in v2_definition(basic4.app)["fetch"]] == ["cool-script.sh"]
    [inky] = load("marathon-docs-native-docker-inky.json", DENY)
    assert (inky.app.image, inky.app.args, inky.app.cmd) == ("mesosphere/inky", ["hello"], None)
    # groups: ids made absolute, dependencies resolved (a group's apply to each of its apps)
    common, service_a, service_b = (a.app for a in load("marathon-examples-Group-1.json", DENY))
    assert (service_a.dependencies, service_b.dependencies) == (
        [common.id], ["/department-a/product-a/service-a"])
    assert [p.requested_host_port for p in common.ports()] == [0]  # "ports": [0]
    db, basic = (a.app for a in load("marathon-examples-Group-2.json", DENY))
    assert (db.id, basic.dependencies) == ("/department-1/database/mesos-docker", [db.id])
    [web] = load("public-stevelasker-dockercon-group.json", DENY)
    assert (web.app.id, [(p.container_port, p.requested_host_port) for p in web.app.ports()]) \
        == ("/vscode/demo/web", [(3000, 80)])
    assert web.warnings == [BRIDGED_PORTS]
    # networks: a `network` docker parameter names the Docker network the task joins
    [movie] = load("public-alanniu99-movie-microservice.json", DENY)
    assert (movie.app.network_mode, movie.app.docker_network_name) == ("container", "microservice")
    assert [(p.key, p.value) for p in movie.app.container.docker.parameters] == [  # type: ignore[union-attr]
        ("network-alias", "movie")]
    [robotshop] = load("public-globallogic-robotshop-web.json", DENY)
    assert (robotshop.app.docker_network_name, [p.name for p in robotshop.app.ports()]) == (
        "dcos", ["web"])
    [ucr_ippc] = load("marathon-lb-ucr_ippc.json", DENY)
    assert (ucr_ippc.app.docker_network_name, ucr_ippc.app.ports()) == ("dcos", [])
    [bridged] = load("marathon-lb-1.9-docker_bridge.json", DENY)  # both ways agree
    assert bridged.app.network_mode == "bridge"
    # fixed host ports, legacy `ports` beside port mappings, health checks
    [status_api] = load("public-sergeydz-jenkins-status-api.json", DENY)
    assert [(p.container_port, p.requested_host_port) for p in status_api.app.ports()] == [
        (8080, 31310)]
    [tweeter] = load("public-seventy-two-tweeter-go.json", DENY)
    assert [p.container_port for p in tweeter.app.ports()] == [8080]
    assert [hc.kind for hc in tweeter.app.health_checks] == ["TCP"]
    [eureka] = load("public-arthurstrokov-eureka-server.json", DENY)
    assert [hc.kind for hc in eureka.app.health_checks] == ["COMMAND", "COMMAND", "TCP"]
    assert eureka.app.health_checks[1].command.value == "pwd"  # type: ignore[union-attr]
    [odil] = load("public-los-essnet-odile.json", DENY)
    assert [(hc.protocol, hc.kind) for hc in odil.app.health_checks] == [("MESOS_TCP", "TCP")]
    # null fields are fields left out, as in Marathon
    [demo] = load("public-abhayaggarwal-cd-demo.json", DENY)
    assert [(p.name, p.labels) for p in demo.app.port_definitions or []] == [(None, {})]
    [bind] = load("public-higino-bind-server.json", ADMITTED["public-higino-bind-server.json"])
    assert bind.app.instances == 0 and bind.app.labels == {} and bind.app.health_checks == []
    assert bind.app.container.docker.privileged  # type: ignore[union-attr]
    assert [(v.host_path, v.mode) for v in bind.app.container.volumes] == [  # type: ignore[union-attr]
        ("/vagrant/bind/bind", "RW"), ("/vagrant/bind/webmin", "RW"), ("/vagrant/bind/zones", "RW")]
    assert [(p.protocol, p.name) for p in bind.app.ports()] == [("udp,tcp", "dns"),
                                                                ("tcp", "webadmin")]
    [kafka] = load("public-hulikeji-kafka.json", ADMITTED["public-hulikeji-kafka.json"])
    assert kafka.app.env["KAFKA_NUM_PARTITIONS"] == "3" and len(kafka.app.env) == 12
    assert [p.requested_host_port for p in kafka.app.ports()] == [0]  # requirePorts false


def test_null_fields_are_left_out_as_in_marathon() -> None:
    [app] = admit_file(b'{"id": "a", "cmd": "x", "labels": null, "constraints": null, '
                       b'"portDefinitions": [{"port": 0, "name": null}]}', "a.json", policy=DENY)
    assert (app.app.labels, app.app.constraints, app.app.ports()[0].name) == ({}, [], None)
    with pytest.raises(SpecError) as info:  # a null among the user's own names is named
        admit_file(b'{"id": "a", "cmd": "x", "env": {"A": null}}', "a.json", policy=DENY)
    assert info.value.problems == ["env.A: must be a string"]


@pytest.mark.parametrize(("fetch", "problem"), [
    ({"uri": "http://h/a", "destPath": "b", "outputFile": "c"},
     "fetch.0: set destPath or outputFile, not both"),
    ({"uri": "http://h/a", "destPath": "d/b"}, "fetch.0.outputFile: 'd/b' cannot name a file"),
])
def test_fetch_dest_path_names_the_file_in_the_sandbox(fetch: dict[str, str],
                                                       problem: str) -> None:
    data = json.dumps({"id": "a", "cmd": "x", "fetch": [fetch]}).encode()
    with pytest.raises(SpecError) as info:
        admit_file(data, "a.json", policy=DENY)
    assert info.value.problems[0].startswith(problem)


@pytest.mark.parametrize(("network", "mode", "problem"), [
    ("BRIDGE", "container/bridge", None), ("HOST", "host", None),
    ("USER", "container", None),
    ("HOST", "container/bridge", "container.docker.network: HOST disagrees with networks "
                                 "(mode container/bridge)"),
    ("BRIDGE", "host", "container.docker.network: BRIDGE disagrees with networks (mode host)"),
])
def test_the_older_docker_network_beside_networks(network: str, mode: str,
                                                  problem: str | None) -> None:
    data = json.dumps({"id": "a", "container": {"docker": {"image": "i", "network": network}},
                       "networks": [{"mode": mode, "name": "n"} if mode == "container"
                                    else {"mode": mode}]}).encode()
    if problem is None:
        [app] = admit_file(data, "a.json", policy=DENY)
        assert app.app.networks[0].mode == mode
        return
    with pytest.raises(SpecError) as info:
        admit_file(data, "a.json", policy=DENY)
    assert info.value.problems[0].startswith(problem)


@pytest.mark.parametrize(("value", "problem"), [
    ("host", "container.docker.parameters.0: 'network' is not supported: use networks"),
    ("container:other", "container.docker.parameters.0: 'network' is not supported"),
])
def test_a_network_parameter_that_is_not_a_docker_network_name_is_refused(
        value: str, problem: str) -> None:
    data = json.dumps({"id": "a", "container": {"docker": {
        "image": "i", "network": "BRIDGE",
        "parameters": [{"key": "network", "value": value}]}}}).encode()
    with pytest.raises(SpecError) as info:
        admit_file(data, "a.json", policy=DENY)
    assert info.value.problems[0].startswith(problem)


def test_a_group_file_refuses_every_app_by_its_id() -> None:
    group = {"id": "/g", "apps": [{"id": "a", "cmd": "x", "instances": -1},
                                  {"id": "b", "container": {"docker": {"image": ""}}}]}
    with pytest.raises(SpecError) as info:
        admit_file(json.dumps(group).encode(), "g.json", policy=DENY)
    assert info.value.problems == ["/g/a: instances: must be >= 0",
                                   "/g/b: container.docker.image: must not be empty"]


@pytest.mark.parametrize(("network", "mode"), [("BRIDGE", "container/bridge"), ("HOST", "host"),
                                               ("USER", "container")])
def test_ip_address_with_an_older_docker_network_asks_for_that_network(network: str,
                                                                       mode: str) -> None:
    """As Marathon 1.5 migrates it (the reference definition, app.json, does this)."""
    data = json.dumps({"id": "a", "ipAddress": {"networkName": "n"},
                       "container": {"docker": {"image": "i", "network": network}}}).encode()
    [app] = admit_file(data, "a.json", policy=DENY)
    assert app.app.networks[0].mode == mode
