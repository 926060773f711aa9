"""Command-line options that several kade commands share (`up`, `server`, `agent`): each is
defined once, with its environment variable (`KADE_<NAME>`) and help, and parsed once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from kade.admission import ContainerPolicy

POLICY = "Container policy (docs/app-spec.md)"

DataDir = Annotated[Path | None, typer.Option(
    envvar="KADE_DATA_DIR",
    help="state [default: /var/lib/kade as root, ~/.local/share/kade otherwise]")]
LogLevel = Annotated[str, typer.Option(envvar="KADE_LOG_LEVEL")]
ListenApi = Annotated[str, typer.Option("--api-addr", envvar="KADE_API_ADDR",
                                        help="where the API listens")]
Node = Annotated[str | None, typer.Option(envvar="KADE_NODE",
                                          help="node name [default: hostname]")]
Attr = Annotated[list[str] | None, typer.Option(
    "--attr", envvar="KADE_ATTR",
    help="a node attribute, key=value (az=1a); repeatable, or comma-separated "
         "(KADE_ATTR=az=1a,rack=r1)")]
Advertise = Annotated[str, typer.Option(envvar="KADE_ADVERTISE",
                                        help="address tasks are reached on")]
DriverOpt = Annotated[str, typer.Option("--driver", envvar="KADE_DRIVER",
                                        help="auto, docker, exec or docker,exec")]
PublishIp = Annotated[str, typer.Option(envvar="KADE_PUBLISH_IP",
                                        help="host IP bridge ports are published on")]
Ports = Annotated[str, typer.Option(envvar="KADE_PORTS", help="host port range")]
DnsAddr = Annotated[str, typer.Option(envvar="KADE_DNS_ADDR")]
Domain = Annotated[str, typer.Option(envvar="KADE_DOMAIN", help="DNS domain")]
HttpAddr = Annotated[str, typer.Option(envvar="KADE_HTTP_ADDR",
                                       help="the router's HTTP listener")]
RouterAdminAddr = Annotated[str, typer.Option(
    envvar="KADE_ROUTER_ADMIN_ADDR", help="the router's /metrics, /ping, /table")]
RouterOn = Annotated[bool, typer.Option(envvar="KADE_ROUTER",
                                        help="start the router process")]
AccessLog = Annotated[str | None, typer.Option(
    envvar="KADE_ACCESS_LOG", help="router access log: a file, or - for the router's log")]
HttpsAddr = Annotated[str | None, typer.Option(
    envvar="KADE_HTTPS_ADDR", help="the router's HTTPS listener (off unless given)")]
HttpsCertDir = Annotated[Path | None, typer.Option(
    envvar="KADE_HTTPS_CERT_DIR",
    help="certificates for HTTPS: NAME.crt with NAME.key (also kade/tls/<name>/ in KV)")]
RouterAdminPublic = Annotated[bool, typer.Option(
    "--router-admin-public", envvar="KADE_ROUTER_ADMIN_PUBLIC",
    help="allow a non-loopback --router-admin-addr")]
TlsCert = Annotated[Path | None, typer.Option(
    envvar="KADE_TLS_CERT", help="serve the API over HTTPS with this certificate (PEM)")]
TlsKey = Annotated[Path | None, typer.Option(
    envvar="KADE_TLS_KEY", help="the certificate's private key (PEM)")]
ApiHost = Annotated[list[str] | None, typer.Option(
    envvar="KADE_API_HOST",
    help="a DNS name the API is reached by (IP addresses and localhost always are)")]
CorsOrigin = Annotated[list[str] | None, typer.Option(
    envvar="KADE_CORS_ORIGIN",
    help="a browser origin (https://host[:port]) allowed to call the API")]
InsecureIKnow = Annotated[bool, typer.Option(
    "--insecure-i-know", envvar="KADE_INSECURE_I_KNOW",
    help="allow a non-loopback --api-addr without TLS")]
Deploy = Annotated[list[Path] | None, typer.Option(
    envvar="KADE_DEPLOY", help="app definitions (files or folders) to deploy once up")]
SeedKv = Annotated[list[Path] | None, typer.Option(
    envvar="KADE_SEED_KV", help="JSON/YAML trees of KV keys to create when missing")]

AllowPrivileged = Annotated[bool, typer.Option(
    "--allow-privileged", envvar="KADE_ALLOW_PRIVILEGED",
    help="let apps run privileged containers", rich_help_panel=POLICY)]
AllowCaps = Annotated[str, typer.Option(
    envvar="KADE_ALLOW_CAPS", help="capabilities apps may add (NET_BIND_SERVICE,... or ALL)",
    rich_help_panel=POLICY)]
AllowHostNamespaces = Annotated[bool, typer.Option(
    "--allow-host-namespaces", envvar="KADE_ALLOW_HOST_NAMESPACES",
    help="let apps share the host's pid/ipc/uts/userns", rich_help_panel=POLICY)]
AllowUnconfined = Annotated[bool, typer.Option(
    "--allow-unconfined", envvar="KADE_ALLOW_UNCONFINED",
    help="let apps loosen seccomp/AppArmor/SELinux (security-opt)", rich_help_panel=POLICY)]
AllowDevices = Annotated[bool, typer.Option(
    "--allow-devices", envvar="KADE_ALLOW_DEVICES", help="let apps map host devices",
    rich_help_panel=POLICY)]
AllowSysctls = Annotated[bool, typer.Option(
    "--allow-sysctls", envvar="KADE_ALLOW_SYSCTLS", help="let apps set kernel parameters",
    rich_help_panel=POLICY)]
AllowHostPaths = Annotated[str, typer.Option(
    envvar="KADE_ALLOW_HOST_PATHS", help="host directories apps may mount (/srv/data,...)",
    rich_help_panel=POLICY)]
AllowDockerSocket = Annotated[bool, typer.Option(
    "--allow-docker-socket", envvar="KADE_ALLOW_DOCKER_SOCKET",
    help="let apps mount the Docker socket", rich_help_panel=POLICY)]
AllowRootCommands = Annotated[bool, typer.Option(
    "--allow-root-commands", envvar="KADE_ALLOW_ROOT_COMMANDS",
    help="let command apps (no image) run as root on the host", rich_help_panel=POLICY)]


def port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high))
    except ValueError:
        raise ValueError(f"--ports {text!r}: write a range such as 31000-32000") from None
    if not 0 < bounds[0] <= bounds[1] < 65536:
        raise ValueError(f"--ports {text!r} is not within 1-65535")
    return bounds


def container_policy(*, allow_privileged: bool, allow_caps: str, allow_host_namespaces: bool,
                     allow_unconfined: bool, allow_devices: bool, allow_sysctls: bool,
                     allow_host_paths: str, allow_docker_socket: bool,
                     allow_root_commands: bool) -> ContainerPolicy:
    from kade.admission import ContainerPolicy, capability

    host_paths = tuple(p.strip() for p in allow_host_paths.split(",") if p.strip())
    for path in host_paths:
        if not path.startswith("/"):
            raise ValueError(f"--allow-host-paths: {path!r} must be an absolute path")
    return ContainerPolicy(
        allow_privileged=allow_privileged,
        allow_caps=frozenset(capability(c) for c in allow_caps.split(",") if c.strip()),
        allow_host_namespaces=allow_host_namespaces, allow_unconfined=allow_unconfined,
        allow_devices=allow_devices, allow_sysctls=allow_sysctls, allow_host_paths=host_paths,
        allow_docker_socket=allow_docker_socket, allow_root_commands=allow_root_commands)

MONITORING = "Monitoring and alerts (docs/monitoring.md)"
AlertWebhook = Annotated[list[str] | None, typer.Option(
    envvar="KADE_ALERT_WEBHOOK", rich_help_panel=MONITORING,
    help="send alerts here with Alertmanager's webhook body (repeatable)")]
AlertmanagerUrl = Annotated[list[str] | None, typer.Option(
    "--alertmanager", envvar="KADE_ALERTMANAGER", rich_help_panel=MONITORING,
    help="push alerts to this Alertmanager's /api/v2/alerts (repeatable)")]
BuiltinAlerts = Annotated[bool, typer.Option(
    "--builtin-alerts/--no-builtin-alerts", envvar="KADE_BUILTIN_ALERTS",
    rich_help_panel=MONITORING,
    help="kade's own rules: crash loops, apps below their healthy count, failed "
         "deployments, nodes down, disks nearly full")]
MetricsInterval = Annotated[str, typer.Option(
    envvar="KADE_METRICS_INTERVAL", rich_help_panel=MONITORING,
    help="how often tasks' usage is collected and endpoints scraped (on a server: how "
         "often the cluster's own series are written)")]
AlertInterval = Annotated[str, typer.Option(
    envvar="KADE_ALERT_INTERVAL", rich_help_panel=MONITORING,
    help="how often alert rules are evaluated")]


@dataclass(frozen=True)
class Monitoring:
    webhooks: list[str]
    alertmanagers: list[str]
    metrics_interval: float
    alert_interval: float


def monitoring(alert_webhook: list[str] | None, alertmanager: list[str] | None,
               metrics_interval: str, alert_interval: str) -> Monitoring:
    """The monitoring options of `up` and `server`, checked (ValueError names the flag)."""
    from kade.admission.alerting import check_interval, check_receivers

    return Monitoring(
        webhooks=check_receivers(list(alert_webhook or []), "--alert-webhook"),
        alertmanagers=check_receivers(list(alertmanager or []), "--alertmanager"),
        metrics_interval=check_interval(metrics_interval, "--metrics-interval"),
        alert_interval=check_interval(alert_interval, "--alert-interval"))
