"""The trace of one HTTP request: continue the caller's, decide sampling once, answer with `traceparent`.

A sampled request gets a recorded server span, the current span for every
layer below. An unsampled one gets a `TraceContext` record and
nothing else (see tracing.py): no span object, no context attach. W3C
headers are parsed strictly (w3c.py); any invalid value starts a new trace.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Any

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import attach, detach
from opentelemetry.trace import SpanKind, Status, StatusCode

from docserver.observability import tracing
from docserver.observability.recorded_span import RecordedSpan
from docserver.observability.tracing import TraceContext
from docserver.observability.tracing_setup import Tracing
from docserver.observability.w3c import parse_traceparent, parse_tracestate

_BAGGAGE = W3CBaggagePropagator()


class RequestSpan:
    """What `ServerSpans.start` began for one request; `end` closes it."""

    __slots__ = ("_baggage_token", "_request_token", "_span_token", "context", "span")

    def __init__(
        self,
        context: TraceContext,
        span: RecordedSpan | None,
        baggage_token: Any,
        request_token: Token[Any],
        span_token: Token[Any] | None = None,
    ) -> None:
        self.context = context
        self.span = span
        self._baggage_token = baggage_token
        self._request_token = request_token
        self._span_token = span_token

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"traceparent", self.context.traceparent().encode("ascii"))]
        if self.context.trace_state:
            headers.append((b"tracestate", self.context.trace_state.to_header().encode("ascii")))
        return headers

    def open_stream(self) -> Any:
        """A child span for an SSE stream's lifetime, when sampled."""
        recorder = tracing.recorder()
        if self.span is None or recorder is None:
            return None
        return recorder.start("SSE stream", self.span.context, {}, kind=SpanKind.INTERNAL)

    def end(self, status: int, enduser: str | None = None) -> None:
        span = self.span
        if span is not None:
            span.set_attribute("http.response.status_code", status)
            if enduser:
                span.set_attribute("enduser.id", enduser)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(status))
            span.end()
        if self._span_token is not None:
            tracing.leave_span(self._span_token)
        if self._baggage_token is not None:
            detach(self._baggage_token)
        tracing.leave_request(self._request_token)


class ServerSpans:
    """Starts the trace of each request under one `Tracing`."""

    def __init__(self, tracing_: Tracing) -> None:
        self._tracing = tracing_

    def start(
        self,
        traceparent: list[str],
        tracestate: list[str],
        baggage: list[str],
        name: str,
        attributes: Callable[[], Mapping[str, Any]],
    ) -> RequestSpan:
        """`attributes` is called only for a sampled request."""
        state = parse_tracestate(tracestate) if tracestate else None
        parent = parse_traceparent(traceparent, state) if traceparent else None
        trace_id = parent.trace_id if parent is not None else random.getrandbits(128) or 1
        # Baggage travels on to outbound calls, sampled or not; it is rare, so only then is a context attached.
        token = attach(_BAGGAGE.extract({"baggage": ",".join(baggage)})) if baggage else None
        if not self._tracing.decide(parent, trace_id):
            context = TraceContext(trace_id, random.getrandbits(64) or 1, False, state)
            return RequestSpan(context, None, token, tracing.enter_request(context))
        span = self._tracing.recorder.start(name, parent, dict(attributes()), trace_id=trace_id)
        context = TraceContext.of(span.context)
        span.hex_ids = (context.trace_hex, context.span_hex)  # formatted once: the access line reads them
        return RequestSpan(context, span, token, tracing.enter_request(context), tracing.enter_span(span))
