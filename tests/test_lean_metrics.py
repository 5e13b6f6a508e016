"""The lean request-path families export exactly what prometheus_client's own families export.

Dashboards, rules and scrapers read the exposition, not the objects: the
same observations through a prometheus_client family and a lean one must
give the same text, in both formats, exemplars included.
"""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from docserver.observability.lean import LeanCounter, LeanGauge, LeanHistogram

BUCKETS = (0.005, 0.01, 0.1, 1.0, 10.0)
EXEMPLAR = {"trace_id": "0af7651916cd43dd8448eb211c80319c"}


def _pair() -> tuple[CollectorRegistry, CollectorRegistry]:
    return CollectorRegistry(), CollectorRegistry()


def _lines(text: bytes) -> list[str]:
    """`_created` series are switched off in the server (serve.py); lean families have none."""
    return [line for line in text.decode().splitlines() if "_created" not in line]


def _without_timestamps(text: bytes) -> list[str]:
    """Exemplar timestamps differ between the two runs; everything else must not."""
    return [line.split(" # ")[0] + (" # exemplar" if " # " in line else "") for line in _lines(text)]


@pytest.mark.parametrize("render", [generate_latest, generate_openmetrics])
def test_a_histogram_exports_as_prometheus_client_does(render) -> None:
    reference, lean = _pair()
    expected = Histogram("latency_seconds", "Latency.", ["route"], buckets=BUCKETS, registry=reference)
    actual = LeanHistogram("latency_seconds", "Latency.", ["route"], lean, buckets=BUCKETS)
    for value, exemplar in ((0.005, None), (0.004, None), (0.05, EXEMPLAR), (3.0, None), (50.0, None)):
        expected.labels("/mcp").observe(value, exemplar)
        actual.labels("/mcp").observe(value, exemplar)
    assert _without_timestamps(render(lean)) == _without_timestamps(render(reference))


@pytest.mark.parametrize("render", [generate_latest, generate_openmetrics])
def test_counters_and_gauges_export_as_prometheus_client_does(render) -> None:
    reference, lean = _pair()
    counter = Counter("calls", "Calls.", ["tool", "status"], registry=reference)
    lean_counter = LeanCounter("calls", "Calls.", ["tool", "status"], lean)
    gauge = Gauge("open", "Open.", registry=reference)
    lean_gauge = LeanGauge("open", "Open.", [], lean)
    for family in (counter, lean_counter):
        family.labels("search_docs", "ok").inc()
        family.labels("search_docs", "ok").inc(2)
        family.labels("list_sources", "error")
    for gauge_family in (gauge, lean_gauge):
        gauge_family.inc(3)
        gauge_family.dec()
    assert _lines(render(lean)) == _lines(render(reference))


def test_a_series_exists_from_its_first_labels_call() -> None:
    registry = CollectorRegistry()
    LeanCounter("calls", "Calls.", ["tool"], registry).labels("unknown")
    assert registry.get_sample_value("calls_total", {"tool": "unknown"}) == 0.0


def test_wrong_label_count_is_refused() -> None:
    family = LeanCounter("calls", "Calls.", ["tool", "status"], CollectorRegistry())
    with pytest.raises(ValueError, match="takes labels"):
        family.labels("search_docs")


def test_increments_from_several_threads_are_all_counted() -> None:
    registry = CollectorRegistry()
    child = LeanHistogram("t_seconds", "T.", [], registry, buckets=BUCKETS).labels()
    threads = [threading.Thread(target=lambda: [child.observe(0.01) for _ in range(20_000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.get_sample_value("t_seconds_count") == 80_000
    assert registry.get_sample_value("t_seconds_bucket", {"le": "0.01"}) == 80_000
