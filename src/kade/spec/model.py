"""App definitions, in Marathon's shape: field names on the wire are Marathon's (camelCase).

Inside kade the same models are used with snake_case attributes. Defaults that differ from
Marathon's are chosen for a small machine and a deploy that turns healthy as soon as the app
answers; docs/app-spec.md lists them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kade.addresses import parse_duration
from kade.spec.alerts import AlertRule
from kade.spec.base import SpecModel
from kade.spec.docker_parameters import PARAMETERS
from kade.spec.routes import RouteSpec
from kade.spec.templates import TemplateSpec

Protocol_ = Literal["tcp", "udp", "udp,tcp", "tcp,udp"]


class PortDefinition(SpecModel):
    port: int = Field(default=0, ge=0, le=65535)
    protocol: Protocol_ = "tcp"
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class PortMapping(SpecModel):
    container_port: int = Field(default=0, ge=0, le=65535)
    host_port: int | None = Field(default=None, ge=0, le=65535)  # None/0 = assign one
    service_port: int = Field(default=0, ge=0, le=65535)
    protocol: Protocol_ = "tcp"
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


# `container.docker.parameters` keys the Docker driver translates (`docker run --<key>`); those
# that reach the host are refused by admission unless the server's container policy allows them.
SUPPORTED_PARAMETERS: frozenset[str] = frozenset(PARAMETERS)


class DockerParameter(SpecModel):
    key: str
    value: str


class DockerSpec(SpecModel):
    image: str = Field(min_length=1)
    network: Literal["HOST", "BRIDGE", "USER", "NONE"] | None = None  # legacy, see `networks`
    port_mappings: list[PortMapping] | None = None  # legacy place of portMappings
    privileged: bool = False
    parameters: list[DockerParameter] = Field(default_factory=list)
    force_pull_image: bool = False


class Volume(SpecModel):
    container_path: str = Field(min_length=1)
    host_path: str = Field(min_length=1)
    mode: Literal["RO", "RW"] = "RW"


class Container(SpecModel):
    type: Literal["DOCKER", "MESOS"] = "DOCKER"
    docker: DockerSpec | None = None
    port_mappings: list[PortMapping] | None = None
    volumes: list[Volume] = Field(default_factory=list)


class Network(SpecModel):
    mode: Literal["host", "container/bridge", "container"] = "host"
    name: str | None = None  # a Docker network, for mode "container"
    labels: dict[str, str] = Field(default_factory=dict)


class FetchUri(SpecModel):
    """One file the task needs in its sandbox before it starts (Marathon's `fetch`)."""

    uri: str = Field(min_length=1)
    extract: bool = True  # archives (tar, tgz, tbz2, txz, zip) are unpacked
    executable: bool = False  # mode 0755 instead of 0644
    cache: bool = False  # kept by URL on the node and reused
    output_file: str | None = None  # the file's name in the sandbox (default: the URI's)


class CommandValue(SpecModel):
    value: str = Field(min_length=1)


HealthProtocol = Literal[
    "HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"
]


class HealthCheck(SpecModel):
    protocol: HealthProtocol = "HTTP"
    path: str = "/"
    port_index: int | None = Field(default=None, ge=0)
    port: int | None = Field(default=None, ge=1, le=65535)
    command: CommandValue | None = None
    grace_period_seconds: float = Field(default=60, ge=0)
    interval_seconds: float = Field(default=10, gt=0)
    timeout_seconds: float = Field(default=5, gt=0)
    max_consecutive_failures: int = Field(default=3, ge=0)
    ignore_http1xx: bool = Field(default=False, alias="ignoreHttp1xx")
    delay_seconds: float = Field(default=0, ge=0)

    @property
    def kind(self) -> Literal["HTTP", "HTTPS", "TCP", "COMMAND"]:
        p = self.protocol.removeprefix("MESOS_")
        return p  # type: ignore[return-value]


class UpgradeStrategy(SpecModel):
    minimum_health_capacity: float = Field(default=1.0, ge=0, le=1)
    maximum_over_capacity: float = Field(default=1.0, ge=0, le=1)
    # kade: a deployment that is not done by then fails and rolls back.
    progress_deadline_seconds: float = Field(default=300, gt=0)


class UnreachableStrategy(SpecModel):
    """Marathon's: what happens to a task whose node is down (in kade: its agent's lease
    ended, `docs/cluster.md`). After `inactiveAfterSeconds` more it is replaced on another
    node; its record stays until the node comes back and stops it (`expungeAfterSeconds` is
    accepted and not used). `"unreachableStrategy": "disabled"`: never replaced."""

    inactive_after_seconds: float = Field(default=0, ge=0)
    expunge_after_seconds: float = Field(default=0, ge=0)
    disabled: bool = False

    @model_validator(mode="before")
    @classmethod
    def _disabled(cls, data: Any) -> Any:
        return {"disabled": True} if data == "disabled" else data


class LogsSpec(SpecModel):
    """kade's: how much of the app's output its nodes keep (`docs/logs.md`). Left out: the
    node's defaults. Whichever limit is reached first removes the oldest lines."""

    max_bytes: int | None = Field(default=None, ge=1024 * 1024, le=1024**4)
    max_age: float | None = Field(default=None, ge=60, le=366 * 24 * 3600.0)  # seconds

    @model_validator(mode="before")
    @classmethod
    def _age_as_duration(cls, data: Any) -> Any:
        """`"maxAge": "7d"` as well as seconds."""
        if isinstance(data, dict) and isinstance(data.get("maxAge"), str):
            try:
                return {**data, "maxAge": parse_duration(data["maxAge"], "maxAge")}
            except ValueError as e:
                raise ValueError(str(e)) from None
        return data


class MetricsSpec(SpecModel):
    """kade's: where the app's tasks answer Prometheus' scrape (docs/monitoring.md). The
    label `kade.metrics.path` says the same with port index 0."""

    path: str = Field(default="/metrics", pattern=r"^/[^\s]*$", max_length=1000)
    port_index: int = Field(default=0, ge=0)


ConstraintOp = Literal["UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS"]


class AppSpec(SpecModel):
    wire_omit_defaults: ClassVar[frozenset[str]] = frozenset(  # added later
        {"fetch", "type", "unreachable_strategy", "logs", "alerts", "metrics"})
    id: str
    # kade: "system" runs one task on every eligible node that matches the constraints
    # (`instances` 0 suspends it, any other count is not used); "service" runs `instances`.
    type: Literal["service", "system"] = "service"
    cmd: str | None = None
    args: list[str] | None = None
    container: Container | None = None
    networks: list[Network] = Field(default_factory=list)
    port_definitions: list[PortDefinition] | None = None
    require_ports: bool = False
    instances: int = Field(default=1, ge=0)
    cpus: float = Field(default=0.1, ge=0)
    mem: float = Field(default=128, ge=0)
    disk: float = Field(default=0, ge=0)
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    health_checks: list[HealthCheck] = Field(default_factory=list)
    upgrade_strategy: UpgradeStrategy = Field(default_factory=UpgradeStrategy)
    unreachable_strategy: UnreachableStrategy = Field(default_factory=UnreachableStrategy)
    backoff_seconds: float = Field(default=1, ge=0)
    backoff_factor: float = Field(default=1.15, ge=1)
    max_launch_delay_seconds: float = Field(default=300, ge=0)
    task_kill_grace_period_seconds: float = Field(default=10, ge=0)
    kill_selection: Literal["YOUNGEST_FIRST", "OLDEST_FIRST"] = "YOUNGEST_FIRST"
    constraints: list[list[str]] = Field(default_factory=list)
    # apps (absolute ids) that must be healthy before this one is started (kade.spec.groups)
    dependencies: list[str] = Field(default_factory=list)
    user: str | None = None
    routes: list[RouteSpec] = Field(default_factory=list)
    templates: list[TemplateSpec] = Field(default_factory=list)
    fetch: list[FetchUri] = Field(default_factory=list)
    logs: LogsSpec = Field(default_factory=LogsSpec)
    alerts: list[AlertRule] = Field(default_factory=list, max_length=100)  # kade.spec.alerts
    metrics: MetricsSpec | None = None  # its Prometheus endpoint, scraped every 10 s
    restarted_at: str | None = None  # set by `kade restart`: part of the spec hash
    version: str | None = None  # set by kade when the version is stored

    # -- derived views used by the scheduler, agent and drivers --------------------------

    @property
    def image(self) -> str | None:
        if self.container and self.container.docker:
            return self.container.docker.image
        return None

    @property
    def network_mode(self) -> Literal["host", "bridge", "container", "none"]:
        if self.networks:
            mode = self.networks[0].mode
            return "bridge" if mode == "container/bridge" else mode
        legacy = self.container.docker.network if self.container and self.container.docker else None
        if legacy == "BRIDGE":
            return "bridge"
        if legacy == "USER":
            return "container"
        if legacy == "NONE":
            return "none"
        return "host"

    @property
    def docker_network_name(self) -> str | None:
        if self.networks and self.networks[0].mode == "container":
            return self.networks[0].name
        return None

    def metrics_endpoint(self) -> MetricsSpec | None:
        """Where its tasks are scraped: `metrics`, else the label `kade.metrics.path`."""
        if self.metrics is not None:
            return self.metrics
        path = self.labels.get("kade.metrics.path")
        return MetricsSpec(path=path) if path and path.startswith("/") else None

    def port_mappings(self) -> list[PortMapping]:
        if self.container is None:
            return []
        if self.container.port_mappings is not None:
            return list(self.container.port_mappings)
        if self.container.docker and self.container.docker.port_mappings is not None:
            return list(self.container.docker.port_mappings)
        return []

    def ports(self) -> list[PortSpec]:
        """The ports a task of this app gets, in order ($PORT0, $PORT1, ...)."""
        if self.network_mode in ("bridge", "container"):
            return [
                PortSpec(
                    index=i,
                    name=m.name,
                    container_port=m.container_port,
                    requested_host_port=m.host_port or 0,
                    protocol=m.protocol,
                    labels=dict(m.labels),
                )
                for i, m in enumerate(self.port_mappings())
            ]
        if self.network_mode == "none":
            return []
        defs = self.port_definitions
        if defs is None:
            defs = [PortDefinition()]  # Marathon's default: one assigned port
        return [
            PortSpec(
                index=i,
                name=d.name,
                container_port=None,
                requested_host_port=d.port if self.require_ports else 0,
                protocol=d.protocol,
                labels=dict(d.labels),
            )
            for i, d in enumerate(defs)
        ]


class PortSpec(BaseModel):
    """One port of a task, normalized across network modes."""

    model_config = ConfigDict(frozen=True)

    index: int
    name: str | None
    container_port: int | None  # bridge: the port inside the container
    requested_host_port: int  # 0 = assign from the node's range
    protocol: str
    labels: dict[str, str]
