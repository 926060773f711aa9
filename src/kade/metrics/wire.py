"""Series between a node and a server (`GET /node/v1/metrics/select`): compact and exact.

    {"series": [[[["__name__", "kade_task_cpu_seconds_total"], ["app", "/shop/web"], ...], 42],
                ...]}\\n
    then, for each series in that order: its times (little-endian int64 ms), then its
    values (little-endian float64)

A float crosses as its 8 bytes (NaN, ±Inf and every digit kept; JSON would spell them as
text, 2-3 times larger and slower to read), and numpy reads them without a loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from kade.metrics.promql import MAX_SAMPLES
from kade.metrics.series import Labels, Matcher, matches_all

Arrays = tuple[Labels, Any, Any]  # labels, times (int64 ms), values (float64)
MAX_SERIES = 50_000  # series of one answer


class WireError(ValueError):
    """An answer that is not in this format (cut short, or not a node's)."""


def dump_series(series: Iterable[Arrays]) -> bytes:
    header: list[Any] = []
    body: list[bytes] = []
    for labels, times, values in series:
        t = np.asarray(times, dtype="<i8")
        v = np.asarray(values, dtype="<f8")
        if len(t) != len(v):
            raise ValueError(f"{labels}: {len(t)} times but {len(v)} values")
        header.append([[list(kv) for kv in labels], len(t)])
        body += [t.tobytes(), v.tobytes()]
    head = json.dumps({"series": header}, separators=(",", ":")).encode()
    return b"".join([head, b"\n", *body])


def load_series(data: bytes) -> list[Arrays]:
    end = data.find(b"\n")
    if end < 0:
        raise WireError("no header line")
    try:
        header = json.loads(data[:end])["series"]
    except (ValueError, KeyError, TypeError) as e:
        raise WireError(f"the header is not a series list: {e}") from None
    if not isinstance(header, list):
        raise WireError("the header's series is not a list")
    out: list[Arrays] = []
    at = end + 1
    for item in header:
        labels, count = _entry(item)
        size = 8 * count
        if at + 2 * size > len(data):
            raise WireError(f"cut short: {labels} has {count} samples, the body ends before")
        times = np.frombuffer(data, dtype="<i8", count=count, offset=at).astype(np.int64)
        values = np.frombuffer(data, dtype="<f8", count=count,
                               offset=at + size).astype(np.float64)
        at += 2 * size
        out.append((labels, times, values))
    if at != len(data):
        raise WireError(f"{len(data) - at} bytes after the last series")
    return out


def _entry(item: Any) -> tuple[Labels, int]:
    if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], list)
            or not isinstance(item[1], int) or isinstance(item[1], bool) or item[1] < 0):
        raise WireError(f"a series entry is [labels, count]: got {str(item)[:100]}")
    pairs = item[0]
    if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
               for p in pairs):
        raise WireError(f"labels are [name, value] pairs: got {str(pairs)[:100]}")
    return tuple(sorted((k, v) for k, v in pairs)), item[1]


class TooLarge(ValueError):
    """More series or samples than one answer may carry: the selector or window is too wide."""


def select_answer(db: Any, selectors: list[list[Matcher]], start: int, end: int, want: str,
                  *, max_series: int = MAX_SERIES, max_samples: int = MAX_SAMPLES) -> bytes:
    """A node's answer from its store (kade.metrics.tsdb.TSDB): the series matching any of
    `selectors` with samples in [start, end] ms, and of them every sample (`samples`), the
    last one (`latest`, from the current hour only, as /metrics), or none (`labels`)."""
    found: dict[Labels, tuple[Any, Any]] = {}
    if want == "latest":
        for labels, t, v in db.latest(start):
            if t <= end and any(matches_all(labels, m) for m in selectors):
                found[labels] = (np.array([t], dtype=np.int64), np.array([v]))
    else:
        for matchers in selectors:
            for labels, times, values in db.select_arrays(matchers, start, end):
                i = int(np.searchsorted(times, start, side="left"))
                j = int(np.searchsorted(times, end, side="right"))
                if i == j:
                    continue
                found[labels] = ((times[i:j], values[i:j]) if want == "samples" else
                                 (times[:0], values[:0]))
    if len(found) > max_series:
        raise TooLarge(f"more than {max_series} series match: narrow the selector")
    samples = sum(len(t) for t, _ in found.values())
    if samples > max_samples:
        raise TooLarge(f"query processing would load too many samples into memory ({samples} "
                       f"on this node, at most {max_samples})")
    return dump_series((labels, t, v) for labels, (t, v) in sorted(found.items()))
