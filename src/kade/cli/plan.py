"""`kade deploy -f web.json --plan`: what a deploy would change, in Nomad's `job plan` words."""

from __future__ import annotations

import json
from typing import Any

_SHOWN = 60  # characters of a value; a long one (a template's source) is cut


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """The answer of `POST /v1/apps/<id>/plan` as lines for people."""
    app = plan["app"]
    if not plan["changed"]:
        return [f"{app}: unchanged (a deploy would make no new version)"]
    head = f"+ {app}: new app" if plan["new"] else f"~ {app}: " + (
        "tasks are replaced" if plan["restartsTasks"] else "tasks keep running")
    lines = [head]
    if not plan["new"]:
        for f in plan["fields"]:
            lines.append(f"    {f['path']}: {_value(f['from'])} => {_value(f['to'])}")
        if plan.get("moreFields"):
            lines.append(f"    … and {plan['moreFields']} more field(s)")
    n = plan["instances"]
    counts = [f"{n[k]} {word}" for k, word in (("start", "start"), ("replace", "replaced"),
                                                ("stop", "stop"), ("keep", "kept"))
              if n[k]]
    lines.append("  instances: " + (", ".join(counts) or "none"))
    if n.get("unplaced"):
        lines.append(f"  unplaced: {n['unplaced']} task(s) cannot be placed now: "
                     f"{plan.get('waiting') or 'no node fits'}")
    dep = plan.get("deployment")
    if dep is None:
        lines.append("  no deployment: a new version, the tasks stay as they are")
    else:
        for step in dep["steps"]:
            lines.append(f"  step {step['step']}: {step['description']}")
        if not plan.get("complete", True):
            lines.append(f"  (the rollout takes more than the {len(dep['rounds'])} rounds "
                         "planned here)")
    for warning in plan.get("warnings", []):
        lines.append(f"  warning: {warning}")
    return lines


def _value(v: Any) -> str:
    text = "(none)" if v is None else json.dumps(v, ensure_ascii=False)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 1] + "…"
