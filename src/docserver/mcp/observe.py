"""Per-message observation at the MCP layer, which owns tool calls.

`McpObserver` is the one ServerMiddleware that observes a message: the MCP
server span (OpenTelemetry MCP semantic conventions; it replaces the SDK's
own span middleware, see sdk.py), the operation and tool-call metrics, and
one log line per tool call. The span is built only for a sampled request:
`_meta.traceparent` (SEP-414) when the client sent one, else the HTTP
request's decision, else (stdio) the configured sampler.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from mcp.server.context import CallNext, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import attach, detach
from opentelemetry.trace import Link, StatusCode
from pydantic import ValidationError

from docserver.access.bearer import PRINCIPAL_SCOPE_KEY
from docserver.observability import tracing
from docserver.observability.context import current_correlation_id
from docserver.observability.eventline import EventLine
from docserver.observability.instruments import McpInstruments
from docserver.observability.metrics import label_mcp_method
from docserver.observability.recorded_span import RecordedSpan
from docserver.observability.tracing import TraceContext
from docserver.observability.w3c import parse_traceparent, parse_tracestate

_BAGGAGE = W3CBaggagePropagator()
_NO_TOOL = ""
_NOOP: AbstractContextManager[None] = nullcontext()


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


class McpObserver:
    """ServerMiddleware: the MCP span, metrics for every message, a log line for every tool call."""

    def __init__(
        self,
        instruments: McpInstruments | None,
        *,
        tool_log: EventLine | None,
        label_tool: Callable[[object], str],
        log_queries: bool = False,
        trace_enduser: bool = True,
    ) -> None:
        self.instruments = instruments
        self.tool_log = tool_log
        self.label_tool = label_tool
        self.log_queries = log_queries
        self.trace_enduser = trace_enduser

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        params = ctx.params or {}
        tool = self.label_tool(params.get("name")) if ctx.method == "tools/call" else _NO_TOOL
        meta: Mapping[str, Any] | None = ctx.meta
        baggage = _attach_meta_baggage(meta) if meta else None
        started = time.perf_counter()
        error_type = ""
        result: Any = None
        with _server_span(ctx, params, meta, self.trace_enduser) as span:
            try:
                result = await call_next(ctx)
            except MCPError as exc:
                error_type = str(exc.error.code)
                _mark(span, error_type, exc.error.message)
                raise
            except ValidationError:
                error_type = str(INVALID_PARAMS)
                _mark(span, error_type, "Invalid request parameters")
                raise
            except Exception as exc:
                error_type = type(exc).__qualname__
                if span is not None:
                    span.record_exception(exc)
                    span.set_attribute("error.type", error_type)
                    span.set_status(StatusCode.ERROR, str(exc)[:200])
                raise
            finally:
                elapsed = time.perf_counter() - started
                if tool and not error_type and _is_tool_error(result):
                    error_type = "tool_error"
                    if span is not None:
                        span.set_attribute("error.type", "tool_error")
                        span.set_status(StatusCode.ERROR)
                self._record(ctx.method, tool, error_type, elapsed)
                if tool and self.tool_log is not None:
                    self.tool_log(self._tool_fields(tool, error_type, elapsed, params, result, _principal(ctx)))
                if baggage is not None:
                    detach(baggage)
        return result

    def _record(self, method: str, tool: str, error_type: str, elapsed: float) -> None:
        instruments = self.instruments
        if instruments is None:
            return
        exemplar = instruments.exemplar()
        instruments.operation_duration(label_mcp_method(method), tool, error_type).observe(elapsed, exemplar)
        if tool:
            instruments.tool_calls(tool, "error" if error_type else "ok").inc()
            instruments.tool_duration(tool).observe(elapsed, exemplar)

    def _tool_fields(
        self, tool: str, error_type: str, elapsed: float, params: Any, result: Any, principal: str | None
    ) -> dict[str, Any]:
        fields = {
            "principal": principal,
            "tool": tool,
            "status": "error" if error_type else "ok",
            "error_type": error_type or None,
            "duration_ms": elapsed * 1000,
            **_query_fields(params.get("arguments"), self.log_queries),
        }
        count = _result_count(result)
        if count is not None:
            fields["results"] = count
        return fields


def _principal(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The authenticated caller's name (never its token), from the HTTP request the message came in; None on stdio."""
    scope = getattr(ctx.request, "scope", None)
    return scope.get(PRINCIPAL_SCOPE_KEY) if scope is not None else None


