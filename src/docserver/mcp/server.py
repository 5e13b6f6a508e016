"""Binds docserver's tools to the official MCP SDK, for Streamable HTTP and stdio."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from docserver import __version__
from docserver.config import Settings
from docserver.mcp.answers import RepeatedSearches
from docserver.mcp.arguments import ArgumentCheck
from docserver.mcp.event_store import MemoryEventStore
from docserver.mcp.http_adapter import McpHttpAdapter
from docserver.mcp.observe import McpObserver
from docserver.mcp.resources import register_resources
from docserver.mcp.sdk import ObservedSessionManager, drop_sdk_spans, lowlevel_server, unserve
from docserver.mcp.tools import TOOL_NAMES, register_tools
from docserver.mcp.versions import refuse_batch_era
from docserver.observability.instruments import McpInstruments
from docserver.observability.logging import event_line
from docserver.search import SearchService

INSTRUCTIONS = (
    "docserver searches technical documentation that has been ingested into it. "
    "Call search_docs with a question or keywords before answering questions about the documented "
    "software; call get_document with a result's document_id to read a whole file; call list_sources "
    "to see which documentation sets are available. Whole files are also resources: "
    "docs://{source}/{document_id}."
)

_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def build_mcp(
    service: SearchService,
    instruments: McpInstruments | None = None,
    *,
    log_queries: bool = False,
    observe: bool = True,
    trace_enduser: bool = True,
) -> MCPServer:
    """An MCPServer with the docserver tools bound to `service`, observed by McpObserver unless `observe` is off."""
    mcp: MCPServer = MCPServer(
        "docserver",
        title="docserver",
        description="Search technical documentation",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
        # No change notifications are ever sent (the tool list is fixed), so
        # `listChanged` is false in both eras: no subscriptions/listen stream.
        subscriptions=False,
    )
    register_tools(mcp, service)
    register_resources(lowlevel_server(mcp), service)
    unserve(mcp, "prompts/list", "prompts/get")  # no prompts: the capability is not declared
    drop_sdk_spans(mcp)
    mcp.middleware.append(refuse_batch_era)
    mcp.middleware.append(ArgumentCheck(mcp))  # plain words for arguments that do not fit the schema
    mcp.middleware.append(RepeatedSearches(service))  # innermost: a repeated search skips the SDK's model work
    if observe:
        observer = McpObserver(
            instruments,
            tool_log=event_line("tool_call", "docserver.mcp", scan=("query",)),
            label_tool=instruments.label_tool if instruments is not None else _label_tool,
            log_queries=log_queries,
            trace_enduser=trace_enduser,
        )
        mcp.middleware.insert(0, observer)  # outermost, where the SDK kept its span middleware
    return mcp


def _label_tool(name: object) -> str:
    return name if isinstance(name, str) and name in TOOL_NAMES else "unknown"


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: always on; loopback plus the configured hosts and origins."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*_LOOPBACK_HOSTS, *settings.http.allowed_hosts],
        allowed_origins=[*_LOOPBACK_ORIGINS, *settings.http.allowed_origins],
    )


def session_manager(
    mcp: MCPServer, settings: Settings, instruments: McpInstruments | None = None
) -> ObservedSessionManager:
    """The Streamable HTTP session manager serving both protocol eras.

    Stateful mode: handshake-era clients get `Mcp-Session-Id` sessions and the
    GET stream; requests that carry a current (2026-07-28) protocol version are
    served statelessly by the SDK's modern path. POST answers are plain JSON.
    """
    return ObservedSessionManager(
        # MCPServer builds its manager internally; ours adds session metrics,
        # so it is built here around the same low-level server.
        lowlevel_server(mcp),
        json_response=True,
        stateless=False,
        security_settings=transport_security(settings),
        session_idle_timeout=settings.http.session_idle_timeout,
        max_request_body_size=settings.http.max_request_bytes,
        instruments=instruments,
        # Without one, a GET reconnecting with Last-Event-ID ended in an HTTP 500.
        event_store=MemoryEventStore(),
    )


def mcp_asgi_app(manager: StreamableHTTPSessionManager) -> ASGIApp:
    """The /mcp endpoint: the SDK's app behind the wire fixes of http_adapter.py."""
    return McpHttpAdapter(StreamableHTTPASGIApp(manager))
