"""Headers that carry the request's context to the services docserver calls."""

from __future__ import annotations

from opentelemetry.baggage.propagation import W3CBaggagePropagator

from docserver.observability.context import current_correlation_id
from docserver.observability.tracing import trace_headers

_BAGGAGE = W3CBaggagePropagator()


def outbound_headers() -> dict[str, str]:
    """`X-Correlation-ID`, `traceparent`/`tracestate` and `baggage` of the current request, for outbound calls."""
    headers = trace_headers()
    correlation_id = current_correlation_id()
    if correlation_id:
        headers["X-Correlation-ID"] = correlation_id
    _BAGGAGE.inject(headers)
    return headers
