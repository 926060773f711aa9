"""App definitions: Marathon-compatible parsing, validation, defaults and the spec hash."""

from kade.spec.errors import DocumentError, DocumentRefused, SpecError
from kade.spec.model import AppSpec, HealthCheck, PortSpec, UpgradeStrategy
from kade.spec.parse import (
    MAX_ID_LENGTH,
    RESERVED_ID_SEGMENTS,
    Parsed,
    load_document,
    normalize_id,
    parse_app,
    spec_hash,
)

__all__ = [
    "MAX_ID_LENGTH", "RESERVED_ID_SEGMENTS",
    "AppSpec", "DocumentError", "DocumentRefused", "HealthCheck", "Parsed", "PortSpec",
    "SpecError", "UpgradeStrategy", "load_document", "normalize_id", "parse_app", "spec_hash",
]
