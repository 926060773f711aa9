"""Admission of domain events posted to `POST /v1/domain-events` by apps without a broker.

The body is one event or a list of them (at most `MAX_EVENTS`):

    {"type": "order.paid", "source": "/shop/web", "messageId": "…", "correlationId": "…",
     "time": "2026-11-30T17:00:00Z", "routingKey": "…", "headers": {…}, "body": {…}}

Every problem is named by its place (`1.type: is required`) and nothing is stored unless all
events are good: a client fixes its request and sends it again, with the same message ids.
"""

from __future__ import annotations

import json
from typing import Any

from kade.domain_events.record import MAX_BODY_BYTES, DomainEvent, Malformed, make_event

MAX_EVENTS = 1000  # in one request (the API's body cap of 1 MiB comes first)
_FIELDS = {"type", "source", "messageId", "correlationId", "time", "routingKey", "headers",
           "body"}


class EventsRejected(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""))
        self.problems = problems


def admit_events(raw: bytes, received: float) -> list[DomainEvent]:
    """The events of a request body; EventsRejected naming every problem."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise EventsRejected(["body: nested too deeply"]) from None
    except (UnicodeDecodeError, ValueError) as e:
        raise EventsRejected([f"body: is not JSON ({e})"]) from None
    single = isinstance(data, dict)
    items = [data] if single else data
    if not isinstance(items, list):
        raise EventsRejected(["body: must be an event (an object) or a list of events"])
    if not items:
        raise EventsRejected(["body: the list of events is empty"])
    if len(items) > MAX_EVENTS:
        raise EventsRejected([f"body: {len(items)} events, at most {MAX_EVENTS} in one "
                              "request"])
    problems: list[str] = []
    events: list[DomainEvent] = []
    for i, item in enumerate(items):
        where = "" if single else f"{i}."
        try:
            events.append(_admit(item, received))
        except Malformed as e:
            problems.append(f"{where}{e}")
        if len(problems) >= 20:  # enough to fix
            break
    if problems:
        raise EventsRejected(problems)
    return events


def _admit(item: Any, received: float) -> DomainEvent:
    if not isinstance(item, dict):
        raise Malformed("must be an object with type and body")
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise Malformed(f"{unknown[0]}: is not a field of an event (use "
                        f"{', '.join(sorted(_FIELDS))})")
    if "type" not in item:
        raise Malformed("type: is required")
    if "body" not in item:
        raise Malformed("body: is required (the event's JSON data)")
    headers = item.get("headers")
    if headers is not None and not isinstance(headers, dict):
        raise Malformed("headers: must be an object")
    size = len(json.dumps(item["body"], separators=(",", ":")))
    if size > MAX_BODY_BYTES:
        raise Malformed(f"body: {size} bytes, at most {MAX_BODY_BYTES} are accepted")
    return make_event(body=item["body"], received=received, message_id=item.get("messageId"),
                      time=item.get("time"), type=item["type"], source=item.get("source"),
                      routing_key=item.get("routingKey"),
                      correlation_id=item.get("correlationId"), headers=headers)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
