"""tests/embedding_server.py's app, instrumented like a real downstream service: it exports its own spans.

    python tests/traced_embedding_server.py --port 0 --otlp-endpoint http://127.0.0.1:4318

Same command line and `READY <port>` line as the plain server, plus
`--otlp-endpoint` (the collector's base URL; spans go to `/v1/traces`).
Every HTTP request gets a SERVER span from an OpenTelemetry SDK of its own
(service.name `embedding-server`), whose parent is the W3C `traceparent` of
the incoming request: in a trace backend, the embedding service's span
nests under docserver's outbound call. The inbound `tracestate`, `baggage`
and `X-Correlation-ID` headers are kept on that span as
`http.request.header.<name>` attributes, so a test can see what arrived. Spans leave within 100 ms
(`--schedule-delay-ms`) and the queue is flushed when the server stops.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

import embedding_server  # the sibling script: run as a script, its directory is on sys.path
import uvicorn
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SERVICE_NAME = embedding_server.SERVICE_NAME
CAPTURED_HEADERS = ("tracestate", "baggage", "x-correlation-id")
_PROPAGATOR = TraceContextTextMapPropagator()


class TracingMiddleware:
    """Pure ASGI: one SERVER span per HTTP request, parented to the inbound `traceparent`."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        parent = _PROPAGATOR.extract(carrier)
        method, path = scope["method"], scope["path"]
        attributes: dict[str, Any] = {"http.request.method": method, "url.path": path, "http.route": path}
        # What the caller propagated, as semconv captured request headers, so tests can see it arrived.
        for name in CAPTURED_HEADERS:
            if name in carrier:
                attributes[f"http.request.header.{name}"] = (carrier[name],)
        with self.tracer.start_as_current_span(f"{method} {path}", parent, SpanKind.SERVER, attributes) as span:

            async def send_observed(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_observed)


def tracer_provider(endpoint: str, schedule_delay_ms: float) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}), sampler=ParentBased(ALWAYS_ON))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms))
    return provider


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY`")
    parser.add_argument("--otlp-endpoint", required=True, help="collector base URL, e.g. http://127.0.0.1:4318")
    parser.add_argument("--schedule-delay-ms", type=float, default=100.0)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    provider = tracer_provider(args.otlp_endpoint, args.schedule_delay_ms)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = TracingMiddleware(embedding_server.create_app(api_key=args.api_key, port=port), provider.get_tracer(__name__))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        provider.shutdown()  # export what is still queued


if __name__ == "__main__":
    main()
