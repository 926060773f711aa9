"""Alert rules: in an app (`"alerts": [...]`) and cluster-wide (`/v1/alert-rules`).

Prometheus' semantics — `expr` (PromQL), `for`, `keepFiringFor`, `labels`, `annotations`
(with `{{ $labels.x }}` and `{{ $value }}`) — plus what Datadog monitors add: `warn`/`crit`
thresholds on the expression's value (`op`: above or below) with a `recovery` level, and
`noData`: an alert when the expression has returned nothing for that long.

    {"name": "HighErrorRate",
     "expr": "sum(rate(kade_service_requests_total{code=\\"5xx\\"}[1m])) / sum(...)",
     "warn": 0.01, "crit": 0.05, "for": "2m", "labels": {"team": "shop"},
     "annotations": {"summary": "{{ $value }} of requests fail"}}
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import promql_parser
from pydantic import Field, field_validator, model_validator

from kade.addresses import parse_duration
from kade.spec.base import SpecModel

MAX_EXPR = 10_000
MAX_LABELS = 32
MAX_TEXT = 4096  # characters of one annotation
MAX_DURATION = 7 * 24 * 3600.0
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_RESERVED = {"alertname", "severity", "alertstate", "nodata"}
_DURATIONS = ("for", "keepFiringFor", "noData")


class AlertRule(SpecModel):
    wire_omit_defaults: ClassVar[frozenset[str]] = frozenset(
        {"for_", "keep_firing_for", "labels", "annotations", "warn", "crit", "recovery", "op",
         "no_data", "webhooks"})

    name: str = Field(min_length=1)
    expr: str = Field(min_length=1, max_length=MAX_EXPR)
    for_: float = Field(default=0, ge=0, le=MAX_DURATION, alias="for")
    keep_firing_for: float = Field(default=0, ge=0, le=MAX_DURATION)
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)
    warn: float | None = None
    crit: float | None = None
    recovery: float | None = None  # with crit: the alert ends only past this level
    op: Literal["above", "below"] = "above"
    no_data: float = Field(default=0, ge=0, le=MAX_DURATION)
    webhooks: list[str] = Field(default_factory=list, max_length=8)

    @model_validator(mode="before")
    @classmethod
    def _durations(cls, data: Any) -> Any:
        """`"for": "2m"` as well as seconds."""
        if isinstance(data, dict):
            data = dict(data)
            for key in _DURATIONS:
                if isinstance(data.get(key), str):
                    try:
                        data[key] = parse_duration(data[key], key)
                    except ValueError as e:
                        raise ValueError(str(e)) from None
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"{value!r} must be letters, digits and _ (a Prometheus alert "
                             "name)")
        return value

    @field_validator("expr")
    @classmethod
    def _expr(cls, value: str) -> str:
        try:
            promql_parser.parse(value)
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"not PromQL: {e}") from None
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not _LABEL.fullmatch(key):
                raise ValueError(f"{key!r} is not a label name (letters, digits and _)")
            if key in _RESERVED:
                raise ValueError(f"{key!r} is set by kade")
            if len(text) > MAX_TEXT:
                raise ValueError(f"{key}: longer than {MAX_TEXT} characters")
        return value

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not _LABEL.fullmatch(key):
                raise ValueError(f"{key!r} is not an annotation name (letters, digits and _)")
            if len(text) > MAX_TEXT:
                raise ValueError(f"{key}: longer than {MAX_TEXT} characters")
        return value

    @field_validator("webhooks")
    @classmethod
    def _webhooks(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url) or len(url) > 2000:
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _levels(self) -> AlertRule:
        if self.recovery is not None and self.crit is None:
            raise ValueError("recovery: needs crit")
        if self.warn is not None and self.crit is not None:
            wrong = self.warn > self.crit if self.op == "above" else self.warn < self.crit
            if wrong:
                raise ValueError(f"warn: must be {'below' if self.op == 'above' else 'above'} "
                                 f"crit when op is {self.op}")
        if self.recovery is not None and self.crit is not None:
            wrong = self.recovery > self.crit if self.op == "above" else self.recovery < self.crit
            if wrong:
                raise ValueError(f"recovery: must be on the good side of crit ({self.op})")
        return self

    @property
    def thresholds(self) -> bool:
        return self.warn is not None or self.crit is not None
