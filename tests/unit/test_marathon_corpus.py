"""Real Marathon definitions (tests/corpus/marathon, sources in its SOURCES.md) as users send them.

Every definition that fits one Docker host is admitted (some once the server opens what they
ask of the host, as an operator would); every other one is refused with the reason kade gives.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kade.admission import Admitted, ContainerPolicy, admit_file
from kade.spec import SpecError

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "marathon"
DENY = ContainerPolicy()

# file → the policy it is admitted under (the operator's `kade up` flags)
ADMITTED: dict[str, ContainerPolicy] = {
    "marathon-1.5-apps_create.json": DENY,
    "marathon-docs-app-check-http-example.json": DENY,
    "marathon-docs-app-simple.json": DENY,
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
    "marathon-docs-app.json": (DENY, "ipAddress: cannot be used with container.docker.network "
                                     "BRIDGE"),
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
}


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
    for a in apps:
        assert not any("fetch" in w or "ipAddress" in w or w.startswith("ports")
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
