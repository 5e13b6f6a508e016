"""Binds docserver's tools to the official MCP SDK, for Streamable HTTP and stdio."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from docserver import __version__
from docserver.config import Settings
from docserver.mcp.observe import McpObserver, ObservedSessionManager
from docserver.mcp.tools import register_tools
from docserver.observability.metrics import Metrics
from docserver.search import SearchService

INSTRUCTIONS = (
    "docserver searches technical documentation that has been ingested into it. "
    "Call search_docs with a question or keywords before answering questions about the documented "
    "software; call get_document with a result's document_id to read a whole file; call list_sources "
    "to see which documentation sets are available."
)

_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def build_mcp(
    service: SearchService, metrics: Metrics | None = None, *, log_queries: bool = False, observe: bool = True
) -> MCPServer:
    """An MCPServer with the docserver tools bound to `service`, observed by McpObserver unless `observe` is off."""
    mcp: MCPServer = MCPServer(
        "docserver",
        title="docserver",
        description="Search technical documentation",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    register_tools(mcp, service)
    if observe:
        mcp.middleware.append(McpObserver(metrics, log_queries=log_queries))
    return mcp


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: always on; loopback plus the configured hosts and origins."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*_LOOPBACK_HOSTS, *settings.allowed_hosts],
        allowed_origins=[*_LOOPBACK_ORIGINS, *settings.allowed_origins],
    )


def session_manager(mcp: MCPServer, settings: Settings, metrics: Metrics | None = None) -> ObservedSessionManager:
    """The Streamable HTTP session manager serving both protocol eras.

    Stateful mode: handshake-era clients get `Mcp-Session-Id` sessions and the
    GET stream; requests that carry a current (2026-07-28) protocol version are
    served statelessly by the SDK's modern path. POST answers are plain JSON.
    """
    return ObservedSessionManager(
        # MCPServer builds its manager internally; ours adds session metrics,
        # so it is built here around the same low-level server.
        mcp._lowlevel_server,
        json_response=True,
        stateless=False,
        security_settings=transport_security(settings),
        session_idle_timeout=settings.session_idle_timeout,
        max_request_body_size=settings.max_request_bytes,
        metrics=metrics,
    )


def mcp_asgi_app(manager: StreamableHTTPSessionManager) -> StreamableHTTPASGIApp:
    return StreamableHTTPASGIApp(manager)
