"""What the layers call to trace their work: span helpers over one per-request decision.

The HTTP middleware decides once per request whether it is sampled
(`tracing_setup.Tracing.decide`) and records that decision here as the
request's `TraceContext`. A sampled request gets recorded spans
(recorded_span.py), each the current one (`recorded_span.CURRENT`, a context
variable of docserver's own) while its work runs; an unsampled one gets
nothing but this record: no span objects, no sampler run, no context set.
Logs, outbound headers and the `traceparent` of the response read the
record, so the trace still continues across services whether or not it is
sampled.

docserver records every span it makes and nothing else in the process makes
spans, so the current span is kept in docserver's own context variable, not
in OpenTelemetry's context: a child span costs one variable set and reset,
not a context copy, an attach and a detach, and finding the current span
costs one lookup. OpenTelemetry's context carries only W3C baggage.

Every helper first asks whether a span is current, and returns a shared
no-op when none is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from docserver.observability.recorded_span import CURRENT, CurrentSpan, RecordedSpan, SpanRecorder, hex_ids

_NOOP: AbstractContextManager[None] = nullcontext()


class TraceContext:
    """The trace a request belongs to, sampled or not (W3C: trace-id, parent-id, flags, tracestate).

    The ids are formatted in hex once, here: the response's `traceparent` and
    every log line of the request read them (an id's formatting costs about as
    much as the rest of an unsampled request's tracing).
    """

    __slots__ = ("exemplar", "sampled", "span_hex", "span_id", "trace_hex", "trace_id", "trace_state")

    def __init__(self, trace_id: int, span_id: int, sampled: bool, trace_state: TraceState | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.trace_state = trace_state
        self.trace_hex, self.span_hex = hex_ids(trace_id, span_id)
        self.exemplar = {"trace_id": self.trace_hex} if sampled else None
        """A sampled request's histogram exemplar, made once: every span of the request is of its trace."""

    @classmethod
    def of(cls, context: SpanContext) -> TraceContext:
        return cls(context.trace_id, context.span_id, context.trace_flags.sampled, context.trace_state)

    def traceparent(self) -> str:
        # Formatted by hand: the propagator's inject needs a Context around a
        # span, which the unsampled path does not build (about 3 µs a call).
        return f"00-{self.trace_hex}-{self.span_hex}-{'01' if self.sampled else '00'}"


_request: ContextVar[TraceContext | None] = ContextVar("docserver_request_trace", default=None)
_decide: Callable[[SpanContext | None], bool] | None = None
_recorder: SpanRecorder | None = None


def install(
    decide: Callable[[SpanContext | None], bool] | None = None,
    recorder: SpanRecorder | None = None,
) -> None:
    """Called by tracing set-up: the sampler's decision for a parent (None: new), and the
    recorder every span comes from. Both None: tracing is off."""
    global _decide, _recorder
    _decide = decide
    _recorder = recorder


def recorder() -> SpanRecorder | None:
    """Where spans are recorded (recorded_span.py); None when tracing is off."""
    return _recorder


def decide(parent: SpanContext | None) -> bool:
    """Whether work with this parent (None: a new trace) is sampled; False when tracing is off."""
    return _decide is not None and _decide(parent)


def enter_request(context: TraceContext) -> Token[TraceContext | None]:
    """Record the request's trace: the HTTP server span's ids when sampled, the propagated ones when not."""
    return _request.set(context)


def leave_request(token: Token[TraceContext | None]) -> None:
    _request.reset(token)


def request_trace() -> TraceContext | None:
    return _request.get()


def http_span_context() -> SpanContext | None:
    """The HTTP server span of the current sampled request (the MCP span links to it when `_meta` reparents)."""
    request = _request.get()
    if request is None or not request.sampled:
        return None
    return SpanContext(request.trace_id, request.span_id, False, TraceFlags(TraceFlags.SAMPLED), request.trace_state)


def enter_span(span: RecordedSpan) -> Token[RecordedSpan | None]:
    """Make `span` the current one (a server span; work below it uses `span`)."""
    return CURRENT.set(span)


def leave_span(token: Token[RecordedSpan | None]) -> None:
    CURRENT.reset(token)


def sampled_span() -> RecordedSpan | None:
    """The current span when it is recording, else None (the cheap test every layer makes first)."""
    current = CURRENT.get()
    return current if current is not None and not current.ended else None


def span(
    name: str, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Any]:
    """A child span of the current one when there is one (its request is sampled); a shared no-op otherwise."""
    parent = CURRENT.get()
    if parent is None or parent.ended:
        return _NOOP
    return CurrentSpan(parent.recorder.start(name, parent.context, dict(attributes or ()), kind=kind))


def root_span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A new trace for work that no request started (an ingest), sampled by the configured sampler."""
    if _recorder is None or not decide(None):
        return _NOOP
    # As the SDK's tracer would: a span already current (a caller's own) stays the parent.
    current = CURRENT.get()
    parent = current.context if current is not None else None
    return CurrentSpan(_recorder.start(name, parent, dict(attributes or ()), kind=SpanKind.INTERNAL))


def mark_error(current: Span | None, error: BaseException | str) -> None:
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        current.set_attribute("error.type", type(error).__qualname__ if isinstance(error, BaseException) else error)


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in the hex form trace backends show: the current span's, else the request's."""
    current = CURRENT.get()
    if current is not None:
        return current.ids()
    request = _request.get()
    return None if request is None else (request.trace_hex, request.span_hex)


def current_exemplar() -> dict[str, str] | None:
    """The trace id of the current sampled span, for a histogram exemplar.

    Inside a request that is the request's own, made once (`TraceContext.exemplar`;
    None when unsampled): every span under a request is of the request's trace, and
    an MCP span reparented by `_meta` enters its trace as the request's.
    """
    request = _request.get()
    if request is not None:
        return request.exemplar
    current = CURRENT.get()
    return None if current is None else {"trace_id": current.ids()[0]}


def traceparent(context: SpanContext) -> str:
    return TraceContext.of(context).traceparent()


def trace_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span or request, for an outbound call."""
    current = CURRENT.get()
    state: TraceState | None
    if current is not None:
        trace_id, span_id = current.ids()
        headers = {"traceparent": f"00-{trace_id}-{span_id}-01"}
        state = current.context.trace_state
    else:
        request = _request.get()
        if request is None:
            return {}
        headers = {"traceparent": request.traceparent()}
        state = request.trace_state
    if state:
        headers["tracestate"] = state.to_header()
    return headers
