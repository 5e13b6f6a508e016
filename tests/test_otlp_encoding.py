"""docserver's OTLP encoding decodes to exactly the message the OpenTelemetry exporter builds.

The reference is the SDK's own `encode_spans`; the judge is the protobuf
library parsing our bytes. Spans of every kind, with every attribute value
type, events, links, statuses, trace state, and local, remote and no
parents, from the SDK tracer and from the recorded server spans alike.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from docserver.observability.otlp_encoding import encode_request
from docserver.observability.recorded_span import RecordedSpan, SpanRecorder

RESOURCE = Resource.create({"service.name": "docserver", "deployment.environment.name": "test", "replica": 3})
VALUES = {
    "text": "POST /mcp",
    "empty text": "",
    "unicode": "Größe ✓ 検索",
    "true": True,
    "false": False,
    "zero": 0,
    "integer": 200,
    "negative": -42,
    "large": 2**62,
    "float": 0.25,
    "float zero": 0.0,
    "strings": ("a", "b", ""),
    "integers": [1, -2, 3],
    "booleans": [True, False],
    "floats": (1.5, -0.5),
}
REMOTE = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1))
STATE = TraceState([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")])


class Keep(SpanProcessor):
    """A span processor that keeps every span that ends."""

    def __init__(self) -> None:
        self.finished: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.finished.append(span)


def sdk_spans() -> list[ReadableSpan]:
    provider = TracerProvider(resource=RESOURCE)
    keep = Keep()
    provider.add_span_processor(keep)
    tracer = provider.get_tracer("docserver", "1.2.3")
    other = provider.get_tracer("docserver.store")
    remote = set_span_in_context(
        NonRecordingSpan(SpanContext(REMOTE.trace_id, REMOTE.span_id, True, TraceFlags(1), STATE))
    )
    with tracer.start_as_current_span("POST /mcp", context=remote, kind=SpanKind.SERVER, attributes=VALUES) as root:
        root.add_event("exception", {"exception.type": "ValueError", "exception.message": "bad"})
        root.add_event("plain")
        root.set_status(Status(StatusCode.ERROR, "went wrong"))
        linked = [Link(REMOTE, {"docserver.link": "http"})]
        with (
            tracer.start_as_current_span("tools/call search_docs", links=linked),
            other.start_as_current_span("search_text chunks_fts", kind=SpanKind.CLIENT) as child,
        ):
            child.set_status(StatusCode.OK)
    for kind in (SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER):
        tracer.start_span(f"{kind.name} root", kind=kind).end()
    tracer.start_span("").end()
    return keep.finished


def recorded_spans() -> list[ReadableSpan]:
    """Recorded spans as an SDK processor gets them: `ReadableSpan`s built from them."""
    return [span.readable() for span in recorded_as_they_are()]


def recorded_as_they_are() -> list[RecordedSpan]:
    """Recorded spans as the export queue hands them to docserver's exporter."""
    ended: list[RecordedSpan] = []
    recorder = SpanRecorder(RESOURCE, InstrumentationScope("docserver", "1.2.3"))
    recorder.add_sink(ended.append)
    http = recorder.start("POST /mcp", REMOTE, {"http.route": "/mcp", "http.response.status_code": 200})
    mcp = recorder.start(
        "tools/call search_docs", http.get_span_context(), {"gen_ai.tool.name": "search_docs"}, links=[Link(REMOTE)]
    )
    mcp.record_exception(RuntimeError("boom"))
    mcp.set_status(StatusCode.ERROR, "boom")
    child = recorder.start(
        "search_text chunks_fts", mcp.get_span_context(), {"db.system.name": "sqlite"}, kind=SpanKind.CLIENT
    )
    child.set_status(StatusCode.OK)
    child.end()
    mcp.end()
    http.end()
    recorder.start("ingest docs", None, {}, kind=SpanKind.INTERNAL).end()  # a root: no parent, no trace state
    recorder.start("", None, {"docserver.empty": ""}).end()
    return ended


def readable(spans: list[Any]) -> list[ReadableSpan]:
    """What the SDK's encoder takes: recorded spans as `ReadableSpan`s, the others as they are."""
    return [span.readable() if isinstance(span, RecordedSpan) else span for span in spans]


@pytest.mark.parametrize(
    "spans",
    [sdk_spans, recorded_spans, recorded_as_they_are],
    ids=["sdk spans", "recorded spans, as readable spans", "recorded spans, as they are"],
)
def test_the_encoding_decodes_to_the_sdk_exporters_message(spans) -> None:
    finished = spans()
    assert finished

    first = ExportTraceServiceRequest.FromString(encode_request(finished))
    again = ExportTraceServiceRequest.FromString(encode_request(finished))  # from the kept attribute fields

    assert first == again == encode_spans(readable(finished))


def test_recorded_and_sdk_spans_of_one_resource_and_scope_share_a_group() -> None:
    mixed = [*recorded_as_they_are(), *sdk_spans(), *recorded_spans(), *recorded_as_they_are()]

    ours = ExportTraceServiceRequest.FromString(encode_request(mixed))

    assert ours == encode_spans(readable(mixed))


def test_each_scope_is_one_group_and_each_resource_one_entry() -> None:
    ours = ExportTraceServiceRequest.FromString(encode_request(sdk_spans()))

    [resource_spans] = ours.resource_spans
    assert sorted(scope.scope.name for scope in resource_spans.scope_spans) == ["docserver", "docserver.store"]
    assert sum(len(scope.spans) for scope in resource_spans.scope_spans) == 7


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_request([]) == b""


def test_the_encoded_strings_kept_stay_bounded_and_still_decode() -> None:
    # Unique values (correlation ids, paths) and long ones (stack traces) must not grow the cache
    # without bound; each span still decodes to the SDK encoder's message.
    from docserver.observability import otlp_encoding

    ended: list[RecordedSpan] = []
    recorder = SpanRecorder(RESOURCE, InstrumentationScope("docserver", "1.2.3"))
    recorder.add_sink(ended.append)
    long_value = "x" * (otlp_encoding._MAX_CACHED_LENGTH + 1)
    for number in range(otlp_encoding._MAX_CACHED_PAIRS + 50):
        recorder.start("POST /mcp", None, {"docserver.correlation_id": f"id-{number}", "trace": long_value}).end()
    got = ExportTraceServiceRequest.FromString(encode_request(ended))
    assert got == encode_spans(readable(ended))
    held = sum(len(values) for by_key in otlp_encoding._strings.values() for values in by_key.values())
    assert held == otlp_encoding._strings_held <= otlp_encoding._MAX_CACHED_PAIRS
    assert all(long_value not in values for by_key in otlp_encoding._strings.values() for values in by_key.values())
