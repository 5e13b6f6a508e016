"""The export queue (span_export.py): batches leave when full or on schedule, a full queue drops and counts,
flush and shutdown send what waits, and recorded spans reach docserver's exporter as they are."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry

from docserver.config import load_settings
from docserver.errors import ConfigError
from docserver.observability.metrics import Metrics
from docserver.observability.recorded_span import RecordedSpan, SpanRecorder
from docserver.observability.span_export import BatchSettings, SpanBatcher
from docserver.observability.tracing_setup import _CountingExporter
from docserver.serve import tracing_config

HOUR_MS = 3_600_000


class Exports(SpanExporter):
    """Keeps each batch; `blocking` holds the first export until released, so the queue fills behind it."""

    def __init__(self, blocking: bool = False) -> None:
        self.batches: list[list[Any]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.exported = threading.Condition()
        self.shut = False
        if not blocking:
            self.release.set()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        with self.exported:
            self.batches.append(list(spans))
            self.exported.notify_all()
        return SpanExportResult.SUCCESS

    def wait_for(self, spans: int) -> list[list[Any]]:
        with self.exported:
            assert self.exported.wait_for(lambda: sum(map(len, self.batches)) >= spans, timeout=10), self.batches
            return self.batches

    def shutdown(self) -> None:
        self.shut = True


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process_collectors=False)


@pytest.fixture
def recorder() -> SpanRecorder:
    return SpanRecorder(TracerProvider().resource, InstrumentationScope("docserver", "1"))


@contextmanager
def batcher(exporter: Exports, metrics: Metrics | None = None, **settings: int) -> Iterator[SpanBatcher]:
    queue = SpanBatcher(
        exporter,
        BatchSettings(**settings),
        metrics.trace_spans_dropped.labels("queue_full") if metrics is not None else None,
    )
    try:
        yield queue
    finally:
        exporter.release.set()
        queue.shutdown()


def ended(recorder: SpanRecorder, name: str = "x") -> RecordedSpan:
    span = recorder.start(name, None, {"n": 1})
    span.end()
    return span


def dropped(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("docserver_trace_spans_dropped_total", {"reason": "queue_full"}) or 0.0


def test_a_full_batch_leaves_at_once_and_the_rest_waits_for_the_schedule(recorder: SpanRecorder) -> None:
    exporter = Exports()
    with batcher(exporter, schedule_delay_ms=HOUR_MS, max_export_batch_size=3) as queue:
        recorder.add_sink(queue.add)
        spans = [ended(recorder, f"s{i}") for i in range(4)]

        # The recorded spans themselves, in order, long before the hour; the fourth is not
        # sent alone in a batch of one but waits (here for a flush, as for the schedule).
        assert exporter.wait_for(3) == [spans[:3]]
        assert queue.force_flush(10_000)
        assert exporter.batches == [spans[:3], spans[3:]]


def test_spans_short_of_a_batch_leave_on_schedule(recorder: SpanRecorder) -> None:
    exporter = Exports()
    with batcher(exporter, schedule_delay_ms=20) as queue:
        queue.add(ended(recorder))

        assert [len(batch) for batch in exporter.wait_for(1)] == [1]


def test_a_full_queue_drops_the_newest_spans_and_counts_them(recorder: SpanRecorder, metrics: Metrics) -> None:
    exporter = Exports(blocking=True)
    with batcher(exporter, metrics, schedule_delay_ms=HOUR_MS, max_queue_size=4, max_export_batch_size=4) as queue:
        first = [ended(recorder) for _ in range(4)]
        for span in first:
            queue.add(span)  # a full batch: the thread takes it and blocks in export
        assert exporter.entered.wait(10)
        waiting = [ended(recorder) for _ in range(4 + 3)]
        for span in waiting:
            queue.add(span)  # fills the queue, then three more than it holds

        assert dropped(metrics) == 3
        exporter.release.set()
        assert exporter.wait_for(8) == [first, waiting[:4]]


def test_flush_sends_what_waits_and_shutdown_sends_the_rest(recorder: SpanRecorder) -> None:
    exporter = Exports()
    queue = SpanBatcher(exporter, BatchSettings(schedule_delay_ms=HOUR_MS))
    queue.add(ended(recorder))

    assert queue.force_flush(10_000)
    assert [len(batch) for batch in exporter.batches] == [1]

    queue.add(ended(recorder))
    queue.shutdown()
    assert [len(batch) for batch in exporter.batches] == [1, 1]
    assert exporter.shut
    queue.add(ended(recorder))  # after shutdown: dropped, not queued for a thread that is gone
    assert [len(batch) for batch in exporter.batches] == [1, 1]


def test_other_libraries_spans_join_the_same_queue(recorder: SpanRecorder) -> None:
    exporter = Exports()
    with batcher(exporter, schedule_delay_ms=HOUR_MS, max_export_batch_size=2) as queue:
        provider = TracerProvider()
        provider.add_span_processor(queue)
        provider.get_tracer("other").start_span("theirs").end()
        queue.add(ended(recorder, "ours"))

        [[theirs, ours]] = exporter.wait_for(2)
        assert isinstance(theirs, ReadableSpan) and theirs.name == "theirs"
        assert isinstance(ours, RecordedSpan) and ours.name == "ours"


def test_the_batch_settings_come_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")

    assert tracing_config(load_settings()).batch == BatchSettings(250, 100, 10)


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1.5"])
def test_a_bad_batch_setting_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", value)

    with pytest.raises(ConfigError, match="OTEL_BSP_MAX_QUEUE_SIZE"):
        load_settings()


def test_an_sdk_exporter_is_given_readable_spans_and_docservers_the_recorded_ones(recorder: SpanRecorder) -> None:
    # The console and gRPC exporters are the SDK's: they read `ReadableSpan`s. docserver's
    # OTLP/HTTP exporter encodes the recorded span itself.
    out = io.StringIO()
    console = _CountingExporter(ConsoleSpanExporter(out=out), None)
    span = recorder.start("tools/call search_docs", None, {"gen_ai.tool.name": "search_docs"})
    span.end()

    assert console.export([span]) is SpanExportResult.SUCCESS
    printed = json.loads(out.getvalue())
    assert (printed["name"], printed["attributes"]) == ("tools/call search_docs", {"gen_ai.tool.name": "search_docs"})
    assert printed["context"]["span_id"] == f"0x{span.span_id:016x}"

    exports = Exports()
    exports.encodes_recorded = True  # type: ignore[attr-defined]
    assert _CountingExporter(exports, None).export([span]) is SpanExportResult.SUCCESS
    assert exports.batches == [[span]]
