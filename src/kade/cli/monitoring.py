"""`kade top`, `kade metrics`, `kade alerts`, `kade alert-rules`: metrics and alerts from the
terminal, through the API (Prometheus' query API and `/v1/alerts`).

    kade top                              live: per task CPU %, memory, network, req/s, errors
    kade metrics /shop/web --since 6h cpu a trend: a sparkline per task, min/avg/max/last
    kade alerts                           pending, firing and resolved alerts
    kade alert-rules apply -f rules.yaml  the cluster-wide rules (kade's or Prometheus' shape)
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kade.addresses import parse_duration
from kade.cli.console import LazyConsole, make_table
from kade.cli.console import call as _call
from kade.cli.console import fail as _fail
from kade.client import Client

console = LazyConsole()
alert_rules_app = typer.Typer(no_args_is_help=True, add_completion=False,
                              help="Apply, list and delete cluster-wide alert rules.")

ApiAddr = Annotated[str | None, typer.Option(
    "--api-addr", envvar="KADE_ADDR", help="API address [default: 127.0.0.1:7400]")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
BARS = "▁▂▃▄▅▆▇█"

# What `kade metrics` and `kade top` show: name → (PromQL by app and task, unit)
SHOWN: dict[str, tuple[str, str]] = {
    "cpu": ("sum by (app, task) (rate(kade_task_cpu_seconds_total{sel}[1m])) * 100", "%"),
    "memory": ("sum by (app, task) (kade_task_memory_working_set_bytes{sel})", "B"),
    "network": ("sum by (app, task) (rate(kade_task_network_receive_bytes_total{sel}[1m]) "
                "+ rate(kade_task_network_transmit_bytes_total{sel}[1m]))", "B/s"),
    "requests": ("sum by (app) (rate(kade_service_requests_total{sel}[1m]))", "/s"),
    "errors": ('sum by (app) (rate(kade_service_requests_total{sel_5xx}[1m]))', "/s"),
    "p99": ("histogram_quantile(0.99, sum by (app, le) "
            "(rate(kade_service_request_duration_seconds_bucket{sel}[1m])))", "s"),
}


def promql(name: str, app: str | None) -> str:
    text = SHOWN[name][0]
    sel = f'app="{app}"' if app else ""
    return (text.replace("{sel_5xx}", "{" + ",".join(x for x in (sel, 'code="5xx"') if x) + "}")
            .replace("{sel}", "{" + sel + "}" if sel else ""))


def human(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit in ("B", "B/s"):
        for suffix in ("", "Ki", "Mi", "Gi", "Ti"):
            if abs(value) < 1024 or suffix == "Ti":
                return f"{value:.1f} {suffix}{unit}" if suffix else f"{value:.0f} {unit}"
            value /= 1024
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f}{unit}" if unit == "%" else f"{value:.2f}{unit}"


def sparkline(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = high - low or 1.0
    return "".join(" " if not math.isfinite(v) else BARS[int((v - low) / span * 7)]
                   for v in values)


def _query(client: Client, expr: str) -> list[dict[str, Any]]:
    data = _call(client.get, "/api/v1/query", query=expr)["data"]
    return data["result"]  # type: ignore[no-any-return]


def top_rows(client: Client, app: str | None) -> list[dict[str, Any]]:
    """One row per task: its CPU, memory, network; its app's requests, errors, p99."""
    tasks: dict[tuple[str, str], dict[str, Any]] = {}
    apps: dict[str, dict[str, float]] = {}
    for name in SHOWN:
        for r in _query(client, promql(name, app)):
            labels, value = r["metric"], float(r["value"][1])
            if "task" in labels:
                row = tasks.setdefault((labels.get("app", ""), labels["task"]),
                                       {"app": labels.get("app", ""), "task": labels["task"]})
                row[name] = value
            else:
                apps.setdefault(labels.get("app", ""), {})[name] = value
    rows = []
    for (app_id, _), row in sorted(tasks.items()):
        rows.append({**row, **apps.get(app_id, {})})
    return rows


def top(app: Annotated[str | None, typer.Argument(help="only this app")] = None,
        interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
        once: Annotated[bool, typer.Option("--once", help="print once and stop")] = False,
        api_addr: ApiAddr = None, as_json: AsJson = False) -> None:
    """Live per task: CPU %, memory, network, and its app's requests/s, errors/s and p99."""
    client = Client(api_addr)
    while True:
        rows = top_rows(client, app)
        if as_json:
            sys.stdout.write(json.dumps(rows) + "\n")
        else:
            table = make_table("APP", "TASK", "CPU", "MEMORY", "NET", "REQ/S", "ERR/S", "P99")
            for r in rows:
                table.add_row(r["app"], r["task"], *(human(r.get(k, math.nan), SHOWN[k][1])
                                                      for k in SHOWN))
            if not once and sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            console.print(table)
        sys.stdout.flush()
        if once or as_json:
            return
        try:
            time.sleep(max(interval, 0.5))
        except KeyboardInterrupt:
            return


