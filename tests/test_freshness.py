"""Source freshness on /metrics: read from the store at scrape time, whoever refreshed the source."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from docserver.binding import bind_embedder
from docserver.embed.hashing import HashEmbedder
from docserver.ingest.pipeline import IngestOptions, ingest
from docserver.observability.freshness import MAX_SOURCE_LABELS, FreshnessCollector, last_successes, store_records
from docserver.store.base import SourceOrigin, SourceRecord
from docserver.store.sqlite import SqliteStore

NAME = "docserver_source_last_success_timestamp_seconds"


def record(name: str, refreshed_at: str | None) -> SourceRecord:
    return SourceRecord(name, 1, "/docs", {}, None, None, refreshed_at, None, None)


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {
        sample.labels["source"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == NAME
    }


def test_a_source_that_never_succeeded_has_no_series() -> None:
    assert last_successes([record("new", None)]) == []


def test_sources_beyond_the_cap_share_other_with_the_oldest_time() -> None:
    records = [record(f"s{index:03d}", f"2026-12-0{1 + index % 5}T00:00:00Z") for index in range(MAX_SOURCE_LABELS + 7)]

    labels = dict(last_successes(records))

    assert len(labels) == MAX_SOURCE_LABELS + 1
    rest = sorted(r.name for r in records)[MAX_SOURCE_LABELS:]
    assert not set(rest) & set(labels)
    assert labels["other"] == min(last_successes([r for r in records if r.name in rest]), key=lambda pair: pair[1])[1]


async def test_the_scrape_reads_the_store_and_sees_an_ingest_by_another_process(tmp_path: Path, corpus: Path) -> None:
    path = tmp_path / "fresh.db"
    served = SqliteStore(path)
    await served.open()
    registry = CollectorRegistry()
    registry.register(FreshnessCollector(store_records(served, asyncio.get_running_loop())))
    other = SqliteStore(path)  # `docserver ingest` in another process
    await other.open()
    try:
        embedder = HashEmbedder()
        await bind_embedder(other, embedder)
        before = time.time()
        await ingest(other, embedder, [corpus], "corpus", options=IngestOptions(origin=SourceOrigin(str(corpus))))
        values = await asyncio.to_thread(scrape, registry)  # /metrics renders in a worker thread
    finally:
        await other.close()
        await served.close()
    assert set(values) == {"corpus"}
    assert before - 2 <= values["corpus"] <= time.time() + 1


async def test_a_scrape_on_the_event_loop_itself_reports_nothing_rather_than_hanging(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "empty.db")
    await store.open()
    try:
        registry = CollectorRegistry()
        registry.register(FreshnessCollector(store_records(store, asyncio.get_running_loop())))
        assert scrape(registry) == {}
    finally:
        await store.close()
