"""The one HTTP middleware: correlation id, the request's trace, metrics and the access line.

Pure ASGI and outermost, so it sees every request and every response,
errors included. It owns the HTTP layer's instruments, handed in at
construction. Everything it labels comes from a closed set: the route is a
known template or `unmatched`, the method a known verb or `other`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docserver.access.bearer import PRINCIPAL_SCOPE_KEY
from docserver.access.gate import QUEUED_SCOPE_KEY
from docserver.observability.context import bind_correlation_id, reset_correlation_id
from docserver.observability.correlation import CORRELATION_HEADER, accept_correlation_id, new_correlation_id
from docserver.observability.eventline import EventLine
from docserver.observability.http_trace import RequestSpan, ServerSpans
from docserver.observability.instruments import HttpInstruments
from docserver.observability.logging import get_logger
from docserver.observability.metrics import label_http_method, label_status_code
from docserver.observability.tracing_setup import Tracing

_EVENT_STREAM = b"text/event-stream"

log = get_logger("docserver.http")


class ObservabilityMiddleware:
    """Wraps the whole app: every request gets a correlation id, a trace, a metrics sample and an access line."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Iterable[str],
        instruments: HttpInstruments | None,
        access_log: EventLine | None,
        tracing: Tracing | None = None,
        trace_enduser: bool = True,
    ) -> None:
        self.app = app
        self.route_label = RouteLabels(routes)
        self.instruments = instruments
        self.access_log = access_log
        self.spans = ServerSpans(tracing) if tracing is not None else None
        self.trace_enduser = trace_enduser

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = _Request(scope, self.route_label)
        token = bind_correlation_id(request.correlation_id)
        if request.replaced:
            # Never echo the rejected value: it may carry CR/LF or markup.
            log.warning("correlation_id_replaced", supplied_length=len(request.inbound.correlation_id or b""))
        if self.spans is not None:
            request.start_trace(self.spans)
        instruments = self.instruments
        if instruments is not None:
            instruments.in_flight.inc()
        try:
            await self.app(scope, receive, request.wrap_send(send, instruments))
        except Exception as exc:
            # Logged once, here, with the correlation id; the app's error
            # handler has already answered 500 when it could.
            log.error("unhandled_exception", exc_info=exc)
        finally:
            elapsed = time.perf_counter() - request.started
            if instruments is not None:
                instruments.in_flight.dec()
                self._observe(instruments, request, elapsed)
            if self.access_log is not None:
                self.access_log(request.access_fields(elapsed))
            request.finish(self.trace_enduser)
            reset_correlation_id(token)

    def _observe(self, instruments: HttpInstruments, request: _Request, elapsed: float) -> None:
        if request.stream_open:
            instruments.streams_open.dec()
        instruments.requests(request.method, request.route, label_status_code(request.status)).inc()
        # A stream's lifetime is not a request latency: streams are counted,
        # and timed by their own span, not in the histogram.
        if not request.stream_open:
            instruments.duration(request.method, request.route).observe(elapsed, instruments.exemplar())


class _Request:
    """One request as the middleware sees it: its labels, its ids, its trace and what it answered."""

    __slots__ = (
        "correlation_id",
        "echo",
        "inbound",
        "method",
        "path",
        "replaced",
        "route",
        "scope",
        "started",
        "status",
        "stream",
        "stream_open",
        "trace",
    )

    def __init__(self, scope: Scope, route_label: RouteLabels) -> None:
        self.started = time.perf_counter()
        self.scope = scope
        self.inbound = _Inbound(scope["headers"])
        accepted = accept_correlation_id(self.inbound.correlation_id)
        self.correlation_id = accepted or new_correlation_id()
        self.path: str = scope.get("path", "")
        self.route = route_label(self.path)
        self.method = label_http_method(scope.get("method", ""))
        self.echo = [(CORRELATION_HEADER, self.correlation_id.encode("ascii"))]
        self.status = 500
        self.trace: RequestSpan | None = None
        self.stream: Any = None
        self.stream_open = False
        self.replaced = self.inbound.correlation_id is not None and accepted is None

    def start_trace(self, spans: ServerSpans) -> None:
        inbound = self.inbound
        self.trace = spans.start(
            inbound.traceparent, inbound.tracestate, inbound.baggage, f"{self.method} {self.route}", self._attributes
        )
        self.echo += self.trace.response_headers()

    def _attributes(self) -> dict[str, Any]:
        return {
            "http.request.method": self.method,
            "http.route": self.route,
            "url.path": self.path[:256],
            "url.scheme": self.scope.get("scheme", "http"),
            "network.protocol.version": self.scope.get("http_version", "1.1"),
            "docserver.correlation_id": self.correlation_id,
        }

    def wrap_send(self, send: Send, instruments: HttpInstruments | None) -> Send:
        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                headers = list(message.get("headers", ()))
                headers.extend(self.echo)
                message["headers"] = headers
                if _is_event_stream(headers):
                    self._open_stream(instruments)
            await send(message)

        return send_observed

    def _open_stream(self, instruments: HttpInstruments | None) -> None:
        self.stream_open = True
        if instruments is not None:
            instruments.streams_open.inc()
        if self.trace is not None:
            self.stream = self.trace.open_stream()

    def access_fields(self, elapsed: float) -> dict[str, Any]:
        queued = self.scope.get(QUEUED_SCOPE_KEY)  # set by the in-flight slots (DOCSERVER_MAX_INFLIGHT)
        return {
            "method": self.method,
            "route": self.route,
            "path": self.path[:256],
            "status_code": self.status,
            "duration_ms": elapsed * 1000,
            "queued_ms": queued * 1000 if queued is not None else None,
            "principal": self.scope.get(PRINCIPAL_SCOPE_KEY),  # set by authentication; None is left out
        }

    def finish(self, enduser: bool) -> None:
        if self.stream is not None:
            self.stream.end()
        if self.trace is not None:
            # Authentication ran inside this middleware: the caller is known only now.
            self.trace.end(self.status, self.scope.get(PRINCIPAL_SCOPE_KEY) if enduser else None)


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


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(key.lower() == b"content-type" and value.startswith(_EVENT_STREAM) for key, value in headers)
