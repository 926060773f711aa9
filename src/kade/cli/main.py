"""The `kade` command: tables for people, `--json` for scripts."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kade.cli import monitoring, quick, roles
from kade.cli import options as o
from kade.cli.console import LazyConsole, make_table
from kade.cli.console import call as _call
from kade.cli.console import fail as _fail
from kade.cli.domain_events import domain_events_app, ingest_config
from kade.cli.kv import kv_app, render_command
from kade.cli.logs import logs as logs_command
from kade.cli.nodes import node_app
from kade.cli.nodes import nodes as nodes_command
from kade.cli.token import token_app
from kade.client import Client, ClientError
from kade.client.http import default_data_dir

# Only what every command needs is imported here: rich, the spec model, the servers come
# where they are used, so `kade apps` is over in a tenth of a second (docs/benchmarks.md).

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="kade: deploy, scale, configure, discover, route to and update containers.")
app.command()(roles.server)
app.command()(roles.agent)
console = LazyConsole()
err = LazyConsole(stderr=True)

ApiAddr = Annotated[str | None, typer.Option(
    "--api-addr", envvar="KADE_ADDR",
    help="API address of a running kade [default: 127.0.0.1:7400]")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
EVENTS = "Domain events (docs/domain-events.md)"


def _client(addr: str | None) -> Client:
    return Client(addr)






def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command()
def up(
    data_dir: o.DataDir = None,
    api_addr: o.ListenApi = "127.0.0.1:7400",
    node: o.Node = None,
    attr: o.Attr = None,
    advertise: o.Advertise = "127.0.0.1",
    driver: o.DriverOpt = "auto",
    publish_ip: o.PublishIp = "0.0.0.0",
    ports: o.Ports = "31000-32000",
    deploy: o.Deploy = None,
    dns_addr: o.DnsAddr = "127.0.0.1:8600",
    domain: o.Domain = "consul",
    http_addr: o.HttpAddr = "127.0.0.1:8080",
    router_admin_addr: o.RouterAdminAddr = "127.0.0.1:8081",
    router: o.RouterOn = True,
    access_log: o.AccessLog = None,
    seed_kv: o.SeedKv = None,
    log_level: o.LogLevel = "info",
    tls_cert: o.TlsCert = None,
    tls_key: o.TlsKey = None,
    api_host: o.ApiHost = None,
    cors_origin: o.CorsOrigin = None,
    https_addr: o.HttpsAddr = None,
    https_cert_dir: o.HttpsCertDir = None,
    router_admin_public: o.RouterAdminPublic = False,
    insecure_i_know: o.InsecureIKnow = False,
    allow_privileged: o.AllowPrivileged = False,
    allow_caps: o.AllowCaps = "",
    allow_host_namespaces: o.AllowHostNamespaces = False,
    allow_unconfined: o.AllowUnconfined = False,
    allow_devices: o.AllowDevices = False,
    allow_sysctls: o.AllowSysctls = False,
    allow_host_paths: o.AllowHostPaths = "",
    allow_docker_socket: o.AllowDockerSocket = False,
    allow_root_commands: o.AllowRootCommands = False,
    events_amqp: Annotated[str | None, typer.Option(
        envvar="KADE_EVENTS_AMQP", help="RabbitMQ to consume domain events from: amqp://user:"
        "pass@host[:port]/ (host NAME.service.DOMAIN: a broker kade runs)",
        rich_help_panel=EVENTS)] = None,
    events_bind: Annotated[list[str] | None, typer.Option(
        envvar="KADE_EVENTS_BIND", help="exchange:routing.key,... to consume [default: events:#]",
        rich_help_panel=EVENTS)] = None,
    events_config: Annotated[Path | None, typer.Option(
        envvar="KADE_EVENTS_CONFIG", help="bindings, queue, prefetch as JSON/YAML",
        rich_help_panel=EVENTS)] = None,
    alert_webhook: o.AlertWebhook = None,
    alertmanager: o.AlertmanagerUrl = None,
    builtin_alerts: o.BuiltinAlerts = True,
    metrics_interval: o.MetricsInterval = "10s",
    alert_interval: o.AlertInterval = "10s",
) -> None:
    """Run the control plane and an agent in the foreground (the router in its own process)."""
    import uvloop

    from kade.addresses import split_addr
    from kade.admission.nodes import NodeRequestError, check_node_name, parse_attributes
    from kade.cli.up import UpConfig, check_api_exposure, log_handler, serve
    from kade.router.main import check_admin_addr

    logging.basicConfig(level=log_level.upper(), format="%(message)s",
                        handlers=[log_handler(err.rich)])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise
    try:
        for addr in (api_addr, dns_addr, http_addr, router_admin_addr, https_addr):
            if addr is not None:
                split_addr(addr)
        port_range = o.port_range(ports)
        check_api_exposure(api_addr, tls_cert, tls_key, insecure_i_know)
        check_admin_addr(router_admin_addr, router_admin_public,
                         flags=("--router-admin-addr", "--router-admin-public"))
        if node:
            check_node_name(node, "--node")
        attributes = parse_attributes(attr or [])
        policy = o.container_policy(
            allow_privileged=allow_privileged, allow_caps=allow_caps,
            allow_host_namespaces=allow_host_namespaces, allow_unconfined=allow_unconfined,
            allow_devices=allow_devices, allow_sysctls=allow_sysctls,
            allow_host_paths=allow_host_paths, allow_docker_socket=allow_docker_socket,
            allow_root_commands=allow_root_commands)
        events = ingest_config(events_amqp, list(events_bind or []), events_config)
        monitoring = o.monitoring(alert_webhook, alertmanager, metrics_interval, alert_interval)
    except NodeRequestError as e:
        _fail("; ".join(e.problems), 2)
    except ValueError as e:
        _fail(str(e), 2)
    cfg = UpConfig(data_dir=data_dir or default_data_dir(), api_addr=api_addr,
                   advertise=advertise, driver=driver, publish_ip=publish_ip,
                   port_range=port_range, deploy=list(deploy or []), dns_addr=dns_addr,
                   domain=domain, router=router, http_addr=http_addr,
                   router_admin_addr=router_admin_addr, access_log=access_log,
                   seed_kv=list(seed_kv or []), tls_cert=tls_cert, tls_key=tls_key,
                   api_hosts=list(api_host or []), cors_origins=list(cors_origin or []),
                   policy=policy, https_addr=https_addr, https_cert_dir=https_cert_dir,
                   router_admin_public=router_admin_public, attributes=attributes,
                   events=events, alert_webhooks=monitoring.webhooks,
                   alertmanagers=monitoring.alertmanagers, builtin_alerts=builtin_alerts,
                   metrics_interval=monitoring.metrics_interval,
                   alert_interval=monitoring.alert_interval)
    if node:
        cfg.node = node
    uvloop.run(serve(cfg))


@app.command()
def down(
    stop_tasks: Annotated[bool, typer.Option("--stop-tasks", help="stop every task too")] = False,
    api_addr: ApiAddr = None,
) -> None:
    """Stop a running `kade up` (tasks keep running unless --stop-tasks)."""
    result = _call(_client(api_addr).post, "/v1/admin/shutdown",
                   params={"stopTasks": str(stop_tasks).lower()})
    console.print(result.get("message", "ok"))


def _read_apps(file: Path) -> list[Any]:
    from kade.spec import SpecError, load_document

    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
        data = load_document(text, file.name)
    except OSError as e:
        _fail(f"cannot read {file}: {e.strerror}")
    except SpecError as e:
        _fail(f"{file}: {e}")
    items = data if isinstance(data, list) else [data]
    base = file.parent
    for item in items:
        if isinstance(item, dict):
            for tpl in item.get("templates") or []:
                # A template given as a file is read here, relative to the app definition.
                if isinstance(tpl, dict) and "file" in tpl and "source" not in tpl:
                    path = base / str(tpl.pop("file"))
                    try:
                        tpl["source"] = path.read_text()
                    except OSError as e:
                        _fail(f"template {path}: {e.strerror}")
    return items


@app.command()
def deploy(
    file: Annotated[Path, typer.Option("-f", "--file",
                                       help="app definition, JSON or YAML (- = stdin)")],
    wait: Annotated[bool, typer.Option(help="wait until every task is healthy")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 300,
    plan: Annotated[bool, typer.Option(
        "--plan", help="show what a deploy would change (fields, tasks), change nothing")] = False,
    api_addr: ApiAddr = None,
    as_json: AsJson = False,
) -> None:
    """Create or update apps from a Marathon app definition."""
    client = _client(api_addr)
    results = []
    for item in _read_apps(file):
        app_id = item.get("id") if isinstance(item, dict) else None
        if not app_id:
            _fail(f"{file}: id: is required")
        if plan:
            from kade.cli.plan import plan_lines
            answer = _call(client.request, "POST", f"/v1/apps/{str(app_id).strip('/')}/plan",
                           json=item)
            results.append(answer)
            if not as_json:
                for line in plan_lines(answer):
                    console.print(line, highlight=False, markup=False)
            continue
        result = _call(client.request, "PUT", f"/v1/apps/{str(app_id).strip('/')}", json=item)
        results.append(result)
        for warning in result.get("warnings", []):
            err.print(f"[yellow]warning:[/yellow] {result['id']}: {warning}", highlight=False)
        if not as_json:
            what = "updated" if result.get("changed") else "unchanged"
            console.print(f"{result['id']}: {what} (version {result['version']})")
    if as_json:
        _print_json(results)
    if wait and not plan:
        failed = [r["id"] for r in results
                  if not _follow_deployment(client, r["id"], r["version"], timeout, as_json)]
        if failed:
            _fail(f"deployment failed: {', '.join(failed)}")


def _follow_deployment(client: Client, app_id: str, version: str, timeout: float,
                       quiet: bool) -> bool:
    """Show a deployment's progress until it ends; True when it succeeded."""
    from rich.progress import BarColumn, Progress, TextColumn

    deps = _call(client.get, "/v1/deployments", app=app_id)["deployments"]
    dep = next((d for d in deps if d["version"] == version), None)
    if dep is None:  # nothing to roll out: the app was unchanged
        return True
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} healthy {task.fields[extra]}"),
                  console=err.rich, disable=quiet, transient=False) as bar:
        task = bar.add_task(f"{app_id} {dep['kind']}", total=max(dep["progress"]["instances"],
                                                                  1), extra="")
        while True:
            dep = _call(client.get, f"/v1/deployments/{dep['id']}")["deployment"]
            p = dep["progress"]
            extra = f"({p['old']} old left)" if p["old"] else ""
            bar.update(task, completed=p["healthy"], total=max(p["instances"], 1), extra=extra)
            if dep["status"] != "running":
                break
            if time.monotonic() > deadline:
                err.print(f"{app_id}: still deploying after {timeout:.0f}s (deployment "
                          f"{dep['id']} goes on; `kade deployments` shows it)")
                return False
            time.sleep(0.1)
    if dep["status"] == "succeeded":
        if not quiet:
            console.print(f"{app_id}: version {version} is live")
        return True
    err.print(f"[red]{app_id}: deployment {dep['status']}:[/red] {dep['message']}",
              highlight=False)
    return False


