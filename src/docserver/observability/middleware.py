"""The one HTTP middleware: correlation id, metrics, access log (and, with tracing, the server span).

Pure ASGI and outermost, so it sees every request and every response,
errors included. Everything it labels comes from a closed set: the route
is a known template or `unmatched`, the method a known verb or `other`.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docserver.observability.logging import bind_request_context, get_logger, reset_request_context
from docserver.observability.metrics import Metrics, label_http_method, label_status_code

CORRELATION_HEADER = b"x-correlation-id"
_VALID_CORRELATION_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_EVENT_STREAM = b"text/event-stream"

log = get_logger("docserver.http")


def new_correlation_id() -> str:
    return str(uuid.UUID(bytes=os.urandom(16), version=4))


def accept_correlation_id(value: bytes | None) -> str | None:
    """The supplied id when it is safe to echo and log, else None."""
    if value is not None and _VALID_CORRELATION_ID.match(value):
        return value.decode("ascii")
    return None


class ObservabilityMiddleware:
    """Wraps the whole app: every request gets a correlation id, a metrics sample and an access line."""

    def __init__(self, app: ASGIApp, *, routes: Iterable[str], metrics: Metrics | None, access_log: bool) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.metrics = metrics
        self.access_log = access_log
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        supplied = _header(scope, CORRELATION_HEADER)
        accepted = accept_correlation_id(supplied)
        correlation_id = accepted or new_correlation_id()
        tokens = bind_request_context(correlation_id=correlation_id)
        if supplied is not None and accepted is None:
            # Never echo the rejected value: it may carry CR/LF or markup.
            log.warning("correlation_id_replaced", supplied_length=len(supplied))
        echo = (CORRELATION_HEADER, correlation_id.encode("ascii"))
        metrics = self.metrics
        status = 500
        stream = False

        async def send_observed(message: Message) -> None:
            nonlocal status, stream
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append(echo)
                message["headers"] = headers
                if metrics is not None and _is_event_stream(headers):
                    stream = True
                    metrics.sse_open.inc()
            await send(message)

        if metrics is not None:
            metrics.http_in_flight.inc()
        try:
            await self.app(scope, receive, send_observed)
        except Exception as exc:
            # Logged once, here, with the correlation id; the app's error
            # handler has already answered 500 when it could.
            log.error("unhandled_exception", exc_info=exc)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path", "") if scope.get("path") in self.routes else "unmatched"
            method = label_http_method(scope.get("method", ""))
            if metrics is not None:
                metrics.http_in_flight.dec()
                if stream:
                    metrics.sse_open.dec()
                self._observe(method, route, status, elapsed)
            if self.access_log:
                log.info(
                    "http_request",
                    method=method,
                    route=route,
                    path=scope.get("path", "")[:256],
                    status_code=status,
                    duration_ms=round(elapsed * 1000, 3),
                )
            reset_request_context(tokens)

    def _observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        assert self.metrics is not None
        code = label_status_code(status)
        key = (method, route, code)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.http_requests.labels(method, route, code),
                self.metrics.http_duration.labels(method, route),
            )
            self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(elapsed, self.metrics.exemplar())


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(key.lower() == b"content-type" and value.startswith(_EVENT_STREAM) for key, value in headers)
