"""Finished spans as an OTLP `ExportTraceServiceRequest`, written straight to protobuf bytes.

The OpenTelemetry exporter builds a protobuf message object per span, per
attribute and per value, then serialises them: about 275,000 instructions a
span here (`bench/span_cost.py`), more than recording the span itself. The
wire format of these few messages is small and fixed (opentelemetry-proto's
`trace/v1/trace.proto` and `common/v1/common.proto`), so this module writes
it directly: each span is one list of byte strings joined once, and what
every span of a batch shares (its resource, its instrumentation scope, the
prefix of each attribute key) is encoded once. The result decodes to the
same message the SDK's `encode_spans` builds (`tests/test_otlp_encoding.py`
compares the two on every kind of span, attribute value, event and link).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import DEFAULT_TRACE_STATE, SpanContext, SpanKind, StatusCode

from docserver.observability.protowire import varint
from docserver.observability.recorded_span import UNSET_STATUS, RecordedSpan

_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")
_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_MAX_CACHED_KEYS = 4096

# The fields every span has, written in one piece: the kind (INTERNAL is 0 here, 1 on the
# wire), start and end times (fixed64), then status and flags, which take few values.
_KIND = {id(kind): b"\x30" + varint(kind.value + 1) for kind in SpanKind}  # by identity: an Enum hashes in Python
_TIMES = struct.Struct("<BQBQ")
_UNSET_STATUS = b"\x7a\x00"
_LOCAL_FLAGS = b"\x85\x01" + _FIXED32.pack(_HAS_IS_REMOTE)
_REMOTE_FLAGS = b"\x85\x01" + _FIXED32.pack(_HAS_IS_REMOTE | _IS_REMOTE)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + varint(len(payload)) + payload


def _text(tag: bytes, value: str) -> bytes:
    return _field(tag, value.encode("utf-8"))


def _any_value(value: Any) -> bytes:
    """common.v1.AnyValue; the oneof is written even for a default value (its presence is the type)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _text(b"\x0a", value)
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        pairs = b"".join(_field(b"\x0a", _key_value(str(key), item)) for key, item in value.items())
        return _field(b"\x32", pairs)
    raise TypeError(f"invalid attribute value type {type(value).__name__}")


_key_prefixes: dict[str, bytes] = {}


def _key_value(key: str, value: Any) -> bytes:
    """common.v1.KeyValue; the key's encoding is kept, since the same few keys recur on every span."""
    prefix = _key_prefixes.get(key)
    if prefix is None:
        prefix = _text(b"\x0a", key)
        if len(_key_prefixes) < _MAX_CACHED_KEYS:
            _key_prefixes[key] = prefix
    return prefix + _field(b"\x12", _any_value(value))


_pairs: dict[tuple[bytes, str, type, Any], bytes] = {}
_strings: dict[bytes, dict[str, dict[str, bytes]]] = {}
"""Encoded fields of string values, by tag, key and value: at most _MAX_CACHED_PAIRS in all, of
values up to _MAX_CACHED_LENGTH characters (a stack trace or a long path is encoded each time)."""
_strings_held = 0
_MAX_CACHED_LENGTH = 256
_CACHED_TYPES = frozenset({bool, int})  # not float: 0.0 and -0.0 are equal keys, not equal bytes
_MAX_CACHED_PAIRS = 8192


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    """Each attribute as a field: most (method, route, tool, status) recur on every span, so the
    encoded field of a string, integer or boolean pair is kept (the type is in the key of the
    last two: True and 1 are equal)."""
    if not attributes:
        return []
    global _strings_held
    by_key = _strings.get(tag)
    if by_key is None:
        by_key = _strings[tag] = {}
    fields = []
    for key, value in attributes.items():
        kind = type(value)
        if kind is str:  # most values: two lookups by string, no key tuple to build and hash
            by_value = by_key.get(key)
            encoded = None if by_value is None else by_value.get(value)
            if encoded is None:
                encoded = _field(tag, _key_value(key, value))
                if len(value) <= _MAX_CACHED_LENGTH:
                    if _strings_held >= _MAX_CACHED_PAIRS:  # bounded: unique values (ids) cycle through it
                        _strings.clear()
                        _strings_held = 0
                        by_key = _strings[tag] = {}
                        by_value = None
                    if by_value is None:
                        by_value = by_key[key] = {}
                    by_value[value] = encoded
                    _strings_held += 1
            fields.append(encoded)
            continue
        if kind not in _CACHED_TYPES:
            fields.append(_field(tag, _key_value(key, value)))
            continue
        pair = (tag, key, kind, value)
        encoded = _pairs.get(pair)
        if encoded is None:
            if len(_pairs) >= _MAX_CACHED_PAIRS:
                _pairs.clear()  # bounded: unique values (ids) cycle through it
            encoded = _pairs[pair] = _field(tag, _key_value(key, value))
        fields.append(encoded)
    return fields


