"""The one HTTP middleware: correlation id, trace context and server span, metrics, access log.

Pure ASGI and outermost, so it sees every request and every response,
errors included. Everything it labels comes from a closed set: the route
is a known template or `unmatched`, the method a known verb or `other`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import attach, detach
from opentelemetry.trace import Status, StatusCode, set_span_in_context
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docserver.observability.context import bind_correlation_id, reset_correlation_id
from docserver.observability.logging import get_logger
from docserver.observability.metrics import Metrics, label_http_method, label_status_code
from docserver.observability.tracing import Tracing, http_span_context, traceparent
from docserver.observability.w3c import parse_traceparent, parse_tracestate

CORRELATION_HEADER = b"x-correlation-id"
_VALID_CORRELATION_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_EVENT_STREAM = b"text/event-stream"

log = get_logger("docserver.http")
_BAGGAGE = W3CBaggagePropagator()


def new_correlation_id() -> str:
    """A random (version 4) UUID, formatted directly: uuid.uuid4() costs several times more."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def accept_correlation_id(value: bytes | None) -> str | None:
    """The supplied id when it is safe to echo and log, else None."""
    if value is not None and _VALID_CORRELATION_ID.match(value):
        return value.decode("ascii")
    return None


class ObservabilityMiddleware:
    """Wraps the whole app: every request gets a correlation id, a metrics sample and an access line."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Iterable[str],
        metrics: Metrics | None,
        access_log: bool,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.route_label = RouteLabels(routes)
        self.metrics = metrics
        self.access_log = access_log
        self.tracing = tracing
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        inbound = _Inbound(scope["headers"])
        accepted = accept_correlation_id(inbound.correlation_id)
        correlation_id = accepted or new_correlation_id()
        token = bind_correlation_id(correlation_id)
        if inbound.correlation_id is not None and accepted is None:
            # Never echo the rejected value: it may carry CR/LF or markup.
            log.warning("correlation_id_replaced", supplied_length=len(inbound.correlation_id))
        path = scope.get("path", "")
        route = self.route_label(path)
        method = label_http_method(scope.get("method", ""))
        echo = [(CORRELATION_HEADER, correlation_id.encode("ascii"))]
        server_span, context_token = self._start_span(inbound, scope, method, route, correlation_id, echo)
        metrics = self.metrics
        status = 500
        stream_span: Any = None

        async def send_observed(message: Message) -> None:
            nonlocal status, stream_span
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.extend(echo)
                message["headers"] = headers
                if _is_event_stream(headers):
                    stream_span = self._open_stream(server_span)
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
            if stream_span is not None:
                self._close_stream(stream_span)
            if metrics is not None:
                metrics.http_in_flight.dec()
                # A stream's lifetime is not a request latency: streams are
                # counted, and timed by their own span, not in the histogram.
                self._observe(method, route, status, None if stream_span is not None else elapsed)
            if self.access_log:
                log.info(
                    "http_request",
                    method=method,
                    route=route,
                    path=path[:256],
                    status_code=status,
                    duration_ms=elapsed * 1000,
                )
            if server_span is not None:
                _end_server_span(server_span, status)
                detach(context_token)
            reset_correlation_id(token)

    def _start_span(
        self,
        inbound: _Inbound,
        scope: Scope,
        method: str,
        route: str,
        correlation_id: str,
        echo: list[tuple[bytes, bytes]],
    ) -> tuple[Any, Any]:
        if self.tracing is None:
            return None, None
        state = parse_tracestate(inbound.tracestate) if inbound.tracestate else None
        parent = parse_traceparent(inbound.traceparent, state)
        attributes = {
            "http.request.method": method,
            "http.route": route,
            "url.path": scope.get("path", "")[:256],
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
            "docserver.correlation_id": correlation_id,
        }
        server_span = self.tracing.start_server_span(f"{method} {route}", parent, attributes)
        context = set_span_in_context(server_span)
        if inbound.baggage:
            context = _BAGGAGE.extract({"baggage": ",".join(inbound.baggage)}, context)
        token = attach(context)
        span_context = server_span.get_span_context()
        http_span_context.set(span_context)
        echo.append((b"traceparent", traceparent(span_context).encode("ascii")))
        if span_context.trace_state:
            echo.append((b"tracestate", span_context.trace_state.to_header().encode("ascii")))
        return server_span, token

    def _open_stream(self, server_span: Any) -> Any:
        if self.metrics is not None:
            self.metrics.sse_open.inc()
        if server_span is not None and server_span.is_recording() and self.tracing is not None:
            return _Stream(self.tracing.tracer.start_span("SSE stream", set_span_in_context(server_span)))
        return _Stream(None)

    def _close_stream(self, stream: _Stream) -> None:
        if self.metrics is not None:
            self.metrics.sse_open.dec()
        if stream.span is not None:
            stream.span.end()

    def _observe(self, method: str, route: str, status: int, elapsed: float | None) -> None:
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
        if elapsed is not None:
            histogram.observe(elapsed, self.metrics.exemplar())


class RouteLabels:
    """Maps a request path to its route template, or `unmatched`: the closed set of `route` label values."""

    def __init__(self, templates: Iterable[str]) -> None:
        templates = list(templates)
        self._static = frozenset(template for template in templates if "{" not in template)
        self._patterns = [(compile_path(template)[0], template) for template in templates if "{" in template]

    def __call__(self, path: str) -> str:
        if path in self._static:
            return path
        for pattern, template in self._patterns:
            if pattern.match(path):
                return template
        return "unmatched"


class _Inbound:
    """The headers this middleware reads, gathered in one pass."""

    __slots__ = ("baggage", "correlation_id", "traceparent", "tracestate")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.correlation_id: bytes | None = None
        self.traceparent: list[str] = []
        self.tracestate: list[str] = []
        self.baggage: list[str] = []
        for key, value in headers:
            if key == CORRELATION_HEADER:
                if self.correlation_id is None:
                    self.correlation_id = value
            elif key == b"traceparent":
                self.traceparent.append(value.decode("latin-1"))
            elif key == b"tracestate":
                self.tracestate.append(value.decode("latin-1"))
            elif key == b"baggage":
                self.baggage.append(value.decode("latin-1"))


class _Stream:
    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span


def _end_server_span(server_span: Any, status: int) -> None:
    if server_span.is_recording():
        server_span.set_attribute("http.response.status_code", status)
        if status >= 500:
            server_span.set_status(Status(StatusCode.ERROR))
            server_span.set_attribute("error.type", str(status))
        server_span.end()


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(key.lower() == b"content-type" and value.startswith(_EVENT_STREAM) for key, value in headers)
