"""Samples from a Prometheus endpoint: a task that declares one (`"metrics": {"path", "portIndex"}`
or the label `kade.metrics.path`) and the node's router. Parsed with the Prometheus client
library's own parser; the target's labels (app, task, node) are added, and a label the
exposition already has keeps its value as `exported_<name>`, as Prometheus does.

Bounded: a body over 10 MiB or more than 20,000 samples fails the scrape (`up` 0, with the
reason), and so does an answer slower than the timeout.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[dict[str, str], int, float]

MAX_BODY = 10 * 1024 * 1024
MAX_SAMPLES = 20_000
TIMEOUT = 5.0


class ScrapeError(Exception):
    pass


@dataclass(frozen=True)
class Scraped:
    samples: list[Sample]
    error: str = ""
    cpu: float = 0.0  # seconds of this thread's CPU spent parsing
    meta: Meta = field(default_factory=dict)


Meta = dict[str, tuple[str, str]]  # family → (type, help)


def parse(text: str, target: dict[str, str], now_ms: int, meta: Meta | None = None,
          max_samples: int = MAX_SAMPLES) -> list[Sample]:
    """The exposition's samples with the target's labels; `meta` gets each family's type
    and help."""
    out: list[Sample] = []
    try:
        for family in text_string_to_metric_families(text):
            if meta is not None:
                meta[family.name] = (family.type, family.documentation)
            for s in family.samples:
                labels = {}
                for k, v in s.labels.items():
                    labels[f"exported_{k}" if k in target else k] = v
                labels.update(target)
                labels["__name__"] = s.name
                t = int(float(s.timestamp) * 1000) if s.timestamp is not None else now_ms
                out.append((labels, t, float(s.value)))
                if len(out) > max_samples:
                    raise ScrapeError(f"more than {max_samples} samples")
    except ValueError as e:
        raise ScrapeError(f"not a Prometheus exposition: {e}") from None
    return out


async def scrape(client: httpx.AsyncClient, url: str, target: dict[str, str],
                 now_ms: int, timeout: float = TIMEOUT) -> Scraped:
    """The target's samples plus `up` and `scrape_duration_seconds`, as Prometheus adds."""
    started = time.monotonic()
    cpu = 0.0
    meta: Meta = {}
    error = ""
    samples: list[Sample] = []
    try:
        async with client.stream("GET", url, timeout=timeout,
                                 headers={"Accept": "text/plain;version=0.0.4"}) as resp:
            if resp.status_code != 200:
                raise ScrapeError(f"HTTP {resp.status_code}")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY:
                    raise ScrapeError(f"body over {MAX_BODY // (1024 * 1024)} MiB")
        cpu = time.thread_time()
        try:
            samples = parse(body.decode("utf-8", errors="replace"), target, now_ms, meta)
        finally:
            cpu = time.thread_time() - cpu
    except (httpx.HTTPError, ScrapeError) as e:
        error = str(e) or type(e).__name__
        samples = []
    took = time.monotonic() - started
    samples.append(({**target, "__name__": "up"}, now_ms, 0.0 if error else 1.0))
    samples.append(({**target, "__name__": "scrape_duration_seconds"}, now_ms,
                    round(took, 6) if math.isfinite(took) else 0.0))
    return Scraped(samples, error, cpu, meta)
