"""Rules every kade has without configuring anything: PromQL over kade's own series
(kade.metrics.cluster), evaluated like an operator's rules. `--no-builtin-alerts` turns
them off; a cluster-wide rule of the same name replaces one."""

from __future__ import annotations

from kade.spec.alerts import AlertRule

BUILTIN: tuple[AlertRule, ...] = tuple(AlertRule.model_validate(r) for r in (
    {"name": "KadeTaskCrashLooping",
     "expr": "increase(kade_app_task_failures_total[10m]) >= 3",
     "annotations": {"summary": "tasks of {{ $labels.app }} keep failing: "
                                "{{ printf \"%.0f\" $value }} in 10 minutes"}},
    {"name": "KadeAppBelowHealthy",
     "expr": 'kade_app_tasks{state="healthy"} < ignoring(state) kade_app_instances '
             "and ignoring(state) kade_app_instances > 0",
     "for": "5m",
     "annotations": {"summary": "{{ $labels.app }} has {{ $value }} healthy tasks, fewer "
                                "than it wants"}},
    {"name": "KadeDeploymentFailed",
     "expr": 'increase(kade_deployments_total{status="failed"}[15m]) > 0 '
             'or increase(kade_deployments_total{kind="rollback",status="succeeded"}[15m]) > 0',
     "annotations": {"summary": "a deployment of {{ $labels.app }} ended {{ $labels.status }} "
                                "({{ $labels.kind }})"}},
    {"name": "KadeNodeDown",
     "expr": "kade_node_up == 0",
     "for": "1m",
     "annotations": {"summary": "node {{ $labels.node }} is down: its agent stopped keeping "
                                "its lease"}},
    {"name": "KadeDiskNearlyFull",
     "expr": "kade_disk_free_bytes / kade_disk_size_bytes",
     "op": "below", "warn": 0.1, "crit": 0.05, "for": "5m",
     "annotations": {"summary": "the disk under kade's {{ $labels.store }} data has "
                                "{{ printf \"%.1f\" $value }} of its space free"}},
))
