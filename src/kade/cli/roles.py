"""`kade server` and `kade agent`: kade as a cluster (docs/cluster.md). `kade up` stays the
single-machine way: both roles in one process."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from kade.cli import options as o
from kade.cli.console import LazyConsole, fail
from kade.client.http import default_data_dir

err = LazyConsole(stderr=True)




def _logging(level: str) -> None:
    from kade.cli.up import log_handler

    logging.basicConfig(level=level.upper(), format="%(message)s",
                        handlers=[log_handler(err.rich)])
    logging.getLogger("httpx").setLevel(logging.WARNING)


def server(
    data_dir: o.DataDir = None,
    name: Annotated[str | None, typer.Option(
        envvar="KADE_SERVER_NAME", help="this server's name [default: hostname]")] = None,
    etcd: Annotated[str | None, typer.Option(
        envvar="KADE_ETCD", help="etcd endpoints, comma-separated (http://10.0.0.1:2379,...): "
                                 "the cluster's store [default: SQLite in --data-dir, one "
                                 "server]")] = None,
    etcd_prefix: Annotated[str, typer.Option(
        envvar="KADE_ETCD_PREFIX", help="kade's keys in etcd (clusters sharing an etcd each "
                                        "take their own)")] = "kade/",
    leader_ttl: Annotated[float, typer.Option(
        envvar="KADE_LEADER_TTL", min=1.0, max=60.0,
        help="seconds a dead leader is waited for before another server leads")] = 3.0,
    api_addr: o.ListenApi = "127.0.0.1:7400",
    ports: o.Ports = "31000-32000",
    tls_cert: o.TlsCert = None,
    tls_key: o.TlsKey = None,
    api_host: o.ApiHost = None,
    cors_origin: o.CorsOrigin = None,
    insecure_i_know: o.InsecureIKnow = False,
    deploy: o.Deploy = None,
    seed_kv: o.SeedKv = None,
    log_level: o.LogLevel = "info",
    allow_privileged: o.AllowPrivileged = False,
    allow_caps: o.AllowCaps = "",
    allow_host_namespaces: o.AllowHostNamespaces = False,
    allow_unconfined: o.AllowUnconfined = False,
    allow_devices: o.AllowDevices = False,
    allow_sysctls: o.AllowSysctls = False,
    allow_host_paths: o.AllowHostPaths = "",
    allow_docker_socket: o.AllowDockerSocket = False,
    allow_root_commands: o.AllowRootCommands = False,
    alert_webhook: o.AlertWebhook = None,
    alertmanager: o.AlertmanagerUrl = None,
    builtin_alerts: o.BuiltinAlerts = True,
    metrics_interval: o.MetricsInterval = "10s",
    alert_interval: o.AlertInterval = "10s",
) -> None:
    """Run a server of a cluster: the API and the control loops, no tasks of its own."""
    import uvloop

    from kade.addresses import split_addr
    from kade.cli.server import ServerConfig, serve_server
    from kade.cli.up import check_api_exposure

    try:
        split_addr(api_addr)
        port_range = o.port_range(ports)
        check_api_exposure(api_addr, tls_cert, tls_key, insecure_i_know)
        policy = o.container_policy(
            allow_privileged=allow_privileged, allow_caps=allow_caps,
            allow_host_namespaces=allow_host_namespaces, allow_unconfined=allow_unconfined,
            allow_devices=allow_devices, allow_sysctls=allow_sysctls,
            allow_host_paths=allow_host_paths, allow_docker_socket=allow_docker_socket,
            allow_root_commands=allow_root_commands)
        monitoring = o.monitoring(alert_webhook, alertmanager, metrics_interval, alert_interval)
    except ValueError as e:
        fail(str(e), 2)
    _logging(log_level)
    uvloop.run(serve_server(ServerConfig(
        data_dir=data_dir or default_data_dir(), name=name or socket.gethostname(),
        api_addr=api_addr, port_range=port_range, tls_cert=tls_cert, tls_key=tls_key,
        api_hosts=list(api_host or []), cors_origins=list(cors_origin or []), policy=policy,
        deploy=list(deploy or []), seed_kv=list(seed_kv or []),
        etcd=[u.strip() for u in (etcd or "").split(",") if u.strip()], leader_ttl=leader_ttl,
        etcd_prefix=etcd_prefix, alert_webhooks=monitoring.webhooks,
        alertmanagers=monitoring.alertmanagers, builtin_alerts=builtin_alerts,
        metrics_interval=monitoring.metrics_interval,
        alert_interval=monitoring.alert_interval)))


def agent(
    servers: Annotated[str, typer.Option(
        envvar="KADE_SERVERS", help="the servers' API URLs, comma-separated "
                                    "(http://10.0.0.1:7400,...)")],
    token_file: Annotated[Path | None, typer.Option(
        envvar="KADE_TOKEN_FILE",
        help="a file holding a node token (a server writes node.token in its data dir); "
             "or set KADE_TOKEN")] = None,
    cacert: Annotated[Path | None, typer.Option(
        envvar="KADE_CACERT", help="CA certificate of servers served over HTTPS")] = None,
    data_dir: o.DataDir = None,
    node: o.Node = None,
    attr: o.Attr = None,
    advertise: o.Advertise = "127.0.0.1",
    driver: o.DriverOpt = "auto",
    publish_ip: o.PublishIp = "0.0.0.0",
    ports: Annotated[str | None, typer.Option(
        envvar="KADE_PORTS", help="host port range for this node's tasks (agents sharing a "
                                  "machine each take their own) [default: the servers']")]
    = None,
    node_ttl: Annotated[float, typer.Option(
        envvar="KADE_NODE_TTL", min=2.0, max=300.0,
        help="seconds without contact with the servers before this node counts as down")]
    = 10.0,
    dns_addr: o.DnsAddr = "127.0.0.1:8600",
    domain: o.Domain = "consul",
    http_addr: o.HttpAddr = "127.0.0.1:8080",
    router_admin_addr: o.RouterAdminAddr = "127.0.0.1:8081",
    router: o.RouterOn = True,
    access_log: o.AccessLog = None,
    https_addr: o.HttpsAddr = None,
    https_cert_dir: o.HttpsCertDir = None,
    router_admin_public: o.RouterAdminPublic = False,
    listen: Annotated[str | None, typer.Option(
        envvar="KADE_LISTEN", help="ADDR:PORT where the servers ask this node for its tasks' "
                                   "logs and metrics (requests signed by a server only) "
                                   "[default: off]")]
    = None,
    log_level: o.LogLevel = "info",
    allow_root_commands: o.AllowRootCommands = False,
    metrics_interval: o.MetricsInterval = "10s",
) -> None:
    """Run a node of a cluster: its tasks, DNS and router, following the servers."""
    import uvloop

    from kade.addresses import split_addr
    from kade.admission import ContainerPolicy
    from kade.admission.nodes import NodeRequestError, check_node_name, parse_attributes
    from kade.auth.tokens import read_token_file
    from kade.cli.agent import AgentRoleConfig, serve_agent
    from kade.cli.node_side import NodeConfig
    from kade.router.main import check_admin_addr

    urls = [u.strip().rstrip("/") for u in servers.split(",") if u.strip()]
    try:
        if not urls:
            raise ValueError("--servers: name at least one server URL")
        for url in urls:
            scheme, sep, rest = url.partition("://")
            if scheme not in ("http", "https") or not sep:
                raise ValueError(f"--servers: {url!r} must start with http:// or https://")
            split_addr(rest.split("/", 1)[0])
        if listen is not None:
            try:
                split_addr(listen)
            except ValueError as e:
                raise ValueError(f"--listen: {e}") from None
        for addr in (dns_addr, http_addr, router_admin_addr, https_addr):
            if addr is not None:
                split_addr(addr)
        check_admin_addr(router_admin_addr, router_admin_public,
                         flags=("--router-admin-addr", "--router-admin-public"))
        if node:
            check_node_name(node, "--node")
        attributes = parse_attributes(attr or [])
        port_range = o.port_range(ports) if ports else None
        from kade.admission.alerting import check_interval
        collect_every = check_interval(metrics_interval, "--metrics-interval")
    except NodeRequestError as e:
        fail("; ".join(e.problems), 2)
    except ValueError as e:
        fail(str(e), 2)
    token = os.environ.get("KADE_TOKEN", "").strip() or (
        read_token_file(token_file) if token_file else None)
    if not token:
        fail("a node token is needed: --token-file FILE or KADE_TOKEN "
             "(`kade token create --role node` makes one)", 2)
    assert token is not None
    _logging(log_level)
    ncfg = NodeConfig(
        data_dir=data_dir or default_data_dir(), node=node or socket.gethostname(),
        advertise=advertise, driver=driver, publish_ip=publish_ip, attributes=attributes,
        policy=ContainerPolicy(allow_root_commands=allow_root_commands), dns_addr=dns_addr,
        domain=domain, router=router, http_addr=http_addr, router_admin_addr=router_admin_addr,
        access_log=access_log, https_addr=https_addr, https_cert_dir=https_cert_dir,
        router_admin_public=router_admin_public, api_url=",".join(urls), api_cacert=cacert,
        port_range=port_range, node_ttl=node_ttl, listen=listen,
        metrics_interval=collect_every)
    uvloop.run(serve_agent(AgentRoleConfig(servers=urls, token=token, node=ncfg, cacert=cacert)))
