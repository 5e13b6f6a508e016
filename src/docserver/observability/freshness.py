"""How fresh each source is, read from the store when Prometheus scrapes.

`docserver_source_last_success_timestamp_seconds{source}` is when a source was
last ingested or refreshed successfully, by any process: the store is the one
place every replica and every `docserver refresh` (a CronJob, a laptop) writes
it, so the value is read there, at scrape time, never kept by a timer. Source
names come from operators, never from requests; still, at most
MAX_SOURCE_LABELS get a series of their own, and the rest share `other`,
which carries the oldest of their times, so an alert on staleness still fires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from docserver.store.base import SourceRecord

MAX_SOURCE_LABELS = 50
"""Sources with a series of their own; more share the label value `other`."""
READ_TIMEOUT = 2.0
"""Seconds a scrape waits for the store before it reports no freshness at all."""

Records = Callable[[], Sequence[SourceRecord] | None]


class FreshnessCollector(Collector):
    def __init__(self, records: Records) -> None:
        self._records = records

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "docserver_source_last_success_timestamp_seconds",
            "When each source was last ingested or refreshed successfully (Unix time), by source "
            f"(at most {MAX_SOURCE_LABELS}; the rest as `other`, with the oldest of their times).",
            labels=["source"],
        )
        records = self._records()
        for source, seconds in last_successes(records or ()):
            family.add_metric([source], seconds)
        yield family


def last_successes(records: Iterable[SourceRecord]) -> list[tuple[str, float]]:
    """(label, Unix time) per source that ever succeeded, capped as the module says."""
    times = sorted((record.name, _unix(record.refreshed_at)) for record in records if record.refreshed_at is not None)
    own, rest = times[:MAX_SOURCE_LABELS], times[MAX_SOURCE_LABELS:]
    if rest:
        own.append(("other", min(seconds for _, seconds in rest)))
    return own


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def store_records(store: Any, loop: asyncio.AbstractEventLoop) -> Records:
    """Read the store's sources on `loop` from the thread that renders /metrics.

    On the loop's own thread (a caller that collects the registry in place)
    nothing is read: waiting there for the loop would never end.
    """

    def read() -> Sequence[SourceRecord] | None:
        try:
            asyncio.get_running_loop()
            return None
        except RuntimeError:
            pass
        future = asyncio.run_coroutine_threadsafe(store.source_records(), loop)
        try:
            records: Sequence[SourceRecord] = future.result(timeout=READ_TIMEOUT)
        except Exception:  # the store is down or slow: no freshness this scrape, never a failed scrape
            future.cancel()
            return None
        return records

    return read
