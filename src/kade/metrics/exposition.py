"""`/metrics`: the latest sample of every series the node keeps, in Prometheus' text format,
each family with its HELP and TYPE (kade's own from the collector's table, scraped ones as
their exporter declared them), so that Prometheus scrapes kade and `promtool check metrics`
finds nothing to say."""

from __future__ import annotations

from collections.abc import Iterable

from kade.metrics.series import NAME, Labels
from kade.metrics.values import format_value

_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def family_of(name: str, meta: dict[str, tuple[str, str]]) -> str:
    """The family a sample name belongs to (`x_bucket` → `x` when `x` is a histogram)."""
    for kind, suffixes in _SUFFIXES.items():
        for suffix in suffixes:
            if suffix and name.endswith(suffix):
                base = name[: -len(suffix)]
                if meta.get(base, ("", ""))[0] == kind:
                    return base
    return name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def write(samples: Iterable[tuple[Labels, int, float]],
          meta: dict[str, tuple[str, str]]) -> str:
    """`meta`: family → (type, help)."""
    families: dict[str, list[tuple[str, Labels, int, float]]] = {}
    for labels, t, v in samples:
        rest = tuple(kv for kv in labels if kv[0] != NAME)
        name = dict(labels).get(NAME, "")
        if name:
            families.setdefault(family_of(name, meta), []).append((name, rest, t, v))
    out: list[str] = []
    for family in sorted(families):
        kind, text = meta.get(family, ("", ""))
        if not kind and family.endswith("_total"):  # the client library names it `x`
            kind, text = meta.get(family[: -len("_total")], ("", ""))
        kind = kind if kind in ("counter", "gauge", "histogram", "summary") else "untyped"
        out.append(f"# HELP {family} {_help(text or 'No help given by its exporter.')}")
        out.append(f"# TYPE {family} {kind}")
        for name, rest, t, v in sorted(families[family], key=lambda r: (r[0], r[1])):
            text_labels = ",".join(f'{k}="{_escape(val)}"' for k, val in rest)
            out.append(f"{name}{{{text_labels}}} {format_value(v)} {t}" if text_labels
                       else f"{name} {format_value(v)} {t}")
    return "\n".join(out) + "\n"
