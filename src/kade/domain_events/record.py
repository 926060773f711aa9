"""One domain event as kade stores it, and how one is made from what a publisher sent.

Publishers differ in where they put an event's type and source: AMQP has `type` and `app_id`
properties, many put them in headers or in the body. The first that is present wins, in the
order below, so an event is searchable by `type:` and `source:` however it was published.

An event's identity is its message id. A publisher that sets none gets one derived from the
content (routing key, type, source, timestamp, body): a redelivery after a crash is then
still recognised as the same event and stored once.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 256 * 1024  # one event's JSON body
MAX_HEADERS = 64
MAX_NAME = 256  # type, source, routing key, exchange, message and correlation ids
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Malformed(ValueError):
    """A message that cannot be stored as a domain event: it is dead-lettered, not retried."""


@dataclass(frozen=True)
class DomainEvent:
    message_id: str
    time: float  # when it happened (the publisher's timestamp), else when it was received
    type: str
    body: Any
    source: str = ""
    routing_key: str = ""
    exchange: str = ""
    correlation_id: str = ""
    headers: dict[str, Any] = field(default_factory=dict)
    received: float = 0.0
    id: int = 0  # kade's sequence number, given when stored

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id, "messageId": self.message_id, "time": self.time,
            "type": self.type, "source": self.source, "routingKey": self.routing_key,
            "exchange": self.exchange, "correlationId": self.correlation_id,
            "headers": self.headers, "body": self.body, "received": self.received,
        }


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if type(value) is str and len(value) <= MAX_NAME and not _CONTROL.search(value):
        return value  # the common case, checked at the rate messages come in
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise Malformed(f"{what}: is not UTF-8") from None
    if not isinstance(value, str | int):
        raise Malformed(f"{what}: must be a string")
    text = str(value)
    if len(text) > MAX_NAME:
        raise Malformed(f"{what}: is {len(text)} characters long, at most {MAX_NAME} are "
                        "accepted")
    if _CONTROL.search(text):
        raise Malformed(f"{what}: control characters are not allowed")
    return text


def plain_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """AMQP header values made JSON: bytes as text, timestamps as seconds, tables nested."""
    if not headers:
        return {}
    if len(headers) > MAX_HEADERS:
        raise Malformed(f"headers: {len(headers)} entries, at most {MAX_HEADERS} are accepted")
    return {str(k): _plain(v) for k, v in headers.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "timestamp"):  # datetime
        return float(value.timestamp())
    return str(value)


def parse_body(raw: bytes) -> Any:
    """The message's body as JSON, or Malformed saying why not."""
    if len(raw) > MAX_BODY_BYTES:
        raise Malformed(f"body: {len(raw)} bytes, at most {MAX_BODY_BYTES} are accepted")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise Malformed("body: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise Malformed(f"body: is not JSON ({e})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def make_event(*, body: Any, received: float, message_id: Any = None, time: Any = None,
               type: Any = None, source: Any = None, routing_key: Any = None,
               exchange: Any = None, correlation_id: Any = None,
               headers: dict[str, Any] | None = None) -> DomainEvent:
    """A DomainEvent from what a publisher sent; Malformed names the field at fault."""
    hdrs = plain_headers(headers)
    fields = body if isinstance(body, dict) else {}
    kind = _text(type or hdrs.get("type") or fields.get("type") or routing_key, "type")
    if not kind:
        raise Malformed("type: is required (the message's type property, a `type` header "
                        "or body field, or a routing key)")
    src = _text(source or hdrs.get("source") or fields.get("source"), "source")
    corr = _text(correlation_id or hdrs.get("correlationId") or fields.get("correlationId"),
                 "correlationId")
    given = _time(time if time is not None else hdrs.get("timestamp", fields.get("time")))
    when = received if given is None else given
    rkey = _text(routing_key, "routingKey")
    exch = _text(exchange, "exchange")
    mid = _text(message_id, "messageId")
    if not mid:
        digest = hashlib.sha256(json.dumps(
            [exch, rkey, kind, src, corr, given, body], sort_keys=True, separators=(",", ":"),
        ).encode()).hexdigest()
        mid = "sha256:" + digest[:32]
    return DomainEvent(message_id=mid, time=when, type=kind, body=body, source=src,
                       routing_key=rkey, exchange=exch, correlation_id=corr, headers=hdrs,
                       received=received)


def _time(value: Any) -> float | None:
    """Seconds since the epoch from a number (seconds, or milliseconds when it is that
    large), a datetime, or an ISO 8601 text; None when none was given."""
    if value is None or value == "":
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    if isinstance(value, bool):
        raise Malformed("time: must be a number of seconds or an ISO 8601 time")
    if isinstance(value, int | float):
        seconds = float(value)
        if seconds > 1e11:  # milliseconds (JavaScript's Date.now())
            seconds /= 1000
        if not math.isfinite(seconds) or not 0 <= seconds < 32503680000:  # year 3000
            raise Malformed("time: must be a time between 1970 and 3000")
        return seconds
    if isinstance(value, str):
        import datetime as dt

        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Malformed(f"time: {value[:40]!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    raise Malformed("time: must be a number of seconds or an ISO 8601 time")
