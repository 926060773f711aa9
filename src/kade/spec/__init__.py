"""App definitions: Marathon-compatible parsing, validation, defaults and the spec hash."""

from kade.spec.model import AppSpec, HealthCheck, PortSpec, UpgradeStrategy
from kade.spec.parse import Parsed, SpecError, load_document, normalize_id, parse_app, spec_hash

__all__ = [
    "AppSpec", "HealthCheck", "Parsed", "PortSpec", "SpecError", "UpgradeStrategy",
    "load_document", "normalize_id", "parse_app", "spec_hash",
]
