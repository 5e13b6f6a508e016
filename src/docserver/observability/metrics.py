"""Prometheus metrics: every docserver metric, on an injected registry.

Names, types, labels and buckets are the contract documented in
docs/metrics.md (dashboards and alert rules depend on them). Every label
value comes from a closed set: `label_*` functions map anything else to
`unmatched`, `unknown` or `other`, so no client input can create a series.
Each layer is handed its own instruments (`for_*`), whose label children are
resolved once, never `labels()` per request. The request-path families are
lean ones (lean.py): an observation costs an addition, and the exposition is
the same as prometheus_client's own families give.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from docserver import __version__
from docserver.observability.instruments import (
    AdmissionInstruments,
    EmbedderInstruments,
    Exemplar,
    HttpInstruments,
    LabelCache,
    McpInstruments,
    SearchInstruments,
    StoreInstruments,
)
from docserver.observability.lean import LeanCounter, LeanGauge, LeanHistogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
MCP_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RESULT_COUNT_BUCKETS = (0, 1, 2, 3, 5, 10, 20)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
MCP_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "subscriptions/listen",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
    }
)
EMBEDDING_ERROR_REASONS = frozenset(
    {"timeout", "rate_limited", "http_error", "invalid_response", "auth", "not_found", "connection", "model"}
)

REJECTION_REASONS = ("overload", "rate_limit")
TOKEN_FAILURE_REASONS = ("missing", "malformed", "unknown_token")
"""Why a static token (METRICS_TOKEN, PROFILING_TOKEN, an API token) was refused."""
MCP_AUTH_FAILURE_REASONS = (
    *TOKEN_FAILURE_REASONS,
    "expired",
    "bad_signature",
    "wrong_audience",
    "wrong_issuer",
    "insufficient_scope",
    "unknown_key",
)
AUTH_FAILURE_SERIES = tuple(
    (endpoint, reason) for endpoint in ("mcp", "metrics", "pprof") for reason in MCP_AUTH_FAILURE_REASONS
)
"""docserver_auth_failures_total's (endpoint, reason) series: a closed set, all exported from the start.

/metrics and /debug/pprof have every /mcp reason too: with DOCSERVER_ADMIN_AUTH they take docs:admin bearers."""


SOURCE_REFRESH_RESULTS = ("ok", "unchanged", "failed", "busy")
FETCH_RESULTS = ("ok", "not_found", "unreachable", "failed")
HTTP_FETCH_RESULTS = (
    *("ok", "not_modified", "not_found", "redirect_loop", "redirected_away", "too_large", "unsupported"),
    *("client_error", "server_error", "timeout", "unreachable"),
)
"""The closed sets the sources layer counts in (sources/service.py, sources/git.py, sources/fetch.py;
a test keeps them equal)."""


def _no_exemplar() -> dict[str, str] | None:
    return None


def label_http_method(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


def label_mcp_method(method: str) -> str:
    return method if method in MCP_METHODS else "other"


def label_status_code(status: int) -> str:
    return str(status) if 100 <= status <= 599 else "other"


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family of the contract: what docs/metrics.md lists, dashboards and rules query."""

    kind: type[LeanCounter] | type[LeanGauge] | type[LeanHistogram]
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    def register(self, registry: CollectorRegistry) -> Any:
        if self.kind is LeanHistogram:
            return LeanHistogram(self.name, self.help, self.labels, registry, buckets=self.buckets or ())
        counter_or_gauge: type[LeanCounter] | type[LeanGauge] = self.kind  # type: ignore[assignment]
        return counter_or_gauge(self.name, self.help, self.labels, registry)


