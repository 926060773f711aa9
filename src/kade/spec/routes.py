"""kade's first-class routes of an app (the router's input besides Traefik-style labels)."""

from __future__ import annotations

from pydantic import Field

from kade.spec.base import SpecModel


class RouteSpec(SpecModel):
    rule: str = Field(min_length=1)  # Traefik rule syntax: Host(`a`) && PathPrefix(`/api`)
    name: str | None = None
    priority: int | None = None  # default: the rule's length, as Traefik does
    port_index: int = Field(default=0, ge=0)
