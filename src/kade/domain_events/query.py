"""The search language, parsed into plain values (the store turns them into SQL).

    order.paid customer:4711 type:order.* "card declined" source:shop-*

A word or a quoted phrase is full text: it matches the type, routing key, source or any
value of the body. `name:value` is a field: `type`, `source`, `routingKey`, `exchange`,
`correlationId` and `messageId` are the event's own; any other name is a field of the JSON
body (`customer.address.city:Utrecht` reaches into nested objects). Values may hold `*` and
`?` globs. All terms must hold (AND), as in Kibana's and Loki's line filters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_QUERY = 1024  # characters
MAX_TERMS = 16

# the event's own fields: query name → column
COLUMNS = {
    "type": "type", "source": "source", "app": "source", "routingKey": "routing_key",
    "exchange": "exchange", "correlationId": "correlation_id", "messageId": "message_id",
}
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_0-9][A-Za-z0-9_-]*)*")
_TOKEN = re.compile(r'\s*(?:([^\s:"]+):)?(?:"((?:[^"]|"")*)"|(\S+))')


@dataclass(frozen=True)
class Query:
    columns: tuple[tuple[str, str], ...] = ()  # (column, glob)
    fields: tuple[tuple[str, str], ...] = ()  # (dotted body field, glob)
    text: tuple[str, ...] = ()  # full-text phrases

    def describe(self) -> str:
        parts = [f"{c}:{g}" for c, g in self.columns] + [f"{f}:{g}" for f, g in self.fields]
        return " ".join(parts + [f'"{t}"' for t in self.text])


def parse_query(q: str) -> Query:
    """`q` as a Query; ValueError naming `q` and the problem."""
    if len(q) > MAX_QUERY:
        raise ValueError(f"q: is {len(q)} characters long, at most {MAX_QUERY} are accepted")
    if any(ord(c) < 0x20 and c not in "\t" for c in q):
        raise ValueError("q: control characters are not allowed")
    columns: list[tuple[str, str]] = []
    fields: list[tuple[str, str]] = []
    text: list[str] = []
    pos = 0
    rest = q.strip()
    while pos < len(rest):
        m = _TOKEN.match(rest, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"q: cannot read {rest[pos:pos + 40]!r}")
        pos = m.end()
        name, quoted, bare = m.group(1), m.group(2), m.group(3)
        value = quoted.replace('""', '"') if quoted is not None else bare or ""
        if name is None and quoted is None and value.endswith(":"):
            raise ValueError(f"q: {value} needs a value ({value}VALUE)")
        if name is None:
            if value.strip():
                text.append(value)
            continue
        if not value:
            raise ValueError(f"q: {name}: needs a value ({name}:VALUE)")
        if name in COLUMNS:
            columns.append((COLUMNS[name], value))
        elif _FIELD.fullmatch(name):
            fields.append((name, value))
        else:
            raise ValueError(f"q: {name!r} is not a field name (letters, digits, _ and -, "
                             "nested with dots)")
    if len(columns) + len(fields) + len(text) > MAX_TERMS:
        raise ValueError(f"q: more than {MAX_TERMS} terms")
    return Query(tuple(columns), tuple(fields), tuple(text))


def glob_sql(glob: str) -> tuple[str, str]:
    """SQL operator and operand for a user's glob: `=` when it has no wildcard (an index
    serves it), else SQLite's GLOB with `[` taken literally."""
    if "*" not in glob and "?" not in glob:
        return "=", glob
    return "GLOB", glob.replace("[", "[[]")


def fts_phrase(text: str) -> str:
    """One FTS5 phrase: the words of `text` in this order, nothing of FTS5's syntax."""
    return '"' + text.replace('"', '""') + '"'


def fts_words(glob: str) -> str | None:
    """A full-text condition every event whose field matches `glob` meets (its words are in
    the body), to narrow a field filter through the index; None when there is none."""
    if not re.search(r"\w", glob):
        return None
    if "*" not in glob and "?" not in glob:
        return fts_phrase(glob)
    prefix = glob[:-1]
    if glob.endswith("*") and "*" not in prefix and "?" not in prefix and "[" not in prefix \
            and re.search(r"\w$", prefix):
        return fts_phrase(prefix) + " *"
    return None


def json_path(name: str) -> str:
    """`customer.address.city` → `$."customer"."address"."city"`."""
    return "$" + "".join(f'."{part}"' for part in name.split("."))
