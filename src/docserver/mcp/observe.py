"""Per-message observation at the MCP layer, which owns tool calls and sessions.

`McpObserver` is a ServerMiddleware (it runs inside the SDK's own
OpenTelemetry middleware, which opens the MCP span): tool-call and
operation metrics, and one log line per tool call. `ObservedSessionManager`
counts handshake-era sessions and times them from creation to end.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from mcp.server.context import CallNext, ServerRequestContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import attach, detach
from pydantic import ValidationError

from docserver.observability import tracing
from docserver.observability.context import current_correlation_id
from docserver.observability.logging import get_logger
from docserver.observability.metrics import Metrics, label_mcp_method

log = get_logger("docserver.mcp")
_BAGGAGE = W3CBaggagePropagator()
_NO_TOOL = ""


def _query_fields(arguments: Any, log_queries: bool) -> dict[str, Any]:
    query = arguments.get("query") if isinstance(arguments, dict) else None
    if not isinstance(query, str):
        return {}
    if log_queries:
        return {"query": query[:1000]}
    digest = hashlib.sha256(query.encode("utf-8", "replace")).hexdigest()[:16]
    return {"query_length": len(query), "query_hash": digest}


def _is_tool_error(result: Any) -> bool:
    """The SDK hands middleware the wire form (a dict); a handler may return the model."""
    if isinstance(result, CallToolResult):
        return result.is_error
    return isinstance(result, dict) and result.get("isError") is True


def _result_count(result: Any) -> int | None:
    if isinstance(result, CallToolResult):
        structured = result.structured_content
    else:
        structured = result.get("structuredContent") if isinstance(result, dict) else None
    if isinstance(structured, dict):
        for key in ("results", "sources"):
            value = structured.get(key)
            if isinstance(value, list):
                return len(value)
    return None


def _attach_meta_baggage(meta: Any) -> Any:
    """SEP-414 `_meta.baggage` joins the context, so it travels on with outbound calls."""
    value = meta.get("baggage") if isinstance(meta, dict) else getattr(meta, "baggage", None)
    if not isinstance(value, str) or not value:
        return None
    return attach(_BAGGAGE.extract({"baggage": value}))


def _annotate_span(ctx: ServerRequestContext[Any, Any]) -> None:
    """Add to the SDK's MCP span what it leaves out: the session, the correlation id, the HTTP link."""
    span = tracing.sampled_span()
    if span is None:
        return
    headers = getattr(ctx.request, "headers", None)
    session_id = headers.get("mcp-session-id") if headers is not None else None
    if session_id:
        span.set_attribute("mcp.session.id", session_id)
    correlation_id = current_correlation_id()
    if correlation_id:
        span.set_attribute("docserver.correlation_id", correlation_id)
    # SEP-414: a `_meta` traceparent makes the client's trace the parent; the
    # HTTP server span is then linked, so both traces lead to each other.
    http = tracing.http_span_context.get()
    parent = getattr(span, "parent", None)
    if http is not None and http.is_valid and (parent is None or parent.span_id != http.span_id):
        span.add_link(http, {"docserver.link": "http_server_span"})


class McpObserver:
    """ServerMiddleware: metrics for every MCP message, a log line for every tool call."""

    def __init__(self, metrics: Metrics | None, *, log_queries: bool = False) -> None:
        self.metrics = metrics
        self.log_queries = log_queries
        self._operation_children: dict[tuple[str, str, str], Any] = {}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        params = ctx.params or {}
        tool = _NO_TOOL
        if ctx.method == "tools/call":
            tool = self.metrics.label_tool(params.get("name")) if self.metrics else str(params.get("name"))[:64]
        _annotate_span(ctx)
        token = _attach_meta_baggage(ctx.meta)
        started = time.perf_counter()
        error_type = ""
        result: Any = None
        try:
            result = await call_next(ctx)
        except MCPError as exc:
            error_type = str(exc.error.code)
            raise
        except ValidationError:
            error_type = str(INVALID_PARAMS)
            raise
        except Exception as exc:
            error_type = type(exc).__qualname__
            raise
        finally:
            elapsed = time.perf_counter() - started
            if tool and not error_type and _is_tool_error(result):
                error_type = "tool_error"
            self._record(ctx, tool, error_type, elapsed, params, result)
            if token is not None:
                detach(token)
        return result

    def _record(
        self,
        ctx: ServerRequestContext[Any, Any],
        tool: str,
        error_type: str,
        elapsed: float,
        params: Any,
        result: Any,
    ) -> None:
        metrics = self.metrics
        if metrics is not None:
            method = label_mcp_method(ctx.method)
            key = (method, tool, error_type)
            child = self._operation_children.get(key)
            if child is None:
                child = metrics.mcp_operation_duration.labels(method, tool, error_type)
                self._operation_children[key] = child
            exemplar = metrics.exemplar()
            child.observe(elapsed, exemplar)
            if tool:
                metrics.tool_call(tool, "error" if error_type else "ok").inc()
                metrics.tool_timer(tool).observe(elapsed, exemplar)
        if tool:
            fields = _query_fields(params.get("arguments"), self.log_queries)
            count = _result_count(result)
            if count is not None:
                fields["results"] = count
            log.info(
                "tool_call",
                tool=tool,
                status="error" if error_type else "ok",
                error_type=error_type or None,
                duration_ms=elapsed * 1000,
                **fields,
            )


class ObservedSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, counting sessions and timing each from creation to end.

    It hooks two of the manager's seams: the opening request (a session
    counts once that request succeeded) and discard, which every way a
    session can end (DELETE, idle timeout, crash, shutdown) passes through.
    """

    def __init__(self, *args: Any, metrics: Metrics | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics
        self._opened: dict[str, float] = {}

    async def _serve_opening_request(
        self, http_transport: StreamableHTTPServerTransport, scope: Any, receive: Any, send: Any
    ) -> None:
        await super()._serve_opening_request(http_transport, scope, receive, send)
        session_id = http_transport.mcp_session_id
        # Only a session whose opening request succeeded is still registered.
        if session_id is not None and session_id in self._server_instances:
            self._opened[session_id] = time.monotonic()
            if self._metrics is not None:
                self._metrics.sessions_active.inc()
            log.info("session_started")

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        opened = self._opened.pop(session_id, None)
        await super()._discard_session(session_id, transport)
        if opened is None:
            return
        lifetime = time.monotonic() - opened
        if self._metrics is not None:
            self._metrics.sessions_active.dec()
            self._metrics.mcp_session_duration.observe(lifetime)
        log.info("session_ended", duration_ms=round(lifetime * 1000, 3))

    def close_streams(self) -> int:
        """Close every session's standalone GET stream (the way to make a client reconnect); returns the count.

        The SDK keeps its sessions in a private table; this subclass is the one
        place that reads it.
        """
        transports = list(self._server_instances.values())
        for transport in transports:
            transport.close_standalone_sse_stream()
        return len(transports)