def _flags(parent: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE


def _event(event: Any) -> bytes:
    parts = [b"\x09" + _FIXED64.pack(event.timestamp), _text(b"\x12", event.name) if event.name else b""]
    parts += _attributes(b"\x1a", event.attributes)
    if event.dropped_attributes:
        parts.append(b"\x20" + varint(event.dropped_attributes))
    return b"".join(parts)


def _link(link: Any) -> bytes:
    context = link.context
    parts = [b"\x0a\x10" + context.trace_id.to_bytes(16, "big"), b"\x12\x08" + context.span_id.to_bytes(8, "big")]
    parts += _attributes(b"\x22", link.attributes)
    if link.dropped_attributes:
        parts.append(b"\x28" + varint(link.dropped_attributes))
    parts.append(b"\x35" + _FIXED32.pack(_flags(context)))
    return b"".join(parts)


def _status(status: Any) -> bytes:
    description = status.description
    code = status.status_code.value
    return (_text(b"\x12", description) if description else b"") + (b"\x18" + varint(code) if code else b"")


def encode_span(span: ReadableSpan) -> bytes:
    """trace.v1.Span, without its outer tag."""
    context = span.context
    assert context is not None, "a finished span has a context"
    dropped = (span.dropped_attributes, span.dropped_events, span.dropped_links)
    return _span(
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big") + b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        context.trace_state,
        span.parent,
        span.name,
        span.kind,
        (span.start_time or 0, span.end_time or 0),
        span.attributes,
        span.events,
        span.links,
        span.status,
        dropped,
    )


_NOTHING_DROPPED = (0, 0, 0)


def encode_recorded(span: RecordedSpan) -> bytes:
    """trace.v1.Span of an ended recorded span, read from its plain fields rather than the SDK's properties.

    A recorded span drops nothing: no attribute, event or link limits apply.
    """
    return _span(
        b"\x0a\x10" + span.trace_id.to_bytes(16, "big") + b"\x12\x08" + span.span_id.to_bytes(8, "big"),
        span.context.trace_state,
        span.parent,
        span.name,
        span.kind,
        (span.start, span.end_time),
        span.attributes,
        span.events,
        span.links,
        span.status,
        _NOTHING_DROPPED,
    )


def _span(
    ids: bytes,
    state: Any,
    parent: SpanContext | None,
    name: str,
    kind: SpanKind,
    times: tuple[int, int],
    attributes: Mapping[str, Any] | None,
    events: Sequence[Any],
    links: Sequence[Any],
    status: Any,
    dropped: tuple[int, int, int],
) -> bytes:
    """trace.v1.Span from its fields, without its outer tag; `ids`: its trace and span id fields,
    `state`: its context's tracestate; `dropped`: attributes, events and links."""
    parts = [ids]
    if state is not DEFAULT_TRACE_STATE and state:  # the shared empty one, mostly: no length asked
        parts.append(_text(b"\x1a", ",".join(f"{key}={value}" for key, value in state.items())))
    remote = False
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        remote = parent.is_remote
    parts.append(_name(name))
    parts.append(_KIND[id(kind)])
    parts.append(_TIMES.pack(0x39, times[0], 0x41, times[1]))
    parts += _attributes(b"\x4a", attributes)
    if dropped[0]:
        parts.append(b"\x50" + varint(dropped[0]))
    if events:
        parts += [_field(b"\x5a", _event(event)) for event in events]
    if dropped[1]:
        parts.append(b"\x60" + varint(dropped[1]))
    if links:
        parts += [_field(b"\x6a", _link(link)) for link in links]
    if dropped[2]:
        parts.append(b"\x70" + varint(dropped[2]))
    unset = status is UNSET_STATUS or status.status_code is StatusCode.UNSET
    parts.append(_UNSET_STATUS if unset else _field(b"\x7a", _status(status)))
    parts.append(_REMOTE_FLAGS if remote else _LOCAL_FLAGS)
    return b"".join(parts)


_names: dict[str, bytes] = {}
_MAX_CACHED_NAMES = 1024


def _name(name: str) -> bytes:
    """A span's name field (none for an empty name); names are few (routes, methods and tools, operations)."""
    encoded = _names.get(name)
    if encoded is None:
        if len(_names) >= _MAX_CACHED_NAMES:
            _names.clear()
        encoded = _names[name] = _text(b"\x2a", name) if name else b""
    return encoded


def _resource(resource: Resource) -> bytes:
    return b"".join(_attributes(b"\x0a", resource.attributes))


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    parts = [_text(b"\x0a", scope.name) if scope.name else b"", _text(b"\x12", scope.version) if scope.version else b""]
    parts += _attributes(b"\x1a", scope.attributes)
    return b"".join(parts)


class _Group:
    """The spans of one resource and scope, encoded as they arrive."""

    __slots__ = ("resource", "scope", "spans")

    def __init__(self, resource: Resource, scope: InstrumentationScope | None) -> None:
        self.resource = resource
        self.scope = scope
        self.spans: list[bytes] = []


def _scope_key(scope: InstrumentationScope | None) -> tuple[str, str | None, str | None] | None:
    return None if scope is None else (scope.name, scope.version, scope.schema_url)


def _group(
    resources: dict[int, tuple[Resource, dict[Any, _Group]]], resource: Resource, scope: InstrumentationScope | None
) -> _Group:
    """The group of a resource and scope, made when it is the first."""
    _, groups = resources.setdefault(id(resource), (resource, {}))
    key = _scope_key(scope)
    group = groups.get(key)
    if group is None:
        group = groups[key] = _Group(resource, scope)
    return group


def encode_request(spans: Iterable[ReadableSpan | RecordedSpan]) -> bytes:
    """collector.trace.v1.ExportTraceServiceRequest: spans grouped by resource, then by scope.

    docserver's recorded spans come as they are (span_export.py) and are read from their plain fields;
    any other span (another library's, or a recorded one an SDK processor got as a `ReadableSpan`)
    through the SDK's properties.
    """
    # Grouped by the resource object (one per provider) and the scope's identity: hashing a
    # Resource serialises its attributes to JSON, which would cost more than the span.
    resources: dict[int, tuple[Resource, dict[Any, _Group]]] = {}
    by_recorder: dict[tuple[Any, ...], _Group] = {}
    for span in spans:
        if type(span) is not RecordedSpan:
            assert isinstance(span, ReadableSpan)
            group = _group(resources, span.resource, span.instrumentation_scope)
            group.spans.append(_field(b"\x12", encode_span(span)))
            continue
        recorder = span.recorder
        ours = by_recorder.get(recorder.group)
        if ours is None:
            ours = by_recorder[recorder.group] = _group(resources, recorder.resource, recorder.scope)
        ours.spans.append(_field(b"\x12", encode_recorded(span)))
    out = []
    for resource, groups in resources.values():
        scope_spans = []
        for group in groups.values():
            schema = group.scope.schema_url if group.scope is not None else None
            body = _field(b"\x0a", _scope(group.scope)) + b"".join(group.spans)
            scope_spans.append(_field(b"\x12", body + (_text(b"\x1a", schema) if schema else b"")))
        body = _field(b"\x0a", _resource(resource)) + b"".join(scope_spans)
        if resource.schema_url:
            body += _text(b"\x1a", resource.schema_url)
        out.append(_field(b"\x0a", body))
    return b"".join(out)
