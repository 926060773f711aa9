"""Sandboxed rendering of configuration from the KV tree and the catalog (consul-template's
job), as pure functions of a snapshot; see docs/configuration.md for the syntax. Templates
of others compile and render through `isolate`: in worker processes, with limits."""

from kade.templates.changes import affected_templates, parse_env_file, render_due
from kade.templates.isolate import (
    TemplateLimits,
    TemplateWorkers,
    check_templates,
    check_templates_async,
    default_workers,
    set_default_limits,
)
from kade.templates.kvdata import KV_VALUES, decode_kv_value, encode_kv_value
from kade.templates.limits import SizeError
from kade.templates.lookups import Reads, ServiceEndpoint
from kade.templates.render import (
    InlineTemplate,
    MissingKeyError,
    Rendered,
    TemplateError,
    TemplateSource,
    check_template,
    render,
)
from kade.templates.values import FunctionError

__all__ = [
    "KV_VALUES", "FunctionError", "InlineTemplate", "MissingKeyError", "Reads", "Rendered",
    "ServiceEndpoint", "SizeError", "TemplateError", "TemplateLimits", "TemplateSource",
    "TemplateWorkers", "affected_templates", "check_template", "check_templates",
    "check_templates_async", "decode_kv_value", "default_workers", "encode_kv_value",
    "parse_env_file", "render", "render_due", "set_default_limits",
]
