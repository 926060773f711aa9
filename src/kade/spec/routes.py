"""kade's first-class routes of an app (the router's input besides Traefik-style labels).

    "routes": [{"rule": "Host(`www.localhost`) && PathPrefix(`/api`)",
                "name": "shop-api", "priority": 10, "portIndex": 0, "tls": true}]

`ruleSyntax` is "v3" (the default) or "v2": a rule written for Traefik 2 keeps its meaning
(several values per matcher, `{name:regexp}` templates), as in Traefik 3.

A rule is checked when the app is submitted (`kade.admission.admit`, in the route's syntax),
so a typo is an error of the deploy, not a route that silently never matches. docs/routing.md
has the rule syntax.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from kade.spec.base import SpecModel


class RouteSpec(SpecModel):
    # "v2": read the rule as Traefik 2 wrote it (validated first: `rule` depends on it)
    rule_syntax: Literal["v3", "v2"] = "v3"
    rule: str = Field(min_length=1)  # Traefik rule syntax: Host(`a`) && PathPrefix(`/api`)
    # the router's name; default: the app's service name (`/shop/web` → `web-shop`), then -1...
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                             max_length=200)
    priority: int | None = Field(default=None, ge=0)  # 0/None: the rule's length, as Traefik
    port_index: int = Field(default=0, ge=0)  # which of the task's ports receives the requests
    tls: bool = False  # HTTPS only: the router redirects plain HTTP requests (308)

    wire_omit_defaults: ClassVar[frozenset[str]] = frozenset({"rule_syntax"})

    @field_validator("rule")
    @classmethod
    def _rule_parses(cls, value: str, info: ValidationInfo) -> str:
        # the parser is pure and has no dependencies: importing it here keeps one grammar
        from kade.router.rules import RuleError, parse_rule

        try:
            parse_rule(value, info.data.get("rule_syntax", "v3"))
        except RuleError as e:
            # Only what no syntax would take is refused here. A matcher or value that does not
            # fit the route's syntax still loads, so that an app stored before these checks
            # stays readable (the routing table reports its route); admission refuses it.
            if e.grammar:
                raise ValueError(str(e)) from None
        return value
