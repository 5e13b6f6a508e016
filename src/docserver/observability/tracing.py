"""OpenTelemetry tracing: set-up from settings, one sampling decision per request, cheap unsampled path.

The sampling decision is made once, when the HTTP request arrives (from an
inbound `traceparent`, or by ratio on a fresh trace id). An unsampled request
gets a non-recording span context and nothing else: every layer below asks
`span(...)`, which returns a shared no-op context manager unless the current
span is sampled. The official MCP SDK opens its own span per message through
the global tracer provider; it follows the same decision (parent-based).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from docserver import __version__
from docserver.errors import ConfigError
from docserver.observability.metrics import Metrics

log = logging.getLogger(__name__)

_TRACE_ID_LIMIT = (1 << 64) - 1
_NOOP: AbstractContextManager[None] = nullcontext()
_tracer: trace.Tracer | None = None
_preset_trace_id: ContextVar[int | None] = ContextVar("docserver_preset_trace_id", default=None)
http_span_context: ContextVar[SpanContext | None] = ContextVar("docserver_http_span_context", default=None)
"""The HTTP server span of the current request (the MCP span links to it when `_meta` reparents)."""


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """What tracing needs, read from the settings at the edge."""

    service_name: str
    environment: str
    exporter: str  # otlp | console | none
    protocol: str  # http/protobuf | grpc
    sample_rate: float | None  # None: the sampler comes from OTEL_TRACES_SAMPLER
    sampler: Sampler | None = None
    endpoint: str | None = None


class _PresetIdGenerator(IdGenerator):
    """Random ids, except a root trace id the middleware already drew to take its sampling decision."""

    def generate_span_id(self) -> int:
        return random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        preset = _preset_trace_id.get()
        if preset is not None:
            _preset_trace_id.set(None)
            return preset
        return random.getrandbits(128) or 1


class _CountingExporter(SpanExporter):
    """Counts spans the exporter could not deliver; warns once per minute at most."""

    def __init__(self, inner: SpanExporter, metrics: Metrics | None) -> None:
        self._inner = inner
        self._failed = metrics.trace_spans_dropped.labels("export_failed") if metrics else None
        self._warned_at = float("-inf")
        self.delivered = False
        """True while the last export reached the collector; shutdown waits longer only then."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        self.delivered = result is SpanExportResult.SUCCESS
        if not self.delivered:
            if self._failed is not None:
                self._failed.inc(len(spans))
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning(
                    "trace export failed; %d spans dropped (further failures are counted, not logged)", len(spans)
                )
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _CountingBatchProcessor(BatchSpanProcessor):
    """BatchSpanProcessor that counts the spans it drops when its queue is full."""

    def __init__(self, exporter: SpanExporter, metrics: Metrics | None) -> None:
        super().__init__(exporter)
        self._dropped = metrics.trace_spans_dropped.labels("queue_full") if metrics else None
        self._queue_limit = self._batch_processor._max_queue_size

    def on_end(self, span: ReadableSpan) -> None:
        if self._dropped is not None and len(self._batch_processor._queue) >= self._queue_limit:
            self._dropped.inc()
        super().on_end(span)


class Tracing:
    """The configured provider, plus the per-request decision the middleware takes."""

    def __init__(self, provider: TracerProvider, rate: float | None, exporter: _CountingExporter | None = None) -> None:
        self.provider = provider
        self._exporter = exporter
        self.tracer = provider.get_tracer("docserver", __version__)
        self._bound = round(rate * (_TRACE_ID_LIMIT + 1)) if rate is not None else None

    def start_server_span(self, name: str, parent: SpanContext | None, attributes: Mapping[str, Any]) -> trace.Span:
        """The HTTP server span: recording when sampled, a bare span context otherwise."""
        if parent is not None:
            sampled = parent.trace_flags.sampled
            context = trace.set_span_in_context(NonRecordingSpan(parent))
            if not sampled:
                return NonRecordingSpan(
                    SpanContext(parent.trace_id, random.getrandbits(64) or 1, False, TraceFlags(0), parent.trace_state)
                )
            return self.tracer.start_span(name, context, SpanKind.SERVER, attributes)
        if self._bound is None:  # a sampler from OTEL_TRACES_SAMPLER decides
            return self.tracer.start_span(name, Context(), SpanKind.SERVER, attributes)
        trace_id = random.getrandbits(128) or 1
        if trace_id & _TRACE_ID_LIMIT >= self._bound:
            return NonRecordingSpan(SpanContext(trace_id, random.getrandbits(64) or 1, False, TraceFlags(0)))
        _preset_trace_id.set(trace_id)
        return self.tracer.start_span(name, Context(), SpanKind.SERVER, attributes)

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
            log.warning("trace export did not finish within %.0f s at shutdown; queued spans were dropped", timeout)


