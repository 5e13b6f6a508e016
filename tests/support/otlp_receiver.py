"""A real OTLP/HTTP trace receiver on loopback, for tests: `POST /v1/traces`, protobuf, optionally gzip.

    with OtlpReceiver() as receiver:                 # receiver.url -> "http://127.0.0.1:PORT"
        ...                                          # point OTEL_EXPORTER_OTLP_ENDPOINT at it
        spans = receiver.wait_for(lambda spans: [s for s in spans if s.name == "GET /healthz"], timeout=10)

Payloads are decoded with `opentelemetry-proto` into `SpanRecord`s. `wait_for`
waits on a condition variable that every accepted export notifies: no
polling, no sleeps. `mode="discard"` answers every export with 200 and
keeps nothing (bench/: export cost is real, receiving it costs nearly
nothing). `mode="hang"` accepts each connection and reads the
request but never answers (a collector that is up and stuck); a refusing
collector is just a closed port (`closed_port_url()`).
"""

from __future__ import annotations

import gzip
import socket
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, TypeVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

T = TypeVar("T")
Mode = Literal["accept", "discard", "hang"]

_KINDS = {value: name.removeprefix("SPAN_KIND_") for name, value in Span.SpanKind.items()}
_STATUS = {value: name.removeprefix("STATUS_CODE_") for name, value in Status.StatusCode.items()}


@dataclass(frozen=True)
class LinkRecord:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class SpanRecord:
    """One received span, ids as lowercase hex (parent_span_id is "" for a root)."""

    service_name: str
    scope_name: str
    name: str
    kind: str  # SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER, UNSPECIFIED
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    links: tuple[LinkRecord, ...] = ()
    status_code: str = "UNSET"  # UNSET, OK, ERROR
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class OtlpReceiver:
    """A ThreadingHTTPServer in a daemon thread that stores every span it is sent."""

    def __init__(self, mode: Mode = "accept") -> None:
        self.mode = mode
        self._spans: list[SpanRecord] = []
        self._changed = threading.Condition()
        self._release = threading.Event()  # lets hanging handlers go at stop()
        self.requests = 0
        self.rejected = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        """The base URL (what OTEL_EXPORTER_OTLP_ENDPOINT takes); exporters post to `{url}/v1/traces`."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def spans(self) -> list[SpanRecord]:
        with self._changed:
            return list(self._spans)

    def clear(self) -> None:
        with self._changed:
            self._spans.clear()

    def wait_for(self, predicate: Callable[[list[SpanRecord]], T], timeout: float = 10.0) -> T:
        """The predicate's first truthy result over all spans received so far; TimeoutError after `timeout` s."""
        result: Any = None

        def ready() -> bool:
            nonlocal result
            result = predicate(list(self._spans))
            return bool(result)

        with self._changed:
            if not self._changed.wait_for(ready, timeout=timeout):
                names = sorted({(span.service_name, span.name) for span in self._spans})
                raise TimeoutError(f"no match within {timeout:g} s; {len(self._spans)} spans received: {names}")
        return result  # type: ignore[no-any-return]

    def trace(self, trace_id: str) -> list[SpanRecord]:
        return [span for span in self.spans() if span.trace_id == trace_id]

    def _store(self, spans: Iterable[SpanRecord]) -> None:
        with self._changed:
            self.requests += 1
            self._spans.extend(spans)
            self._changed.notify_all()


def _handler_for(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if receiver.mode == "hang":
                receiver._release.wait()
                self.close_connection = True
                return
            if receiver.mode == "discard":
                self._answer(200, b"", "application/x-protobuf")
                return
            if self.path != "/v1/traces":
                self._answer(404, b"not found", "text/plain")
                return
            try:
                request = ExportTraceServiceRequest.FromString(_decode(body, self.headers.get("Content-Encoding")))
            except Exception as exc:  # malformed payload: a collector answers 400
                receiver.rejected += 1
                self._answer(400, str(exc).encode(), "text/plain")
                return
            receiver._store(decode_request(request))
            self._answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None  # keep pytest's output clean

    return Handler


def _decode(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


def decode_request(request: ExportTraceServiceRequest) -> list[SpanRecord]:
    records: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(
                    SpanRecord(
                        service_name=service,
                        scope_name=scope_spans.scope.name,
                        name=span.name,
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        links=tuple(
                            LinkRecord(link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes))
                            for link in span.links
                        ),
                        status_code=_STATUS.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message,
                        resource=resource,
                    )
                )
    return records


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)