@app.command()
def deployments(
    all_: Annotated[bool, typer.Option("--all", help="finished ones too")] = False,
    api_addr: ApiAddr = None,
    as_json: AsJson = False,
) -> None:
    """List deployments with their progress."""
    data = _call(_client(api_addr).get, "/v1/deployments", all=str(all_).lower())
    if as_json:
        _print_json(data["deployments"])
        return
    table = make_table("ID", "APP", "KIND", "VERSION", "STATUS", "HEALTHY", "OLD LEFT", "STARTED",
                  "MESSAGE")
    for d in data["deployments"]:
        p = d["progress"]
        table.add_row(d["id"], d["appId"], d["kind"], d["version"] or "", d["status"],
                      f"{p['healthy']}/{p['instances']}", str(p["old"]), d["startedAt"],
                      d["message"])
    console.print(table)


@app.command()
def cancel(deployment_id: str,
           force: Annotated[bool, typer.Option(help="stop it without rolling back")] = False,
           api_addr: ApiAddr = None) -> None:
    """Cancel a running deployment: the app goes back to the version it came from."""
    result = _call(_client(api_addr).delete, f"/v1/deployments/{deployment_id}",
                   force=str(force).lower())
    if "rolledBackTo" in result:
        console.print(f"rolling back to {result['rolledBackTo']} (version {result['version']})")
    else:
        console.print(f"deployment {deployment_id} cancelled")


