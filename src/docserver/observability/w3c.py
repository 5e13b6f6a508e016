"""W3C Trace Context on the wire: parsing inbound `traceparent` strictly, by the spec's rules.

Any invalid value means "start a new trace", never an error: the request
must not fail because a client sent a bad header.

Why not OpenTelemetry's TraceContextTextMapPropagator: it takes the first of
two `traceparent` headers where the spec says restart, and on a malformed
`tracestate` member it logs a warning carrying the client's raw value, so any
client could write into our logs at will. The parsing here is the spec's
rules and nothing else; formatting the outbound header is in tracing.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from opentelemetry.trace import SpanContext, TraceFlags, TraceState

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_KEY = r"(?:[a-z0-9][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(f"({_KEY})=({_VALUE})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(values: Sequence[str], trace_state: TraceState | None = None) -> SpanContext | None:
    """The remote parent from the `traceparent` header values, or None to start a new trace.

    Two headers are ambiguous: restart. Version `ff` is forbidden; version
    00 has exactly 55 characters; a later version may append `-...`.
    All-zero ids and uppercase hex are invalid.
    """
    if len(values) != 1:
        return None
    value = values[0].strip()
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    # Only the sampled bit is defined; other bits are not propagated.
    return SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16) & TraceFlags.SAMPLED),
        trace_state=trace_state,
    )


def parse_tracestate(values: Sequence[str]) -> TraceState | None:
    """The `tracestate` members, or None: more than 32, a malformed one or a repeated key drops it all."""
    members = [member.strip() for value in values for member in value.split(",") if member.strip()]
    if not members or len(members) > 32:
        return None
    pairs: list[tuple[str, str]] = []
    for member in members:
        match = _MEMBER.fullmatch(member)
        if match is None:
            return None
        pairs.append((match.group(1), match.group(2)))
    if len({key for key, _ in pairs}) != len(pairs):
        return None
    return TraceState(pairs)
