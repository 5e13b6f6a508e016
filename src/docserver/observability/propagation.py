"""Headers that carry the request's context to the services docserver calls."""

from __future__ import annotations

import structlog


def outbound_headers() -> dict[str, str]:
    """`X-Correlation-ID` of the current request, for outbound HTTP calls (empty outside a request)."""
    correlation_id = structlog.contextvars.get_contextvars().get("correlation_id")
    return {"X-Correlation-ID": correlation_id} if correlation_id else {}
