"""Request counts, status classes and latency histograms, in Prometheus text format.

The data path touches one small object per request (`Stats.record`); everything else is done
when /metrics is scraped. Stats are kept per router (each router has one service); per-service
figures are the sums over the routers that used the service.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class Stats:
    __slots__ = ("router", "service", "codes", "buckets", "total_seconds", "count")

    def __init__(self, router: str, service: str) -> None:
        self.router = router
        self.service = service
        self.codes = [0, 0, 0, 0, 0, 0]  # index = status // 100
        self.buckets = [0] * (len(BOUNDS) + 1)  # not cumulative; the last one is +Inf
        self.total_seconds = 0.0
        self.count = 0

    def record(self, status: int, seconds: float) -> None:
        self.codes[status // 100 if 100 <= status < 600 else 5] += 1
        self.buckets[bisect_left(BOUNDS, seconds)] += 1
        self.total_seconds += seconds
        self.count += 1

    def add(self, other: Stats) -> None:
        for i, v in enumerate(other.codes):
            self.codes[i] += v
        for i, v in enumerate(other.buckets):
            self.buckets[i] += v
        self.total_seconds += other.total_seconds
        self.count += other.count


@dataclass(frozen=True)
class Gauges:
    revision: int
    routers: int
    route_errors: int
    client_connections: int
    inflight: dict[tuple[str, str], int]  # (service, url) → in-flight requests
    idle_upstream: int
    draining: int


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _histogram(out: list[str], name: str, labels: str, st: Stats) -> None:
    running = 0
    for bound, n in zip(BOUNDS, st.buckets, strict=False):
        running += n
        out.append(f'{name}_bucket{{{labels},le="{bound}"}} {running}')
    out.append(f'{name}_bucket{{{labels},le="+Inf"}} {st.count}')
    out.append(f"{name}_sum{{{labels}}} {st.total_seconds:.6f}")
    out.append(f"{name}_count{{{labels}}} {st.count}")


def render(stats: Iterable[Stats], gauges: Gauges) -> str:
    """The Prometheus text exposition of `stats` (per router) and `gauges`."""
    all_stats = sorted(stats, key=lambda s: (s.router, s.service))
    by_service: dict[str, Stats] = {}
    for st in all_stats:
        if st.service:
            by_service.setdefault(st.service, Stats("", st.service)).add(st)
    out: list[str] = []
    out.append("# HELP kade_router_requests_total Requests by router and status class.")
    out.append("# TYPE kade_router_requests_total counter")
    for st in all_stats:
        for i, cls in enumerate(CLASSES, start=1):
            if st.codes[i]:
                out.append(f'kade_router_requests_total{{router="{_esc(st.router)}",'
                           f'service="{_esc(st.service)}",code="{cls}"}} {st.codes[i]}')
    out.append("# HELP kade_router_request_duration_seconds Time to the end of the response.")
    out.append("# TYPE kade_router_request_duration_seconds histogram")
    for st in all_stats:
        labels = f'router="{_esc(st.router)}",service="{_esc(st.service)}"'
        _histogram(out, "kade_router_request_duration_seconds", labels, st)
    out.append("# HELP kade_service_requests_total Requests by service and status class.")
    out.append("# TYPE kade_service_requests_total counter")
    for name, st in sorted(by_service.items()):
        for i, cls in enumerate(CLASSES, start=1):
            if st.codes[i]:
                out.append(f'kade_service_requests_total{{service="{_esc(name)}",'
                           f'code="{cls}"}} {st.codes[i]}')
    out.append("# HELP kade_service_request_duration_seconds Time to the end of the response.")
    out.append("# TYPE kade_service_request_duration_seconds histogram")
    for name, st in sorted(by_service.items()):
        _histogram(out, "kade_service_request_duration_seconds", f'service="{_esc(name)}"', st)
    out.append("# HELP kade_server_inflight_requests Requests in flight to a server.")
    out.append("# TYPE kade_server_inflight_requests gauge")
    for (service, url), n in sorted(gauges.inflight.items()):
        out.append(f'kade_server_inflight_requests{{service="{_esc(service)}",'
                   f'url="{_esc(url)}"}} {n}')
    simple = [
        ("kade_router_table_revision", "Revision of the routing table in use.", gauges.revision),
        ("kade_router_routers", "Routers in the table in use.", gauges.routers),
        ("kade_router_route_errors", "Routes left out because of an error.", gauges.route_errors),
        ("kade_router_client_connections", "Open client connections.",
         gauges.client_connections),
        ("kade_router_idle_upstream_connections", "Pooled idle upstream connections.",
         gauges.idle_upstream),
        ("kade_router_draining_servers", "Removed servers with requests in flight.",
         gauges.draining),
    ]
    for name, help_text, value in simple:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} gauge")
        out.append(f"{name} {value}")
    return "\n".join(out) + "\n"
