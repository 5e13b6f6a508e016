"""Tracing set-up: the provider, its exporter, and the one sampling decision per request.

Tracing starts only when a collector is named (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_TRACES_EXPORTER); the settings decide that at the edge. The configured
sampling rule (`OTEL_TRACE_SAMPLE_RATE`, or a standard `OTEL_TRACES_SAMPLER`;
sampling.py) is applied once per request, by the HTTP middleware, through
`Tracing.decide`. The provider itself samples everything it is asked for
(ALWAYS_ON): spans are only ever started under a request that was decided
sampled, so nothing decides twice and an unsampled request never reaches the SDK.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

from docserver import __version__
from docserver.errors import ConfigError
from docserver.observability import tracing
from docserver.observability.logging import get_logger
from docserver.observability.recorded_span import RecordedSpan, SpanRecorder
from docserver.observability.sampling import SamplingRule
from docserver.observability.span_export import BatchSettings, SpanBatcher

log = get_logger("docserver.tracing")


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """What tracing needs, read from the settings at the edge."""

    service_name: str
    environment: str
    exporter: str  # otlp | console | none
    protocol: str  # http/protobuf | grpc
    sampling: SamplingRule
    endpoint: str | None = None
    batch: BatchSettings = field(default_factory=BatchSettings)


class _CountingExporter(SpanExporter):
    """Counts spans the exporter could not deliver; warns once per minute at most."""

    def __init__(self, inner: SpanExporter, failed: Any | None) -> None:
        self._inner = inner
        self._encodes_recorded = getattr(inner, "encodes_recorded", False)
        """docserver's OTLP/HTTP exporter encodes recorded spans as they are; the SDK's need `ReadableSpan`s."""
        self._failed = failed
        self._warned_at = float("-inf")
        self.delivered = False
        """True while the last export reached the collector; shutdown waits longer only then."""

    def export(self, spans: Sequence[ReadableSpan | RecordedSpan]) -> SpanExportResult:
        if not self._encodes_recorded:
            spans = [span.readable() if type(span) is RecordedSpan else span for span in spans]
        try:
            result = self._inner.export(spans)  # type: ignore[arg-type]
        except Exception:
            result = SpanExportResult.FAILURE
        self.delivered = result is SpanExportResult.SUCCESS
        if not self.delivered:
            if self._failed is not None:
                self._failed.inc(len(spans))
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("trace_export_failed", spans_dropped=len(spans), further_failures="counted, not logged")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class Tracing:
    """The configured provider, plus the per-request decision the middleware takes."""

    def __init__(
        self, provider: TracerProvider, sampling: SamplingRule, exporter: _CountingExporter | None = None
    ) -> None:
        self.provider = provider
        self.sampling = sampling
        self._exporter = exporter
        self.recorder = SpanRecorder(provider.resource, InstrumentationScope("docserver", __version__))
        """Records every docserver span (recorded_span.py); the provider stays the global one for other libraries."""

    def install(self) -> None:
        """Hand the span helpers (tracing.py) this decision and recorder."""
        tracing.install(self.decide, self.recorder)

    def add_processor(self, processor: SpanProcessor) -> None:
        """An SDK span processor for every finished span: the recorded ones (as `ReadableSpan`s) and
        any other library's SDK spans alike."""
        self.provider.add_span_processor(processor)
        self.recorder.add_processor(processor)

    def add_batcher(self, batcher: SpanBatcher) -> None:
        """The export queue: recorded spans are handed over as they are, other libraries' spans as the SDK ends them."""
        self.provider.add_span_processor(batcher)
        self.recorder.add_sink(batcher.add)

    def decide(self, parent: SpanContext | None, trace_id: int | None = None) -> bool:
        """Apply the sampling rule, once, to work with this parent (None: a new trace)."""
        if trace_id is None:
            trace_id = parent.trace_id if parent is not None else random.getrandbits(128) or 1
        return self.sampling.decide(parent, trace_id)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Export what is queued, within `timeout` seconds (called once, at exit).

        The SDK's own shutdown may wait 30 s and more on a collector that
        accepts and never answers; it runs in a daemon thread that the
        process does not wait for past the bound.
        """
        if self._exporter is None or not self._exporter.delivered:
            # No collector has answered yet (or the last export failed): an
            # export to a reachable collector takes milliseconds, so a second
            # is plenty, and a laptop without one does not wait at Ctrl-C.
            timeout = min(timeout, 1.0)
        worker = threading.Thread(target=self.provider.shutdown, name="trace-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            log.warning("trace_shutdown_timed_out", timeout_s=timeout, action="queued spans were dropped")


_SAMPLERS: dict[str, Callable[[float], SamplingRule]] = {
    "always_on": lambda rate: SamplingRule(1.0, parent_based=False),
    "always_off": lambda rate: SamplingRule(0.0, parent_based=False),
    "traceidratio": lambda rate: SamplingRule(rate, parent_based=False),
    "parentbased_always_on": lambda rate: SamplingRule(1.0),
    "parentbased_always_off": lambda rate: SamplingRule(0.0),
    "parentbased_traceidratio": lambda rate: SamplingRule(rate),
}


def sampler_named(name: str, argument: str | None) -> SamplingRule:
    """The standard OTEL_TRACES_SAMPLER values; ConfigError for anything else.

    The SDK reads the same variables itself, but falls back to its default on
    a bad value with only a log line; a misspelt sampler should stop start-up.
    """
    factory = _SAMPLERS.get(name.strip().lower())
    if factory is None:
        raise ConfigError(f"invalid setting OTEL_TRACES_SAMPLER: must be one of {', '.join(sorted(_SAMPLERS))}")
    try:
        rate = float(argument) if argument not in (None, "") else 1.0
    except ValueError:
        raise ConfigError("invalid setting OTEL_TRACES_SAMPLER_ARG: must be a number from 0 to 1") from None
    if not 0.0 <= rate <= 1.0:
        raise ConfigError("invalid setting OTEL_TRACES_SAMPLER_ARG: must be a number from 0 to 1")
    return factory(rate)


def configure_tracing(config: TracingConfig, dropped: Any | None = None) -> Tracing:
    """Install the global tracer provider and hand the span helpers their tracer.

    `dropped` is docserver_trace_spans_dropped_total (labelled by reason), or None with metrics off.
    """
    resource = Resource.create(
        {
            "service.name": config.service_name,
            "service.version": __version__,
            "deployment.environment.name": config.environment,
        }
    )
    provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
    exporter = _exporter(config)
    counting = None
    if exporter is not None:
        counting = _CountingExporter(exporter, dropped.labels("export_failed") if dropped is not None else None)
    result = Tracing(provider, config.sampling, counting)
    if counting is not None:
        result.add_batcher(
            SpanBatcher(counting, config.batch, dropped.labels("queue_full") if dropped is not None else None)
        )
    trace.set_tracer_provider(provider)
    # The exporter logs every retry and every failed batch; failures are
    # counted (docserver_trace_spans_dropped_total) and warned about once a
    # minute by _CountingExporter instead.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    result.install()
    return result


def _exporter(config: TracingConfig) -> SpanExporter | None:
    if config.exporter == "none":
        return None
    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=config.endpoint) if config.endpoint else GrpcExporter()
    from docserver.observability.otlp_exporter import LeanOtlpSpanExporter

    if config.endpoint:
        return LeanOtlpSpanExporter(endpoint=config.endpoint.rstrip("/") + "/v1/traces")
    return LeanOtlpSpanExporter()
