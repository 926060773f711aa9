"""Admission of where alerts go (`--alert-webhook`, `--alertmanager`: http(s) URLs) and how
often metrics are collected and rules evaluated; each refusal names the flag."""

from __future__ import annotations

import re

from kade.addresses import parse_duration

_URL = re.compile(r"https?://[^\s/?#]+(/[^\s]*)?")
MAX_RECEIVERS = 16


def check_receivers(urls: list[str], flag: str) -> list[str]:
    if len(urls) > MAX_RECEIVERS:
        raise ValueError(f"{flag}: at most {MAX_RECEIVERS}")
    for url in urls:
        if not _URL.fullmatch(url) or len(url) > 2000:
            raise ValueError(f"{flag}: {url!r} is not an http(s) URL")
    return urls


def check_interval(text: str, flag: str) -> float:
    """How often something runs: 1 s to 10 minutes."""
    seconds = parse_duration(text, flag)
    if not 1 <= seconds <= 600:
        raise ValueError(f"{flag}: {text!r} must be between 1s and 10m")
    return seconds
