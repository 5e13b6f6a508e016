"""What the layers call to trace their work: span helpers over one per-request decision.

The HTTP middleware decides once per request whether it is sampled
(`tracing_setup.Tracing.decide`) and records that decision here as the
request's `TraceContext`. A sampled request gets recorded spans
(recorded_span.py), attached as the current OpenTelemetry context; an
unsampled one gets nothing but this
record: no span objects, no sampler run, no context attach. Logs, outbound
headers and the `traceparent` of the response read the record, so the
trace still continues across services whether or not it is sampled.

Every helper first asks whether the current span is recording, and returns
a shared no-op when it is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import trace
from opentelemetry.context import get_current
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from docserver.observability.recorded_span import CurrentSpan, SpanRecorder

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
        self.trace_hex = "%032x" % trace_id  # noqa: UP031 (printf-style: about half the instructions of a format spec)
        self.span_hex = "%016x" % span_id  # noqa: UP031
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


def _unsampled_request() -> bool:
    """Inside a request decided unsampled: nothing below it records, and no OpenTelemetry context is looked up."""
    request = _request.get()
    return request is not None and not request.sampled


def sampled_span() -> trace.Span | None:
    """The current span when it is recording, else None (the cheap test every layer makes first)."""
    if _recorder is None or _unsampled_request():
        return None
    current = trace.get_current_span()
    return current if current.is_recording() else None


def span(
    name: str, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Any]:
    """A child span of the current one when that one is sampled; a shared no-op otherwise."""
    if _recorder is None or _unsampled_request():
        return _NOOP
    current = get_current()
    parent = trace.get_current_span(current)
    if not parent.is_recording():
        return _NOOP
    # The context just read is the one the child joins: it is looked up once, not again on entry.
    return CurrentSpan(_recorder.start(name, parent.get_span_context(), dict(attributes or ()), kind=kind), current)


def root_span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A new trace for work that no request started (an ingest), sampled by the configured sampler."""
    if _recorder is None or not decide(None):
        return _NOOP
    # As the SDK's tracer would: a span already current (a test, a caller's own) stays the parent.
    current = trace.get_current_span().get_span_context()
    parent = current if current.is_valid else None
    return CurrentSpan(_recorder.start(name, parent, dict(attributes or ()), kind=SpanKind.INTERNAL))


def mark_error(current: trace.Span | None, error: BaseException | str) -> None:
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        current.set_attribute("error.type", type(error).__qualname__ if isinstance(error, BaseException) else error)


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in the hex form trace backends show: the current span's, else the request's."""
    request = _request.get()
    if request is None or request.sampled:
        context = trace.get_current_span().get_span_context()
        if context.is_valid and (request is None or context.span_id != request.span_id):
            return format(context.trace_id, "032x"), format(context.span_id, "016x")
    if request is None:
        return None
    return request.trace_hex, request.span_hex


def current_exemplar() -> dict[str, str] | None:
    """The trace id of the current sampled span, for a histogram exemplar.

    Inside a request that is the request's own, made once (`TraceContext.exemplar`;
    None when unsampled): every span under a request is of the request's trace, and
    an MCP span reparented by `_meta` enters its trace as the request's.
    """
    request = _request.get()
    if request is not None:
        return request.exemplar
    context = trace.get_current_span().get_span_context()
    if not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x")}


def traceparent(context: SpanContext) -> str:
    return TraceContext.of(context).traceparent()


def trace_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span or request, for an outbound call."""
    context = trace.get_current_span().get_span_context()
    current = TraceContext.of(context) if context.is_valid else _request.get()
    if current is None:
        return {}
    headers = {"traceparent": current.traceparent()}
    if current.trace_state:
        headers["tracestate"] = current.trace_state.to_header()
    return headers
