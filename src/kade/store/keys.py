"""Key ranges and change signals: how the store finds what a write touched, and wakes whoever
waits on it, without a query per waiter."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Mapping, Sequence


def prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string that starts with `prefix` (None: no bound)."""
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    code = ord(stem[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates cannot occur in keys
        code = 0xE000
    return stem[:-1] + chr(code)


def key_range(column: str, prefix: str) -> tuple[str, tuple[str, ...]]:
    upper = prefix_upper(prefix)
    if upper is None:
        return f"{column} >= ?", (prefix,)
    return f"{column} >= ? AND {column} < ?", (prefix, upper)


def prefixes_hit(prefixes: Mapping[str, object], keys: Sequence[str]) -> list[str]:
    """Which of `prefixes` start at least one of `keys`.

    Picks the cheaper of two ways: look up every leading slice of each key, or bisect the
    sorted keys for each prefix (better for a prefix delete of many keys).
    """
    if not prefixes or not keys:
        return []
    slices = sum(len(k) + 1 for k in keys)
    if slices <= len(prefixes) * 8:
        found = {k[:i] for k in keys for i in range(len(k) + 1)}
        return [p for p in found if p in prefixes]
    ordered = sorted(keys)
    hits = []
    for p in prefixes:
        i = bisect.bisect_left(ordered, p)
        if i < len(ordered) and ordered[i].startswith(p):
            hits.append(p)
    return hits


def parent_dir(key: str) -> str:
    return key[: key.rfind("/") + 1]


class Signals:
    """One future per prefix, resolved with the first revision that changes the prefix."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[asyncio.Future[int], list[int]]] = {}

    def acquire(self, prefix: str) -> asyncio.Future[int]:
        entry = self._entries.get(prefix)
        if entry is None:
            entry = (asyncio.get_running_loop().create_future(), [0])
            self._entries[prefix] = entry
        entry[1][0] += 1
        return entry[0]

    def release(self, prefix: str, fut: asyncio.Future[int]) -> None:
        entry = self._entries.get(prefix)
        if entry is None or entry[0] is not fut:
            return  # already fired
        entry[1][0] -= 1
        if entry[1][0] == 0:
            del self._entries[prefix]
            fut.cancel()

    def notify(self, keys: Sequence[str], revision: int) -> None:
        for p in prefixes_hit(self._entries, keys):
            fut, _ = self._entries.pop(p)
            fut.set_result(revision)

    def fire_all(self, revision: int) -> None:
        for fut, _ in self._entries.values():
            fut.set_result(revision)
        self._entries.clear()