def metrics(
    app: Annotated[str, typer.Argument(help="the app, e.g. /shop/web")],
    what: Annotated[str, typer.Argument(help=f"one of {', '.join(SHOWN)}")] = "cpu",
    since: Annotated[str, typer.Option(help="how far back: 30m, 6h, 7d")] = "1h",
    step: Annotated[str | None, typer.Option(help="seconds between points [default: "
                                             "about 60 points]")] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="any PromQL instead")]
    = None,
    api_addr: ApiAddr = None, as_json: AsJson = False,
) -> None:
    """A metric's trend over time: a sparkline and min/avg/max/last per task (or app)."""
    if query is None and what not in SHOWN:
        _fail(f"what: {what!r} is not one of {', '.join(SHOWN)} (or give --query)")
    try:
        seconds = parse_duration(since, "since")
        width = parse_duration(step, "step") if step else max(seconds / 60, 10)
    except ValueError as e:
        _fail(str(e))
    end = time.time()
    expr = query or promql(what, app)
    data = _call(Client(api_addr).get, "/api/v1/query_range", query=expr,
                 start=f"{end - seconds:.3f}", end=f"{end:.3f}", step=f"{width:g}")["data"]
    if as_json:
        sys.stdout.write(json.dumps(data["result"]) + "\n")
        return
    unit = SHOWN[what][1] if query is None else ""
    table = make_table("SERIES", "TREND", "MIN", "AVG", "MAX", "LAST")
    for series in data["result"]:
        values = [float(v) for _, v in series["values"]]
        finite = [v for v in values if math.isfinite(v)] or [math.nan]
        name = series["metric"].get("task") or series["metric"].get("app") or json.dumps(
            series["metric"])
        table.add_row(name, sparkline(values), human(min(finite), unit),
                      human(sum(finite) / len(finite), unit), human(max(finite), unit),
                      human(values[-1] if values else math.nan, unit))
    if not data["result"]:
        sys.stdout.write(f"no samples of {expr} in the last {since}\n")
        return
    console.print(table)


def alerts(state: Annotated[str | None, typer.Option(help="pending, firing or resolved")]
           = None,
           app: Annotated[str | None, typer.Option(help="only this app's")] = None,
           api_addr: ApiAddr = None, as_json: AsJson = False) -> None:
    """Alerts: pending, firing and recently resolved, since when, with their value."""
    got = _call(Client(api_addr).get, "/v1/alerts", state=state, app=app)["alerts"]
    if as_json:
        sys.stdout.write(json.dumps(got, indent=2) + "\n")
        return
    table = make_table("STATE", "ALERT", "LABELS", "VALUE", "SINCE", "SUMMARY")
    for a in got:
        labels = a["labels"]
        since = a["resolved_at"] or a["fired_at"] or a["active_at"]
        shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
        value = "" if a["value"] is None else f"{a['value']:g}"
        table.add_row(a["state"], labels.get("alertname", ""), shown, value,
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)),
                      a["annotations"].get("summary", ""))
    console.print(table)


@alert_rules_app.command("apply")
def apply_rules(file: Annotated[Path, typer.Option("-f", "--file", help="rules, JSON or YAML")],
                api_addr: ApiAddr = None) -> None:
    """Replace the cluster-wide rules with those of FILE (Prometheus rule files too)."""
    try:
        raw = file.read_bytes()
    except OSError as e:
        _fail(f"{file}: {e.strerror}")
    kind = "application/yaml" if file.suffix in (".yaml", ".yml") else "application/json"
    got = _call(Client(api_addr).request, "PUT", "/v1/alert-rules", content=raw,
                headers={"Content-Type": kind})
    sys.stdout.write(f"applied {len(got['rules'])} rules"
                     + (f", removed {', '.join(got['removed'])}" if got["removed"] else "")
                     + "\n")


@alert_rules_app.command("list")
def list_rules(api_addr: ApiAddr = None, as_json: AsJson = False) -> None:
    """Every rule: cluster-wide, built-in and apps', with why one cannot be evaluated."""
    got = _call(Client(api_addr).get, "/v1/alert-rules")["rules"]
    if as_json:
        sys.stdout.write(json.dumps(got, indent=2) + "\n")
        return
    table = make_table("RULE", "FROM", "EXPR", "FOR", "PROBLEM")
    for r in got:
        rule = r["rule"]
        table.add_row(r["key"], r["source"], rule["expr"], f"{rule.get('for', 0):g}s",
                      r.get("error", ""))
    console.print(table)


@alert_rules_app.command("delete")
def delete_rule(name: str, api_addr: ApiAddr = None) -> None:
    """Delete one cluster-wide rule."""
    _call(Client(api_addr).delete, f"/v1/alert-rules/{name}")
    sys.stdout.write(f"deleted {name}\n")