@app.command()
def rollback(
    app_id: str,
    version: Annotated[str | None, typer.Argument(help="default: the last other spec")] = None,
    wait: bool = True, timeout: float = 300, api_addr: ApiAddr = None,
) -> None:
    """Roll an app back to an earlier version (as a new version, rolled out like any other)."""
    client = _client(api_addr)
    params = {"version": version} if version else {}
    result = _call(client.post, _app_path(app_id) + "/rollback", params=params)
    console.print(f"{app_id}: rolling back (new version {result['version']})")
    if wait and not _follow_deployment(client, result["app"]["id"], result["version"], timeout,
                                       False):
        _fail("rollback failed")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def router(ctx: typer.Context) -> None:
    """Run the router in the foreground (`kade up` starts one itself); --help for options."""
    from kade.router.__main__ import main as router_main

    router_main(list(ctx.args))


@app.command()
def apps(api_addr: ApiAddr = None, as_json: AsJson = False) -> None:
    """List apps: instances running/healthy/wanted, and status."""
    quick.show(_call(_client(api_addr).get, "/v1/apps")["apps"], as_json, quick.apps_table)


@app.command()
def tasks(
    app_id: Annotated[str | None, typer.Argument(help="only this app's tasks")] = None,
    api_addr: ApiAddr = None,
    as_json: AsJson = False,
) -> None:
    """List tasks: state, health, host:ports, container, started."""
    data = _call(_client(api_addr).get, "/v1/tasks", app=app_id)["tasks"]
    quick.show(data, as_json, quick.tasks_table)


