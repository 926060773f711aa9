"""Admission of cluster-wide alert rules (`PUT /v1/alert-rules`, `kade alert-rules apply -f`):
the whole set at once, as JSON or YAML, in kade's shape or in Prometheus' rule-file shape so
that an existing file applies as it is:

    rules:                                  groups:
      - name: HighErrorRate                   - name: shop
        expr: ...                               rules:
        for: 2m                                   - alert: HighErrorRate
                                                    expr: ...
                                                    for: 2m

Every problem is named by its place (`rules.3.expr: not PromQL: ...`); nothing is stored
unless every rule is good.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kade.admission.admit import parse_body
from kade.spec import SpecError
from kade.spec.alerts import AlertRule
from kade.spec.parse import validation_problems

MAX_RULES = 1000


def admit_rules(raw: bytes, filename: str = "") -> list[AlertRule]:
    data = parse_body(raw, filename=filename)
    items, where = _items(data)
    problems: list[str] = []
    rules: list[AlertRule] = []
    seen: dict[str, str] = {}
    for place, item in zip(where, items, strict=True):
        if not isinstance(item, dict):
            problems.append(f"{place}: must be an object (a rule)")
            continue
        if "record" in item:
            problems.append(f"{place}: recording rules are not supported (only alerts)")
            continue
        if "alert" in item and "name" not in item:  # Prometheus' word for it
            item = {**{k: v for k, v in item.items() if k != "alert"}, "name": item["alert"]}
        try:
            rule = AlertRule.model_validate(item)
        except ValidationError as e:
            problems += validation_problems(e, place)
            continue
        if rule.model_extra:
            problems += [f"{place}.{k}: is not a field of an alert rule" for k in rule.model_extra]
            continue
        if rule.name in seen:
            problems.append(f"{place}.name: {rule.name!r} is also {seen[rule.name]}")
            continue
        seen[rule.name] = place
        rules.append(rule)
    if len(rules) > MAX_RULES:
        problems.append(f"rules: {len(rules)} rules, at most {MAX_RULES}")
    if problems:
        raise SpecError(problems)
    return rules


def _items(data: Any) -> tuple[list[Any], list[str]]:
    if isinstance(data, list):
        return data, [f"rules.{i}" for i in range(len(data))]
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        return data["rules"], [f"rules.{i}" for i in range(len(data["rules"]))]
    if isinstance(data, dict) and isinstance(data.get("groups"), list):
        items, where = [], []
        for g, group in enumerate(data["groups"]):
            if not isinstance(group, dict) or not isinstance(group.get("rules"), list):
                raise SpecError([f"groups.{g}: must have a list of rules"])
            for i, item in enumerate(group["rules"]):
                items.append(dict(item) if isinstance(item, dict) else item)
                where.append(f"groups.{g}.rules.{i}")
        return items, where
    raise SpecError(["body: a list of rules, {\"rules\": [...]}, or a Prometheus rule file "
                     "({\"groups\": [...]})"])
