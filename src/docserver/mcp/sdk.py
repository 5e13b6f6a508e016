"""The one place that relies on MCP SDK internals, written against mcp 2.3 (pinned in pyproject.toml).

The SDK has no public hook for four things docserver needs:
- a session's lifetime (`docserver_mcp_sessions_active`, `mcp_server_session_duration_seconds`):
  the session manager's opening request and discard are overridden;
- closing every session's GET stream on drain: the manager's session table is read;
- its own server, to build the session manager around: `MCPServer` builds one only
  inside `streamable_http_app()`, without the seams above;
- leaving a method unserved: `MCPServer` registers prompts handlers with no
  prompts, so `prompts` was declared; the low-level handler table is pruned;
- a tool's argument validation: pydantic ignores unknown arguments, so each
  tool's argument model is replaced by a subclass that forbids them; and the
  SDK returns pydantic's dump as the tool result, so mcp/arguments.py reruns
  the same validation on a failed call to say it in plain words.
The SDK's per-message span middleware is dropped through the public `middleware`
list (ours, mcp/observe.py, builds the span only for sampled messages).
`tests/test_sdk_contracts.py` fails when any name used here changes.
"""

from __future__ import annotations

import time
from typing import Any

from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import ConfigDict, ValidationError

from docserver.observability.instruments import McpInstruments
from docserver.observability.logging import get_logger

PRIVATE_NAMES = {
    MCPServer: ("_lowlevel_server", "_tool_manager"),
    Server: ("_request_handlers",),
    StreamableHTTPSessionManager: ("_serve_opening_request", "_discard_session", "_server_instances"),
}
"""Class -> the private names used below (methods on the class, attributes on an instance)."""

log = get_logger("docserver.mcp")


def drop_sdk_spans(mcp: MCPServer) -> None:
    """Remove the SDK's own span middleware: it builds a span object for every message, sampled or not."""
    mcp.middleware[:] = [item for item in mcp.middleware if not isinstance(item, OpenTelemetryMiddleware)]


def lowlevel_server(mcp: MCPServer) -> Any:
    return mcp._lowlevel_server


def forbid_unknown_arguments(mcp: MCPServer) -> dict[str, dict[str, Any]]:
    """Make every registered tool refuse arguments its schema does not list; tool name -> input schema.

    The schemas returned are the very dicts `tools/list` serves, and say
    `additionalProperties: false` from now on, as the validation does.
    """
    schemas = {}
    for tool in mcp._tool_manager.list_tools():
        model = tool.fn_metadata.arg_model
        strict = type(model.__name__, (model,), {"model_config": ConfigDict(extra="forbid")})
        tool.fn_metadata.arg_model = strict
        tool.parameters["additionalProperties"] = False
        schemas[tool.name] = tool.parameters
    return schemas


def argument_errors(mcp: MCPServer, tool: str, arguments: dict[str, Any]) -> list[str]:
    """The arguments the SDK's own validation of a call to `tool` rejects (missing ones included), by name."""
    registered = mcp._tool_manager.get_tool(tool)
    if registered is None:
        return []
    try:
        registered.fn_metadata.validate_arguments(arguments)
    except ValidationError as exc:
        return [str(error["loc"][0]) for error in exc.errors(include_url=False) if error["loc"]]
    return []


def unserve(mcp: MCPServer, *methods: str) -> None:
    """Unregister request handlers: capabilities follow the handler table, so nothing unserved is declared."""
    handlers = lowlevel_server(mcp)._request_handlers
    for method in methods:
        handlers.pop(method, None)


class ObservedSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, counting sessions and timing each from creation to end.

    It hooks two of the manager's seams: the opening request (a session
    counts once that request succeeded) and discard, which every way a
    session can end (DELETE, idle timeout, crash, shutdown) passes through.
    """

    def __init__(self, *args: Any, instruments: McpInstruments | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._instruments = instruments
        self._opened: dict[str, float] = {}

    async def _serve_opening_request(
        self, http_transport: StreamableHTTPServerTransport, scope: Any, receive: Any, send: Any
    ) -> None:
        await super()._serve_opening_request(http_transport, scope, receive, send)
        session_id = http_transport.mcp_session_id
        # Only a session whose opening request succeeded is still registered.
        if session_id is not None and session_id in self._server_instances:
            self._opened[session_id] = time.monotonic()
            if self._instruments is not None:
                self._instruments.sessions_active.inc()
            log.info("session_started")

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        opened = self._opened.pop(session_id, None)
        await super()._discard_session(session_id, transport)
        if opened is None:
            return
        lifetime = time.monotonic() - opened
        if self._instruments is not None:
            self._instruments.sessions_active.dec()
            self._instruments.session_duration.observe(lifetime)
        log.info("session_ended", duration_ms=round(lifetime * 1000, 3))

    def close_streams(self) -> int:
        """Close every session's standalone GET stream (the way to make a client reconnect); returns the count."""
        transports = list(self._server_instances.values())
        for transport in transports:
            transport.close_standalone_sse_stream()
        return len(transports)
