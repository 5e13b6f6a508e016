"""Serve docserver in process and talk to it through httpx's ASGI transports: no sockets, no threads.

    metrics = new_metrics()
    runtime = Runtime(settings, store, embedder, metrics)
    async with serve_in_process(settings, runtime, metrics) as app:
        async with http_client(app) as http:                       # raw HTTP (httpx)
            await http.get("/metrics")
        async with mcp_client(app, mode="legacy") as client:       # the official MCP SDK client
            await client.call_tool("search_docs", {"query": "tls"})

Enter both in the test body, not in an async fixture: the MCP session
manager and the SDK client run anyio task groups, which cannot straddle a
fixture's set-up and tear-down tasks.

The ASGI transports buffer each response until it ends. Request/response
exchanges work as over a socket; a handshake-era client's GET event stream
stays pending in the background until the client deletes its session on
close, which ends the stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
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
CURRENT = "2026-07-28"
HANDSHAKE = "2025-11-25"
ACCEPT_BOTH = "application/json, text/event-stream"


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
async def serve_in_process(
    settings: Settings, runtime: Runtime, metrics: Metrics | None, **app_options: Any
) -> AsyncIterator[ASGIApp]:
    """`create_app(settings, runtime, metrics, **app_options)` with its lifespan entered.

    The lifespan starts the MCP session manager. The caller owns `runtime`,
    as in production: opened before, closed after.
    """
    app = create_app(settings, runtime, metrics, **app_options)
    inner = starlette_app(app)
    async with inner.router.lifespan_context(inner):
        yield app


def http_scope(
    method: str, path: str, headers: list[tuple[bytes, bytes]], host: bytes = b"127.0.0.1"
) -> dict[str, Any]:
    """An ASGI HTTP scope for driving an app directly (headers reach it exactly as given, after Host)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host), *headers],
        "client": ("127.0.0.1", 50000),
        "server": (host.decode(), 80),
    }


def http_client(app: ASGIApp, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """A raw HTTP client for `app`; use it as an async context manager."""
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
    """The official MCP client, connected to `app` over Streamable HTTP.

    `mode="auto"` negotiates the current (stateless) protocol; `mode="legacy"`
    forces the handshake era (initialize, Mcp-Session-Id, DELETE on close).
    `on_response` sees every HTTP response the client receives, e.g. to count them.
    """
    hooks = {"response": [on_response]} if on_response is not None else {}
    transport = httpx2.ASGITransport(app=app)
    async with (
        httpx2.AsyncClient(transport=transport, headers=dict(headers or {}), event_hooks=hooks, timeout=30) as http,
        Client(streamable_http_client(MCP_URL, http_client=http), mode=mode) as client,
    ):
        yield client


def current_request(
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    header_method: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> tuple[dict[str, str], str]:
    """(headers, body) of a raw 2026-07-28 JSON-RPC POST, as the SDK client builds it.

    `name` goes to the `Mcp-Name` header (tools/call); `header_method`
    overrides the `Mcp-Method` header, to send one that contradicts the body;
    `meta` adds keys to the request's `_meta` (e.g. W3C trace context).
    """
    headers = {
        "Accept": ACCEPT_BOTH,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": CURRENT,
        "Mcp-Method": header_method if header_method is not None else method,
    }
    if name is not None:
        headers["Mcp-Name"] = name
    meta = {
        PROTOCOL_VERSION_META_KEY: CURRENT,
        CLIENT_CAPABILITIES_META_KEY: {},
        CLIENT_INFO_META_KEY: {"name": "docserver-tests", "version": "0"},
        **(meta or {}),
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**(params or {}), "_meta": meta}}
    return headers, json.dumps(body)


def handshake_request(method: str, session_id: str) -> tuple[dict[str, str], str]:
    """(headers, body) of a raw handshake-era JSON-RPC POST inside session `session_id`."""
    headers = {
        "Accept": ACCEPT_BOTH,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": HANDSHAKE,
        "Mcp-Session-Id": session_id,
    }
    return headers, json.dumps({"jsonrpc": "2.0", "id": 1, "method": method})