_OPERATION = ("operation", "backend")
REQUEST_FAMILIES: dict[str, Family] = {
    "http_requests": Family(
        LeanCounter,
        "docserver_http_requests",
        "HTTP requests answered, by method, route template and status code.",
        ("method", "route", "status_code"),
    ),
    "http_duration": Family(
        LeanHistogram,
        "docserver_http_request_duration_seconds",
        "Time from request start to the end of the response, by method and route template.",
        ("method", "route"),
        LATENCY_BUCKETS,
    ),
    "active_connections": Family(
        LeanGauge,
        "docserver_active_connections",
        "In-flight HTTP requests (transport=http) and open SSE streams (transport=sse).",
        ("transport",),
    ),
    "sessions_active": Family(
        LeanGauge,
        "docserver_mcp_sessions_active",
        "Open handshake-era MCP sessions (Mcp-Session-Id). The current protocol is stateless.",
    ),
    "tool_calls": Family(
        LeanCounter,
        "docserver_tool_calls",
        "MCP tool calls, by tool (registered name or `unknown`) and status (ok, error).",
        ("tool", "status"),
    ),
    "tool_duration": Family(
        LeanHistogram,
        "docserver_tool_call_duration_seconds",
        "MCP tool call duration, by tool.",
        ("tool",),
        LATENCY_BUCKETS,
    ),
    "query_duration": Family(
        LeanHistogram,
        "docserver_query_duration_seconds",
        "Store operation duration, by operation and backend.",
        _OPERATION,
        LATENCY_BUCKETS,
    ),
    "query_errors": Family(
        LeanCounter, "docserver_query_errors", "Store operations that failed, by operation and backend.", _OPERATION
    ),
    "embedding_duration": Family(
        LeanHistogram,
        "docserver_embedding_duration_seconds",
        "Embedding call duration, one observation per batch, by provider and model.",
        ("provider", "model"),
        LATENCY_BUCKETS,
    ),
    "embedding_batch_size": Family(
        LeanHistogram,
        "docserver_embedding_batch_size",
        "Texts per embedding batch, by provider.",
        ("provider",),
        BATCH_SIZE_BUCKETS,
    ),
    "embedding_errors": Family(
        LeanCounter,
        "docserver_embedding_errors",
        "Embedding batches that failed, by provider and reason "
        "(timeout, rate_limited, http_error, invalid_response, auth, not_found, connection, model).",
        ("provider", "reason"),
    ),
    "cache_requests": Family(
        LeanCounter,
        "docserver_cache_requests",
        "Cache lookups, by cache (embedding, search) and result (hit, miss).",
        ("cache", "result"),
    ),
    "search_results": Family(
        LeanHistogram,
        "docserver_search_results",
        "Results returned per search (0 = nothing found).",
        buckets=RESULT_COUNT_BUCKETS,
    ),
    "mcp_operation_duration": Family(
        LeanHistogram,
        "mcp_server_operation_duration_seconds",
        "MCP message handling duration (OTel MCP semantic conventions).",
        ("mcp_method_name", "gen_ai_tool_name", "error_type"),
        MCP_BUCKETS,
    ),
    "mcp_session_duration": Family(
        LeanHistogram,
        "mcp_server_session_duration_seconds",
        "Handshake-era MCP session duration, from initialize to its end (OTel MCP semantic conventions).",
        buckets=MCP_BUCKETS,
    ),
    "trace_spans_dropped": Family(
        LeanCounter,
        "docserver_trace_spans_dropped",
        "Spans not delivered to the trace collector, by reason (queue_full, export_failed).",
        ("reason",),
    ),
    "requests_rejected": Family(
        LeanCounter,
        "docserver_requests_rejected",
        "MCP requests refused before any work, by reason (overload: 503, rate_limit: 429).",
        ("reason",),
    ),
    "admission_in_flight": Family(
        LeanGauge,
        "docserver_admission_in_flight",
        "MCP requests holding an admission slot (at most DOCSERVER_MAX_INFLIGHT).",
    ),
    "admission_queued": Family(
        LeanGauge,
        "docserver_admission_queued",
        "MCP requests waiting for an admission slot (at most DOCSERVER_MAX_QUEUED).",
    ),
    "source_refreshes": Family(
        LeanCounter,
        "docserver_source_refresh",
        "Source refreshes run by this server (DOCSERVER_REFRESH_INTERVAL), by result (ok, unchanged, failed, busy).",
        ("result",),
    ),
    "fetch_requests": Family(
        LeanCounter,
        "docserver_fetch_requests",
        "Fetches from sources' origins by this server, by kind (git, http: one per crawled URL) and result.",
        ("kind", "result"),
    ),
    "fetch_bytes": Family(
        LeanCounter,
        "docserver_fetch_bytes",
        "Body bytes received by this server's crawls of website sources, by kind (http).",
        ("kind",),
    ),
    "auth_requests": Family(
        LeanCounter,
        "docserver_auth_requests",
        "Requests to /mcp checked for credentials (authorization configured), by result (ok, refused).",
        ("result",),
    ),
}
"""The request-path families, by the attribute of `Metrics` that holds each (absent with telemetry off)."""


