"""What kade consumes from RabbitMQ: the broker, its bindings, the queue, the batch sizes.

From `kade up` flags (`--events-amqp URL`, `--events-bind 'orders:order.*,refund.#'`) and a
config file (`--events-config FILE`, JSON or YAML):

    bindings:
      - exchange: orders
        routingKeys: ["order.*", "refund.#"]
    queue: kade.domain-events
    prefetch: 4000

Bindings live here and not in app definitions: an app's definition says how to run it, and
which events kade keeps is the operator's choice across apps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
_KEY = re.compile(r"[A-Za-z0-9_.*#-]{1,255}")
_FILE_FIELDS = {"bindings", "queue", "prefetch", "batch"}


@dataclass(frozen=True)
class Binding:
    exchange: str
    routing_keys: tuple[str, ...] = ("#",)


@dataclass(frozen=True)
class IngestConfig:
    url: str
    bindings: tuple[Binding, ...] = (Binding("events"),)
    queue: str = "kade.domain-events"
    prefetch: int = 4000  # unacked messages the broker sends ahead (bounded memory)
    batch: int = 1000  # messages per durable commit
    linger: float = 0.05  # seconds a partial batch waits for more
    dead_letter_exchange: str = field(default="kade.domain-events.dlx")
    dead_letter_queue: str = field(default="kade.domain-events.dead")


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError(f"--events-amqp: {redact(url)!r} must be amqp://user:password@host"
                         "[:port]/[vhost]")
    return url


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def parse_binding(text: str) -> Binding:
    """`exchange:key1,key2` (no keys: every message, `#`)."""
    exchange, _, keys = text.partition(":")
    exchange = exchange.strip()
    if not _NAME.fullmatch(exchange):
        raise ValueError(f"--events-bind {text!r}: the exchange must be a name "
                         "(letters, digits, _ . : -)")
    routing = tuple(k.strip() for k in keys.split(",") if k.strip()) or ("#",)
    for key in routing:
        if not _KEY.fullmatch(key):
            raise ValueError(f"--events-bind {text!r}: routing key {key!r} may hold letters, "
                             "digits, _ . - and the wildcards * and #")
    return Binding(exchange, routing)


def from_document(config: IngestConfig, data: Any, where: str) -> IngestConfig:
    """`config` with what a config file says; ValueError naming the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be a mapping with bindings")
    unknown = sorted(set(data) - _FILE_FIELDS)
    if unknown:
        raise ValueError(f"{where}: {unknown[0]}: is not a setting (use "
                         f"{', '.join(sorted(_FILE_FIELDS))})")
    changes: dict[str, Any] = {}
    if "bindings" in data:
        items = data["bindings"]
        if not isinstance(items, list) or not items or len(items) > 100:
            raise ValueError(f"{where}: bindings: must be a list of 1 to 100 bindings")
        bindings = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("exchange"), str):
                raise ValueError(f"{where}: bindings.{i}.exchange: is required")
            keys = item.get("routingKeys", ["#"])
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ValueError(f"{where}: bindings.{i}.routingKeys: must be a list of "
                                 "strings")
            try:
                bindings.append(parse_binding(f"{item['exchange']}:{','.join(keys)}"))
            except ValueError as e:
                raise ValueError(f"{where}: bindings.{i}: {e}") from None
        changes["bindings"] = tuple(bindings)
    if "queue" in data:
        if not isinstance(data["queue"], str) or not _NAME.fullmatch(data["queue"]):
            raise ValueError(f"{where}: queue: must be a name (letters, digits, _ . : -)")
        changes["queue"] = data["queue"]
    for name, most in (("prefetch", 65535), ("batch", 10_000)):
        if name in data:
            value = data[name]
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
                raise ValueError(f"{where}: {name}: must be a whole number from 1 to {most}")
            changes[name] = value
    return replace(config, **changes)
