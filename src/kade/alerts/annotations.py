"""An alert's annotations, rendered as Prometheus renders them: Go templates where
`$labels`, `$value` (and `.Labels`, `.Value`) are the alert's. Through kade's template
engine in its worker processes (`kade.templates.isolate`): an annotation is a program of
whoever deployed the rule, bounded in time and size like an app's templates."""

from __future__ import annotations

import math

from kade.templates.isolate import TemplateWorkers
from kade.templates.render import InlineTemplate, TemplateError

_PREFIX = "{{$labels := .Labels}}{{$value := .Value}}"


def render_annotations(workers: TemplateWorkers, annotations: dict[str, str],
                       labels: dict[str, str], value: float | None) -> dict[str, str]:
    """Each annotation's text; one that fails says why in its place (as Prometheus does)."""
    data = {"Labels": labels, "Value": value if value is not None and math.isfinite(value)
            else None}
    out = {}
    for name, text in annotations.items():
        if "{{" not in text:
            out[name] = text
            continue
        try:
            out[name] = workers.render(InlineTemplate(f"annotation {name}", _PREFIX + text),
                                       kv={}, data=data).text
        except TemplateError as e:
            out[name] = f"<error expanding template: {e}>"
    return out