def _app_path(app_id: str) -> str:
    return "/v1/apps/" + app_id.strip("/")


@app.command()
def scale(app_id: str, instances: int, api_addr: ApiAddr = None) -> None:
    """Set an app's number of instances."""
    if instances < 0:
        _fail("instances: must be >= 0", 2)
    result = _call(_client(api_addr).post, _app_path(app_id) + "/scale", {"instances": instances})
    console.print(f"{result['app']['id']}: scaled to {instances} (version {result['version']})")


@app.command()
def restart(app_id: str, api_addr: ApiAddr = None) -> None:
    """Replace every task of an app with a fresh one."""
    result = _call(_client(api_addr).post, _app_path(app_id) + "/restart")
    console.print(f"{result['app']['id']}: restarting (version {result['version']})")


@app.command()
def destroy(app_id: str, api_addr: ApiAddr = None) -> None:
    """Remove an app and stop its tasks."""
    _call(_client(api_addr).delete, _app_path(app_id))
    console.print(f"{app_id}: destroyed")


@app.command()
def show(app_id: str, api_addr: ApiAddr = None) -> None:
    """Print an app as JSON, with its tasks."""
    _print_json(_call(_client(api_addr).get, _app_path(app_id))["app"])


@app.command()
def versions(app_id: str, api_addr: ApiAddr = None) -> None:
    """List an app's stored versions, newest first."""
    for v in _call(_client(api_addr).get, _app_path(app_id) + "/versions")["versions"]:
        console.print(v)


@app.command()
def diff(app_id: str, old: str | None = None, new: str | None = None,
         api_addr: ApiAddr = None) -> None:
    """Show what changed between two versions (default: the last two)."""
    text = _call(_client(api_addr).get, _app_path(app_id) + "/diff", **{"from": old, "to": new})
    sys.stdout.write(text or "(no differences)\n")


@app.command()
def kill(task_id: str, scale: Annotated[bool, typer.Option(help="lower the instance count")]
         = False, api_addr: ApiAddr = None) -> None:
    """Stop one task (it is replaced unless --scale)."""
    _call(_client(api_addr).delete, f"/v1/tasks/{task_id}", scale=str(scale).lower())
    console.print(f"{task_id}: killing")


@app.command("ui")
def ui(api_addr: ApiAddr = None) -> None:
    """Print a link that signs a browser in to the web interface: once, within 60 s, with a
    session of the token this command uses (the local management token by default)."""
    link = _call(_client(api_addr).post, "/v1/ui/login-links")
    err.print(f"open it within {link['expiresInSeconds']:.0f} s; it signs in once",
              highlight=False)
    sys.stdout.write(link["url"] + "\n")


@app.command()
def events(api_addr: ApiAddr = None) -> None:
    """Follow the event stream (server-sent events)."""
    _copy_stream(api_addr, "/v1/events")


def _copy_stream(api_addr: str | None, path: str, **params: Any) -> None:
    """Copy a streamed answer to stdout as it comes, until it ends or Ctrl-C."""
    try:
        for chunk in _client(api_addr).stream(path, **params):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    except ClientError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        pass


app.add_typer(kv_app, name="kv", help="Read and write the KV tree (Consul's KV).")
app.add_typer(token_app, name="token", help="Make, list and revoke API tokens.")
app.command("nodes")(nodes_command)
app.add_typer(node_app, name="node", help="Drain nodes and set their eligibility.")
app.add_typer(domain_events_app, name="domain-events")
app.command("top")(monitoring.top)
app.command("metrics")(monitoring.metrics)
app.command("alerts")(monitoring.alerts)
app.add_typer(monitoring.alert_rules_app, name="alert-rules")
app.command("render")(render_command)
app.command("logs")(logs_command)


def main() -> None:
    """The whole command line (`kade.cli.main` is what an older install's `kade` script
    names: it still answers the quick commands without typer's parsing)."""
    code = quick.answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    app()
