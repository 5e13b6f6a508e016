"""`serve`'s scheduled refresh: every source from its recorded origin, each outcome counted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from conftest import CORPUS
from docserver.binding import bind_embedder
from docserver.config import ConfigError, load_settings
from docserver.embed.hashing import HashEmbedder
from docserver.observability import metrics as metrics_module
from docserver.observability.metrics import Metrics
from docserver.sources import fetch, git, service
from docserver.sources.filters import FileFilter
from docserver.sources.git import GitRepositories
from docserver.sources.origin import parse_origin
from docserver.sources.request import SourceRequest
from docserver.sources.schedule import RefreshSchedule
from docserver.sources.service import Sources
from docserver.sources.web import CrawlLimits, WebCrawler
from docserver.store.sqlite import SqliteStore


def counted(registry: CollectorRegistry, result: str) -> float | None:
    return registry.get_sample_value("docserver_source_refresh_total", {"result": result})


async def test_a_pass_refreshes_what_changed_and_counts_every_outcome(store: SqliteStore, tmp_path: Path) -> None:
    docs = Path(shutil.copytree(CORPUS, tmp_path / "docs"))
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    registry = CollectorRegistry()
    refreshes = Metrics(registry, process_collectors=False).source_refreshes
    sources = Sources(
        store,
        embedder,
        GitRepositories(tmp_path / "git"),
        WebCrawler(tmp_path / "web", CrawlLimits()),
        max_chars=1500,
        on_refresh=lambda result: refreshes.labels(result).inc(),
    )
    origin = parse_origin(str(docs))
    await sources.ingest(SourceRequest("docs", origin, FileFilter(), None, (origin.location,)))
    schedule = RefreshSchedule(sources, interval=3600)

    unchanged = await schedule.run_once()
    (docs / "guide" / "install.md").write_text("# Installing\n\nNow from a package only.\n")
    changed = await schedule.run_once()
    shutil.rmtree(docs)
    failed = await schedule.run_once()

    assert (unchanged, changed, failed) == ({"unchanged": 1}, {"ok": 1}, {"failed": 1})
    assert [counted(registry, result) for result in ("ok", "unchanged", "failed")] == [2.0, 1.0, 1.0]  # ingest, then
    [record] = await store.source_records()
    assert record.last_error is not None  # the failure is recorded; the documents stay as they were
    assert [source.documents for source in await store.list_sources()] == [6]


def test_the_metric_label_sets_are_the_sources_layer_outcomes() -> None:
    assert metrics_module.SOURCE_REFRESH_RESULTS == service.REFRESH_RESULTS
    assert metrics_module.FETCH_RESULTS == git.FETCH_RESULTS
    assert metrics_module.HTTP_FETCH_RESULTS == fetch.HTTP_FETCH_RESULTS


@pytest.mark.parametrize(("value", "seconds"), [("6h", 21600.0), ("30m", 1800.0), ("1d", 86400.0), ("900", 900.0)])
def test_the_interval_reads_durations(monkeypatch: pytest.MonkeyPatch, value: str, seconds: float) -> None:
    monkeypatch.setenv("DOCSERVER_REFRESH_INTERVAL", value)
    assert load_settings().sources.refresh_interval == seconds


@pytest.mark.parametrize("value", ["soon", "10s", "-1h"])
def test_a_bad_interval_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DOCSERVER_REFRESH_INTERVAL", value)
    with pytest.raises(ConfigError, match="DOCSERVER_REFRESH_INTERVAL"):
        load_settings()


def test_no_interval_no_schedule() -> None:
    assert load_settings().sources.refresh_interval is None