def _mark(span: Any, code: str, message: str) -> None:
    if span is not None:
        span.set_attributes({"error.type": code, "rpc.response.status_code": code})
        span.set_status(StatusCode.ERROR, message)


def _attach_meta_baggage(meta: Mapping[str, Any]) -> Any:
    """SEP-414 `_meta.baggage` joins the context, so it travels on with outbound calls."""
    value = meta.get("baggage")
    if not isinstance(value, str) or not value:
        return None
    return attach(_BAGGAGE.extract({"baggage": value}))


def _server_span(
    ctx: ServerRequestContext[Any, Any], params: Any, meta: Mapping[str, Any] | None, enduser: bool
) -> AbstractContextManager[Any]:
    """The MCP server span when this message is sampled; a shared no-op otherwise."""
    recorder = tracing.recorder()
    if recorder is None:
        return _NOOP
    parent = _meta_parent(meta) if meta else None
    reparented = parent is not None
    if reparented:
        if not tracing.decide(parent):
            return _NOOP
    elif tracing.request_trace() is not None:
        current = tracing.sampled_span()
        if current is None:
            return _NOOP  # the HTTP request was decided unsampled
        parent = current.get_span_context()
    elif not tracing.decide(None):  # stdio: the message is the root
        return _NOOP
    target = params.get("name") if ctx.method in ("tools/call", "prompts/get") else None
    target = target if isinstance(target, str) else None
    http = tracing.http_span_context() if reparented else None
    span = recorder.start(
        f"{ctx.method} {target}" if target else ctx.method,
        parent,
        _span_attributes(ctx, target, enduser),
        # Reparented by `_meta`: the HTTP server span is linked, so both traces lead to each other.
        links=[Link(http, {"docserver.link": "http_server_span"})] if http is not None else (),
    )
    return _Current(span, reparented)


class _Current:
    """The span is the current one for the layers below; one `_meta` reparented is also the request's trace.

    A class rather than a generator-based context manager: fewer calls per sampled message.
    """

    __slots__ = ("_reparented", "_request", "_token", "span")

    def __init__(self, span: RecordedSpan, reparented: bool) -> None:
        self.span = span
        self._reparented = reparented
        self._token: Any = None
        self._request: Any = None

    def __enter__(self) -> RecordedSpan:
        span = self.span
        self._token = tracing.enter_span(span)
        if self._reparented:
            self._request = tracing.enter_request(TraceContext.of(span.context))
        return span

    def __exit__(self, *exc_info: object) -> None:
        self.span.end()
        if self._request is not None:
            tracing.leave_request(self._request)
        tracing.leave_span(self._token)


def _meta_parent(meta: Mapping[str, Any]) -> Any:
    value = meta.get("traceparent")
    if not isinstance(value, str):
        return None
    state = meta.get("tracestate")
    return parse_traceparent([value], parse_tracestate([state]) if isinstance(state, str) else None)


def _span_attributes(ctx: ServerRequestContext[Any, Any], target: str | None, enduser: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {"mcp.method.name": ctx.method, "mcp.protocol.version": ctx.protocol_version}
    if ctx.request_id is not None:
        attributes["jsonrpc.request.id"] = str(ctx.request_id)
    if ctx.method == "tools/call":
        attributes["gen_ai.operation.name"] = "execute_tool"
        if target is not None:
            attributes["gen_ai.tool.name"] = target
    elif ctx.method == "prompts/get" and target is not None:
        attributes["gen_ai.prompt.name"] = target
    headers = getattr(ctx.request, "headers", None)
    session_id = headers.get("mcp-session-id") if headers is not None else None
    if session_id:
        attributes["mcp.session.id"] = session_id
    correlation_id = current_correlation_id()
    if correlation_id:
        attributes["docserver.correlation_id"] = correlation_id
    principal = _principal(ctx) if enduser else None
    if principal:
        attributes["enduser.id"] = principal
    return attributes
