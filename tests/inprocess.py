"""Serve docserver in process and talk to it through httpx's ASGI transports: no sockets, no threads.

    async with serve_in_process(settings, runtime, metrics) as app:
        async with http_client(app) as http:          # raw HTTP (httpx)
            await http.get("/metrics")
        async with mcp_client(app, mode="legacy") as client:   # the official MCP SDK client
            await client.call_tool("search_docs", {"query": "tls"})

Enter both in the test body, not in an async fixture: the MCP session
manager and the SDK client run anyio task groups, which cannot straddle a
fixture's set-up and tear-down tasks.

The ASGI transports buffer each response until it ends, so a handshake-era
client's GET event stream stays pending in the background until the session
is deleted when the client closes; everything request/response works as over
a socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.types import ASGIApp

from docserver.app import create_app
from docserver.config import Settings
from docserver.mcp.tools import TOOL_NAMES
from docserver.observability.metrics import Metrics
from docserver.runtime import Runtime

BASE_URL = "http://127.0.0.1"
"""A loopback Host, so the MCP transport's DNS-rebinding guard lets the requests in."""
MCP_URL = f"{BASE_URL}/mcp"


def new_metrics() -> Metrics:
    """Metrics on a fresh registry, with the registered tool names, as the server builds them."""
    return Metrics(CollectorRegistry(), tools=TOOL_NAMES)


def starlette_app(app: ASGIApp) -> Starlette:
    """The Starlette app under any middleware wrappers (each keeps the wrapped app as `.app`)."""
    current: Any = app
    while not isinstance(current, Starlette):
        current = current.app
    return current


@asynccontextmanager
async def serve_in_process(settings: Settings, runtime: Runtime, metrics: Metrics | None) -> AsyncIterator[ASGIApp]:
    """`create_app(...)` with its lifespan entered (it starts the MCP session manager).

    The caller owns `runtime`, as in production: open before, close after.
    """
    app = create_app(settings, runtime, metrics)
    inner = starlette_app(app)
    async with inner.router.lifespan_context(inner):
        yield app


def http_client(app: ASGIApp, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """A raw HTTP client for `app` (use it as an async context manager)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL, headers=dict(headers or {}), timeout=30
    )


@asynccontextmanager
async def mcp_client(
    app: ASGIApp,
    *,
    mode: Literal["auto", "legacy"] = "auto",
    headers: Mapping[str, str] | None = None,
    on_response: Callable[[httpx2.Response], Awaitable[None]] | None = None,
) -> AsyncIterator[Client]:
    """The official MCP client connected to `app` over Streamable HTTP.

    `mode="auto"` negotiates the current (stateless) protocol; `mode="legacy"`
    forces the handshake era (initialize, Mcp-Session-Id, DELETE on close).
    `on_response` sees every HTTP response the client receives (to count them).
    """
    transport = httpx2.ASGITransport(app=app)
    hooks = {"response": [on_response]} if on_response is not None else {}
    async with httpx2.AsyncClient(
        transport=transport, headers=dict(headers or {}), event_hooks=hooks, timeout=30
    ) as http:
        async with Client(streamable_http_client(MCP_URL, http_client=http), mode=mode) as client:
            yield client
