"""Sandboxed rendering of configuration from the KV tree and the catalog (consul-template's
job), as pure functions of a snapshot; see docs/configuration.md for the syntax."""

from kade.templates.changes import affected_templates, parse_env_file, render_due
from kade.templates.kvdata import (
    apply_kv_events,
    decode_kv_value,
    encode_kv_value,
    kv_snapshot,
)
from kade.templates.lookups import Reads, ServiceEndpoint
from kade.templates.render import (
    InlineTemplate,
    MissingKeyError,
    Rendered,
    TemplateError,
    TemplateSource,
    check_template,
    check_templates,
    render,
)
from kade.templates.values import FunctionError

__all__ = [
    "FunctionError", "InlineTemplate", "MissingKeyError", "Reads", "Rendered",
    "ServiceEndpoint", "TemplateError", "TemplateSource", "affected_templates",
    "apply_kv_events", "check_template", "check_templates", "decode_kv_value",
    "encode_kv_value", "kv_snapshot", "parse_env_file", "render", "render_due",
]