_SAMPLERS: dict[str, Callable[[float], Sampler]] = {
    "always_on": lambda rate: ALWAYS_ON,
    "always_off": lambda rate: ALWAYS_OFF,
    "traceidratio": lambda rate: TraceIdRatioBased(rate),
    "parentbased_always_on": lambda rate: ParentBased(ALWAYS_ON),
    "parentbased_always_off": lambda rate: ParentBased(ALWAYS_OFF),
    "parentbased_traceidratio": lambda rate: ParentBased(TraceIdRatioBased(rate)),
}


def sampler_named(name: str, argument: str | None) -> Sampler:
    """The standard OTEL_TRACES_SAMPLER values; ConfigError for anything else."""
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


def configure_tracing(config: TracingConfig, metrics: Metrics | None) -> Tracing:
    """Install the global tracer provider (the MCP SDK's spans use it too)."""
    global _tracer
    resource = Resource.create(
        {
            "service.name": config.service_name,
            "service.version": __version__,
            "deployment.environment.name": config.environment,
        }
    )
    sampler = config.sampler or ParentBased(
        TraceIdRatioBased(config.sample_rate if config.sample_rate is not None else 1.0)
    )
    provider = TracerProvider(resource=resource, sampler=sampler, id_generator=_PresetIdGenerator())
    exporter = _exporter(config)
    counting = _CountingExporter(exporter, metrics) if exporter is not None else None
    if counting is not None:
        provider.add_span_processor(_CountingBatchProcessor(counting, metrics))
    trace.set_tracer_provider(provider)
    # The exporter logs every retry and every failed batch; failures are
    # counted (docserver_trace_spans_dropped_total) and warned about once a
    # minute by _CountingExporter instead.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)
    tracing = Tracing(provider, config.sample_rate if config.sampler is None else None, counting)
    _tracer = tracing.tracer
    if metrics is not None:
        metrics.exemplar = current_exemplar
    return tracing


def _exporter(config: TracingConfig) -> SpanExporter | None:
    if config.exporter == "none":
        return None
    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=config.endpoint) if config.endpoint else GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    if config.endpoint:
        return HttpExporter(endpoint=config.endpoint.rstrip("/") + "/v1/traces")
    return HttpExporter()


# -- what the layers call -----------------------------------------------------------


def sampled_span() -> trace.Span | None:
    """The current span when it is recording, else None (the cheap test every layer makes first)."""
    if _tracer is None:
        return None
    current = trace.get_current_span()
    return current if current.is_recording() else None


def span(
    name: str, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Any]:
    """A child span of the current one when that one is sampled; a shared no-op otherwise."""
    if _tracer is None or not trace.get_current_span().is_recording():
        return _NOOP
    return _child(name, kind, attributes)


@contextmanager
def _child(name: str, kind: SpanKind, attributes: Mapping[str, Any] | None) -> Iterator[trace.Span]:
    assert _tracer is not None
    with _tracer.start_as_current_span(name, kind=kind, attributes=attributes) as child:
        yield child


def root_span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A new trace for work that no request started (an ingest), sampled by the provider's sampler."""
    if _tracer is None:
        return _NOOP
    return _tracer.start_as_current_span(name, attributes=attributes)


def mark_error(current: trace.Span | None, error: BaseException | str) -> None:
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        current.set_attribute("error.type", type(error).__qualname__ if isinstance(error, BaseException) else error)


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in the hex form trace backends show, when a span is active."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_exemplar() -> dict[str, str] | None:
    """The trace id of the current sampled span, for a histogram exemplar."""
    context = trace.get_current_span().get_span_context()
    if not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x")}


def traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags) & 1:02x}"


def trace_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span, for an outbound call."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    headers = {"traceparent": traceparent(context)}
    if context.trace_state:
        headers["tracestate"] = context.trace_state.to_header()
    return headers
