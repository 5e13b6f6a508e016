"""The HTTP application: routes, middleware and one lifespan, described as data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from docserver.config import Settings
from docserver.mcp.server import build_mcp, mcp_asgi_app, session_manager
from docserver.runtime import Runtime, open_runtime


def create_app(settings: Settings, runtime: Runtime | None = None) -> Starlette:
    """Build the ASGI app. With `runtime` given (tests), the caller owns its lifecycle."""
    holder: dict[str, Runtime] = {}
    if runtime is not None:
        holder["runtime"] = runtime

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            current = holder.get("runtime")
            if current is None:
                current = await stack.enter_async_context(open_runtime(settings))
            manager = session_manager(build_mcp(current.service), settings)
            app.state.runtime = current
            app.state.session_manager = manager
            app.state.mcp_app = mcp_asgi_app(manager)
            await stack.enter_async_context(manager.run())
            yield

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        current: Runtime = request.app.state.runtime
        if current.draining:
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        checks = await current.check()
        failing = [name for name, state in checks.items() if state != "ok"]
        if failing:
            body = {"status": "unavailable", "failing": failing, "checks": checks}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "checks": checks})

    app = Starlette(
        routes=[
            Route("/mcp", _McpEndpoint(), methods=["GET", "POST", "DELETE"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return app


class _McpEndpoint:
    """The /mcp route.

    The MCP server needs the search service, which exists only once the
    lifespan has opened the store; this forwards to the app built then.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["app"].state.mcp_app(scope, receive, send)
