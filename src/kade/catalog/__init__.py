"""Service discovery's source of truth: healthy endpoints derived from tasks.

`build_catalog` is the pure core; `CatalogView` keeps one current from the store and serves
blocking waits to the Consul-compatible API, DNS and the router.
"""

from kade.catalog.build import (
    NAME_LABEL,
    TAGS_LABEL,
    build_catalog,
    check_app,
    check_service_name,
    default_service_name,
    service_name,
)
from kade.catalog.model import Catalog, CatalogNode, Check, Instance, Status
from kade.catalog.view import CatalogView

__all__ = [
    "NAME_LABEL", "TAGS_LABEL", "Catalog", "CatalogNode", "CatalogView", "Check", "Instance",
    "Status", "build_catalog", "check_app", "check_service_name", "default_service_name",
    "service_name",
]
