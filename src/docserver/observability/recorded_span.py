"""docserver's spans, recorded without the SDK's span machinery.

Every sampled request has an HTTP server span and an MCP server span, and
below them the spans of its work (store queries, embeddings, cache reads,
fetches; an ingest or a refresh is a trace of its own). The SDK's
`Tracer.start_span` and `Span.end` cost about 175,000 instructions per span
here (attribute limits and cleaning, a lock, bounded lists for events and
links, a context copy): `bench/span_cost.py`. A `RecordedSpan` keeps its
attributes in a plain dict and, when it ends, is handed as it is to the
export queue (span_export.py); only an SDK span processor (a test's) gets it
as a `ReadableSpan`, the SDK's hand-over type, built for it. It implements
the OpenTelemetry API's `Span`. The span the running code works under is kept
in `CURRENT`, docserver's own context variable (tracing.py says why).

The attributes these spans carry are written by docserver alone, always
strings, integers, floats or booleans, so they need none of the SDK's cleaning.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSET_STATUS = Status(StatusCode.UNSET)
"""A recorded span's status until one is set (the OTLP encoder knows it by identity)."""


def hex_ids(trace_id: int, span_id: int) -> tuple[str, str]:
    """A trace id and span id in the hex form W3C headers and trace backends use."""
    return "%032x" % trace_id, "%016x" % span_id  # noqa: UP031 (printf-style: about half the instructions of a format spec)


class SpanRecorder:
    """Starts `RecordedSpan`s and hands each finished one on, as it is, to where spans go."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self.resource = resource
        self.scope = scope
        self._sinks: tuple[Callable[[RecordedSpan], None], ...] = ()
        self.group = (id(resource), scope.name, scope.version, scope.schema_url)
        """What every span of this recorder shares in an OTLP request: its resource and scope."""

    def add_sink(self, sink: Callable[[RecordedSpan], None]) -> None:
        """`sink` takes each finished span as it is (span_export.SpanBatcher.add)."""
        self._sinks = (*self._sinks, sink)

    def add_processor(self, processor: SpanProcessor) -> None:
        """An SDK span processor, handed each finished span as a `ReadableSpan` (built for it)."""
        self.add_sink(lambda span: processor.on_end(span.readable()))

    def start(
        self,
        name: str,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        *,
        trace_id: int | None = None,
        links: Sequence[Link] = (),
        kind: SpanKind = SpanKind.SERVER,
    ) -> RecordedSpan:
        """A span of `kind`, child of `parent` (a remote or local span context) or a new trace's root."""
        if trace_id is None:
            trace_id = parent.trace_id if parent is not None else random.getrandbits(128) or 1
        state = parent.trace_state if parent is not None else None
        span_id = random.getrandbits(64) or 1
        context = SpanContext(trace_id, span_id, False, _SAMPLED, state)
        return RecordedSpan(name, context, parent, attributes, links, self, kind, trace_id, span_id)

    def finish(self, span: RecordedSpan) -> None:
        for sink in self._sinks:
            sink(span)


class RecordedSpan(Span):
    """A span whose state is a few plain fields until it ends."""

    __slots__ = (
        "attributes",
        "context",
        "end_time",
        "ended",
        "events",
        "hex_ids",
        "kind",
        "links",
        "name",
        "parent",
        "recorder",
        "span_id",
        "start",
        "status",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        links: Sequence[Link],
        recorder: SpanRecorder,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
    ) -> None:
        self.start = time.time_ns()
        # The context's ids as plain ints too: the OTLP encoder reads them without two property calls.
        self.trace_id = trace_id
        self.span_id = span_id
        self.name = name
        self.kind = kind
        self.context = context
        self.parent = parent
        self.attributes = attributes
        self.links = tuple(links)
        self.events: tuple[Event, ...] = ()
        self.status = UNSET_STATUS
        self.ended = False
        self.end_time = 0
        self.recorder = recorder
        self.hex_ids: tuple[str, str] | None = None
        """(trace id, span id) in hex, formatted on first use (a log line, an exemplar, an outbound call)."""

    def get_span_context(self) -> SpanContext:
        return self.context

    def ids(self) -> tuple[str, str]:
        """(trace id, span id) in the hex form trace backends show."""
        ids = self.hex_ids
        if ids is None:
            ids = self.hex_ids = hex_ids(self.trace_id, self.span_id)
        return ids

    def is_recording(self) -> bool:
        return not self.ended

    def set_attribute(self, key: str, value: Any) -> None:
        if value is not None and not self.ended:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        if not self.ended:
            self.events = (*self.events, Event(name, attributes, timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if not self.ended and context.is_valid:
            self.links = (*self.links, Link(context, attributes))

    def update_name(self, name: str) -> None:
        if not self.ended:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK does: OK is final, and only an error keeps its description.
        if self.ended or self.status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            self.status = status
        else:
            self.status = Status(status, description if status is StatusCode.ERROR else None)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An `exception` event with the semantic-convention attributes, as the SDK records it."""
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        recorded = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
            **(attributes or {}),
        }
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        self.end_time = end_time or time.time_ns()
        self.recorder.finish(self)

    def readable(self) -> ReadableSpan:
        """This ended span as the SDK's `ReadableSpan`, built only for an SDK processor or exporter (a
        test's, the gRPC or console exporter): docserver's export queue and encoder take the span itself."""
        return ReadableSpan(
            name=self.name,
            context=self.context,
            parent=self.parent,
            resource=self.recorder.resource,
            attributes=self.attributes,
            events=self.events,
            links=self.links,
            kind=self.kind,
            status=self.status,
            start_time=self.start,
            end_time=self.end_time,
            instrumentation_scope=self.recorder.scope,
        )


CURRENT: ContextVar[RecordedSpan | None] = ContextVar("docserver_current_span", default=None)
"""The recorded span the code running now works under, if any (set by `CurrentSpan`, the HTTP and MCP server spans)."""


class CurrentSpan:
    """`with` a recorded span as the current one, ended on the way out; as the SDK's
    `start_as_current_span` does, an exception leaving the block is recorded and
    sets the status to error (a `BaseException` such as a cancellation is not)."""

    __slots__ = ("_token", "span")

    def __init__(self, span: RecordedSpan) -> None:
        self.span = span
        self._token: Token[RecordedSpan | None] | None = None

    def __enter__(self) -> RecordedSpan:
        self._token = CURRENT.set(self.span)
        return self.span

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback_: Any) -> None:
        CURRENT.reset(self._token)  # type: ignore[arg-type]
        span = self.span
        if isinstance(error, Exception):
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