class Metrics:
    """Every docserver metric, registered on one registry.

    With `instrumented=False` (the telemetry kill switch) only build info,
    auth failures and the process collectors exist: a switched-off replica
    shows as unmonitored, not as idle.
    """

    http_requests: LeanCounter
    http_duration: LeanHistogram
    active_connections: LeanGauge
    sessions_active: LeanGauge
    tool_calls: LeanCounter
    tool_duration: LeanHistogram
    query_duration: LeanHistogram
    query_errors: LeanCounter
    embedding_duration: LeanHistogram
    embedding_batch_size: LeanHistogram
    embedding_errors: LeanCounter
    cache_requests: LeanCounter
    search_results: LeanHistogram
    mcp_operation_duration: LeanHistogram
    mcp_session_duration: LeanHistogram
    trace_spans_dropped: LeanCounter
    requests_rejected: LeanCounter
    admission_in_flight: LeanGauge
    admission_queued: LeanGauge
    source_refreshes: LeanCounter
    fetch_requests: LeanCounter
    fetch_bytes: LeanCounter
    auth_requests: LeanCounter

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        tools: Iterable[str] = (),
        process_collectors: bool = True,
        instrumented: bool = True,
        exemplar: Exemplar | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.tools = frozenset(tools)
        r = self.registry

        self.build_info = Gauge(
            "docserver_build_info",
            "Always 1; labels describe the running build and configuration.",
            ["version", "python_version", "backend", "embedder"],
            registry=r,
        )
        self.auth_failures = Counter(
            "docserver_auth_failures",
            "Requests refused for a missing or wrong token, by endpoint (mcp, metrics, pprof) and reason.",
            ["endpoint", "reason"],
            registry=r,
        )
        if process_collectors:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        for endpoint, reason in AUTH_FAILURE_SERIES:
            self.auth_failures.labels(endpoint, reason)
        self.exemplar: Exemplar = exemplar or _no_exemplar
        """The trace id of the current sampled span, for histogram exemplars (given when tracing is on)."""

        if instrumented:
            self._register_request_metrics(r)

    def _register_request_metrics(self, r: CollectorRegistry) -> None:
        for attribute, family in REQUEST_FAMILIES.items():
            setattr(self, attribute, family.register(r))
        for reason in ("queue_full", "export_failed"):
            self.trace_spans_dropped.labels(reason)
        for reason in REJECTION_REASONS:
            self.requests_rejected.labels(reason)
        for result in ("ok", "refused"):
            self.auth_requests.labels(result)
        for result in SOURCE_REFRESH_RESULTS:
            self.source_refreshes.labels(result)
        for result in FETCH_RESULTS:
            self.fetch_requests.labels("git", result)
        for result in HTTP_FETCH_RESULTS:
            self.fetch_requests.labels("http", result)
        self.fetch_bytes.labels("http")
        # Every tool's series exist from the start, at zero: rates work from the first scrape.
        for tool in (*self.tools, "unknown"):
            for status in ("ok", "error"):
                self.tool_calls.labels(tool, status)
            self.tool_duration.labels(tool)

    def label_tool(self, name: object) -> str:
        return name if isinstance(name, str) and name in self.tools else "unknown"

    # -- what each layer is handed at construction --------------------------------

    def for_store(self) -> StoreInstruments:
        return StoreInstruments(
            LabelCache(self.query_duration), LabelCache(self.query_errors), self.exemplar, self.register_collector
        )

    def for_embedder(self) -> EmbedderInstruments:
        return EmbedderInstruments(
            LabelCache(self.embedding_duration),
            LabelCache(self.embedding_batch_size),
            LabelCache(self.embedding_errors),
            self.exemplar,
        )

    def for_search(self) -> SearchInstruments:
        return SearchInstruments(LabelCache(self.cache_requests), self.search_results)

    def for_http(self) -> HttpInstruments:
        return HttpInstruments(
            LabelCache(self.http_requests),
            LabelCache(self.http_duration),
            self.active_connections.labels("http"),
            self.active_connections.labels("sse"),
            self.exemplar,
        )

    def for_mcp(self) -> McpInstruments:
        return McpInstruments(
            LabelCache(self.mcp_operation_duration),
            LabelCache(self.tool_calls),
            LabelCache(self.tool_duration),
            self.sessions_active,
            self.mcp_session_duration,
            self.label_tool,
            self.exemplar,
        )

    def for_admission(self) -> AdmissionInstruments:
        return AdmissionInstruments(
            self.requests_rejected.labels("overload"),
            self.requests_rejected.labels("rate_limit"),
            self.admission_in_flight,
            self.admission_queued,
        )

    def for_auth(self, endpoint: str) -> Callable[[str], None]:
        """Counts one refused request to `endpoint`, by reason (from the closed set, else `malformed`)."""
        children = {reason: self.auth_failures.labels(e, reason) for e, reason in AUTH_FAILURE_SERIES if e == endpoint}
        malformed = children["malformed"]

        def count(reason: str) -> None:
            children.get(reason, malformed).inc()

        return count

    def set_build_info(self, *, backend: str, embedder: str) -> None:
        self.build_info.labels(__version__, platform.python_version(), backend, embedder).set(1)

    def register_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


class PoolCollector(Collector):
    """Connection-pool gauges read from the pool's own statistics at scrape time."""

    def __init__(self, stats: Callable[[], tuple[int, int, int]]) -> None:
        self._stats = stats  # -> (active, idle, pending)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        active, idle, pending = self._stats()
        connections = GaugeMetricFamily(
            "docserver_db_pool_connections", "Database pool connections, by state.", labels=["state"]
        )
        connections.add_metric(["active"], active)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "docserver_db_pool_pending_requests", "Callers waiting for a pool connection.", value=pending
        )


class LogDropCollector(Collector):
    """docserver_log_lines_dropped_total, read from the log writer at scrape time."""

    def __init__(self, dropped: Callable[[], int]) -> None:
        self._dropped = dropped

    def collect(self) -> Iterable[CounterMetricFamily]:
        yield CounterMetricFamily(
            "docserver_log_lines_dropped",
            "Log lines dropped because stdout was closed, broken or too slow to keep up.",
            value=self._dropped(),
        )
