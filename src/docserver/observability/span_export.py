"""Finished spans on their way to the exporter: a queue the request path appends to, one thread sending batches.

The SDK's `BatchSpanProcessor` does the same job behind `on_end`, which on
every span reads the sampled flag through two properties, checks for a fork,
and keeps its queue to itself, so a span it drops is only a log line. Here a
recorded span is handed over as it is (no `ReadableSpan` built on the
request path: the OTLP encoder reads its fields), the request path pays one
append, and a span dropped because the queue is full is counted
(`docserver_trace_spans_dropped_total{reason="queue_full"}`).

The batching follows the SDK's settings and defaults (the standard
`OTEL_BSP_*` variables, read with the other settings): a batch leaves when
`OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans are waiting or every
`OTEL_BSP_SCHEDULE_DELAY` ms, and at most `OTEL_BSP_MAX_QUEUE_SIZE` spans
wait. When the queue is full, the newest span is the one dropped. A span that
ends after shutdown (the process is exiting) is not queued.
docserver runs one process (no workers are forked), so the thread is
started once, with the batcher.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """The standard OTEL_BSP_* settings, with the SDK's defaults."""

    schedule_delay_ms: int = 5000
    max_queue_size: int = 2048
    max_export_batch_size: int = 512


class SpanBatcher(SpanProcessor):
    """Queues finished spans and exports them in batches from one daemon thread.

    `add` is the request path's hand-over, for docserver's recorded spans and
    (through `on_end`, as a span processor of the SDK's provider) for any
    other library's spans alike.
    """

    def __init__(self, exporter: SpanExporter, settings: BatchSettings, dropped: Any | None = None) -> None:
        self._exporter = exporter
        self._delay = settings.schedule_delay_ms / 1000
        self._max_queue = settings.max_queue_size
        self._max_batch = min(settings.max_export_batch_size, settings.max_queue_size)
        self._dropped = dropped
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._flushed: list[threading.Event] = []
        self._flush_lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="span-export", daemon=True)
        self._thread.start()

    def add(self, span: Any) -> None:
        """Queue a finished span; wake the thread when a batch is full."""
        queue = self._queue
        waiting = len(queue)
        if waiting >= self._max_queue:
            if self._dropped is not None:
                self._dropped.inc()
            return
        if self._stopping:  # the process is exiting and its last batch has left: nothing would send this
            return
        queue.append(span)
        if waiting + 1 == self._max_batch:
            self._wake.set()

    def on_end(self, span: ReadableSpan) -> None:
        self.add(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; False if that took longer than `timeout_millis`."""
        done = threading.Event()
        with self._flush_lock:
            self._flushed.append(done)
        self._wake.set()
        return done.wait(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Export what is queued, stop the thread, shut the exporter down (the caller bounds the wait)."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._exporter.shutdown()

    def _run(self) -> None:
        due = time.monotonic() + self._delay
        while True:
            self._wake.wait(max(0.0, due - time.monotonic()))
            # Cleared before the queue is read: a span added from here on wakes the next round.
            self._wake.clear()
            stopping = self._stopping
            with self._flush_lock:
                flushed, self._flushed = self._flushed, []
            if stopping or flushed or time.monotonic() >= due:
                self._export_queued(everything=True)
                due = time.monotonic() + self._delay
            else:  # woken by a full batch: what is short of a batch waits for the schedule
                self._export_queued(everything=False)
            for done in flushed:
                done.set()
            if stopping:
                return

    def _export_queued(self, everything: bool) -> None:
        queue = self._queue
        while len(queue) >= self._max_batch or (everything and queue):
            batch: list[Any] = []
            while queue and len(batch) < self._max_batch:
                batch.append(queue.popleft())
            self._export(batch)

    def _export(self, batch: Sequence[Any]) -> None:
        # docserver's exporter counts and warns about its own failures (tracing_setup._CountingExporter);
        # whatever another one raises must not stop the thread.
        with contextlib.suppress(Exception):
            self._exporter.export(batch)
