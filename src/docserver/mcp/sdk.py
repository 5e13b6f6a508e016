"""The one place that relies on MCP SDK internals, written against mcp 2.3 (pinned in pyproject.toml).

The SDK has no public hook for four things docserver needs:
- a session's lifetime (`docserver_mcp_sessions_active`, `mcp_server_session_duration_seconds`):
  the session manager's opening request and discard are overridden;
- closing every session's GET stream on drain: the manager's session table is read;
- its own server, to build the session manager around: `MCPServer` builds one only
  inside `streamable_http_app()`, without the seams above;
- leaving a method unserved: `MCPServer` registers prompts handlers with no
  prompts, so `prompts` was declared; the low-level handler table is pruned.
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

from docserver.observability.instruments import McpInstruments
from docserver.observability.logging import get_logger

PRIVATE_NAMES = {
    MCPServer: ("_lowlevel_server",),
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
