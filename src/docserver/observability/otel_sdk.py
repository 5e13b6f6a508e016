"""One of the two places that rely on OpenTelemetry SDK internals: counting spans a full queue drops.

`BatchSpanProcessor` drops the oldest span when its queue is full and says
so only in a log line; it has no public queue length. Counting the drops
(`docserver_trace_spans_dropped_total{reason="queue_full"}`) needs the
processor's queue, read here. (The other place is otlp_exporter.py.) Written
against opentelemetry-sdk 1.45 (pinned in pyproject.toml);
`tests/test_sdk_contracts.py` fails when these names change.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

PRIVATE_NAMES = ("_batch_processor", "_max_queue_size", "_queue")
"""The SDK attributes read below: the contract test checks each one still exists."""


class CountingBatchProcessor(BatchSpanProcessor):
    """BatchSpanProcessor that counts the spans it drops when its queue is full."""

    def __init__(self, exporter: SpanExporter, dropped: Any | None) -> None:
        super().__init__(exporter)
        self._dropped = dropped
        self._queue_limit = self._batch_processor._max_queue_size

    def on_end(self, span: ReadableSpan) -> None:
        if self._dropped is not None and len(self._batch_processor._queue) >= self._queue_limit:
            self._dropped.inc()
        super().on_end(span)
