"""What each layer is handed at construction to observe the work it owns.

A layer gets one small, typed object (`StoreInstruments`, `EmbedderInstruments`,
`SearchInstruments`, `HttpInstruments`, `McpInstruments`), built from the
process's `Metrics` by `Metrics.for_*()`, or None when telemetry is off. The
layer never sees the registry, and its module never imports Prometheus.

`LabelCache` is the one label-child cache: `labels(...)` costs several times
an `inc()`, so each child is resolved once, on first use, and reused. Callers
pass label values from closed sets only (see `metrics.label_*`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "AdmissionInstruments",
    "EmbedderInstruments",
    "Exemplar",
    "HttpInstruments",
    "LabelCache",
    "McpInstruments",
    "SearchInstruments",
    "StoreInstruments",
]


class _Family(Protocol):
    def labels(self, *values: str) -> Any: ...


C = TypeVar("C")
Exemplar = Callable[[], "dict[str, str] | None"]
"""The trace id of the current sampled span (for a histogram exemplar), or None."""


class LabelCache(Generic[C]):
    """The children of one labelled metric family, each resolved on first use."""

    __slots__ = ("_children", "_family")

    def __init__(self, family: _Family) -> None:
        self._family = family
        self._children: dict[tuple[str, ...], C] = {}

    def __call__(self, *values: str) -> C:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._family.labels(*values)
        return child


@dataclass(frozen=True, slots=True)
class StoreInstruments:
    """docserver_query_duration_seconds and docserver_query_errors_total, by (operation, backend)."""

    duration: LabelCache[Any]
    errors: LabelCache[Any]
    exemplar: Exemplar
    register_collector: Callable[[Any], None]
    """Adds a scrape-time collector (the connection-pool gauges)."""


@dataclass(frozen=True, slots=True)
class EmbedderInstruments:
    """docserver_embedding_*: batch duration by (provider, model), size by provider, errors by (provider, reason)."""

    duration: LabelCache[Any]
    batch_size: LabelCache[Any]
    errors: LabelCache[Any]
    exemplar: Exemplar


@dataclass(frozen=True, slots=True)
class SearchInstruments:
    """Cache lookups by (cache, result), and results per search."""

    cache_requests: LabelCache[Any]
    results: Any


@dataclass(frozen=True, slots=True)
class HttpInstruments:
    """The HTTP layer's metrics: requests and latency by route, in-flight requests and open streams."""

    requests: LabelCache[Any]
    duration: LabelCache[Any]
    in_flight: Any
    streams_open: Any
    exemplar: Exemplar


@dataclass(frozen=True, slots=True)
class McpInstruments:
    """The MCP layer's metrics: operations (semconv), tool calls, sessions."""

    operation_duration: LabelCache[Any]
    tool_calls: LabelCache[Any]
    tool_duration: LabelCache[Any]
    sessions_active: Any
    session_duration: Any
    label_tool: Callable[[object], str]
    exemplar: Exemplar


@dataclass(frozen=True, slots=True)
class AdmissionInstruments:
    """The admission layer's metrics: rejections by reason, requests in flight and queued."""

    rejected_overload: Any
    rejected_rate_limit: Any
    in_flight: Any
    queued: Any
