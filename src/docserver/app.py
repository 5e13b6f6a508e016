"""The HTTP applications: routes, middleware and one lifespan, described as data.

`create_app` is the public app (/mcp, health, and unless an admin listener
is configured, /metrics and /debug/pprof). `create_admin_app` is the second
listener for DOCSERVER_ADMIN_ADDR, so operational endpoints never face the
public port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from docserver.access.authorization import admin_verifier, authenticated, resource_metadata
from docserver.access.gate import admission_gate
from docserver.access.metadata import metadata_routes
from docserver.config import Settings
from docserver.empty_store import readiness_details
from docserver.mcp.server import build_mcp, mcp_asgi_app, session_manager
from docserver.mcp.tools import TOOL_NAMES
from docserver.observability.context import current_correlation_id
from docserver.observability.exposition import metrics_access, metrics_route
from docserver.observability.logging import event_line
from docserver.observability.metrics import Metrics
from docserver.observability.middleware import ObservabilityMiddleware
from docserver.observability.profiling.endpoints import profiling_access, profiling_routes
from docserver.observability.tracing import current_exemplar
from docserver.observability.tracing_setup import Tracing
from docserver.runtime import Runtime


def new_metrics(settings: Settings, registry: CollectorRegistry | None = None) -> Metrics:
    """The metrics for one server process (tests pass their own registry); minimal with telemetry off.

    Histogram exemplars carry the trace id of sampled requests, when tracing is on.
    """
    exemplar = current_exemplar if settings.telemetry.tracing_enabled else None
    return Metrics(registry, tools=TOOL_NAMES, instrumented=settings.telemetry.enabled, exemplar=exemplar)


def create_app(
    settings: Settings, runtime: Runtime, metrics: Metrics | None = None, tracing: Tracing | None = None
) -> ASGIApp:
    """The public app. The caller owns `runtime` (opened before, closed after).

    `metrics` serves /metrics; request instrumentation uses `runtime.metrics`,
    which is None when telemetry is off.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            instruments = runtime.metrics.for_mcp() if runtime.metrics is not None else None
            mcp = build_mcp(
                runtime.service,
                instruments,
                log_queries=settings.telemetry.log_queries,
                observe=settings.telemetry.enabled,
                trace_enduser=settings.telemetry.trace_enduser,
            )
            manager = session_manager(mcp, settings, instruments)
            app.state.session_manager = manager
            app.state.mcp_app = mcp_asgi_app(manager)
            await stack.enter_async_context(manager.run())
            yield

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if runtime.draining:
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        checks = await runtime.check()
        failing = [name for name, state in checks.items() if state != "ok"]
        if failing:
            body = {"status": "unavailable", "failing": failing, "checks": checks}
            return JSONResponse(body, status_code=503)
        details = await readiness_details(runtime.service)  # says when nothing is indexed
        return JSONResponse({"status": "ok", "checks": checks, **details})

    routes: list[BaseRoute] = [
        Route("/mcp", _mcp_endpoint(settings, runtime.metrics, metrics), methods=["GET", "POST", "DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *metadata_routes(settings.auth),
    ]
    if settings.http.admin_addr is None:
        routes += admin_routes(settings, metrics)
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=_ERROR_HANDLERS)
    app.state.runtime = runtime
    return _shedding(_observed(app, routes, settings, runtime.metrics, tracing), settings, runtime.metrics)


def create_admin_app(
    settings: Settings, runtime: Runtime, metrics: Metrics | None, tracing: Tracing | None = None
) -> ASGIApp:
    """The admin listener's app: /metrics and /debug/pprof only."""
    routes = admin_routes(settings, metrics)
    app = Starlette(routes=routes, exception_handlers=_ERROR_HANDLERS)
    return _observed(app, routes, settings, runtime.metrics, tracing)


def admin_routes(settings: Settings, metrics: Metrics | None) -> list[BaseRoute]:
    """/metrics and /debug/pprof, behind their own tokens or a docs:admin bearer (DOCSERVER_ADMIN_AUTH)."""
    admin = admin_verifier(settings.auth)
    challenge_url = resource_metadata(settings.auth)
    routes: list[BaseRoute] = []
    if metrics is not None:
        routes.append(metrics_route(metrics, metrics_access(settings, admin, challenge_url)))
    on_failure = _pprof_failures(metrics.for_auth("pprof")) if metrics is not None else None
    access = profiling_access(settings, admin, challenge_url)
    routes += profiling_routes(settings, on_auth_failure=on_failure, access=access)
    return routes


def _shedding(app: ASGIApp, settings: Settings, metrics: Metrics | None) -> ASGIApp:
    """The in-flight slots (DOCSERVER_MAX_INFLIGHT) outermost, in front of everything else.

    Under a flood the event loop's time goes to the requests it refuses; refused
    here, one costs uvicorn's parsing and two prebuilt `send`s, not the
    observability middleware, routing and authentication (about 3 times as many
    refusals a second in bench/overload.py). The rate limit stays behind
    authentication, where the caller is known.
    """
    instruments = metrics.for_admission() if metrics is not None else None
    return admission_gate(app, settings.admission, instruments, rate_limit=False)


def _observed(
    app: Starlette, routes: list[BaseRoute], settings: Settings, metrics: Metrics | None, tracing: Tracing | None
) -> ASGIApp:
    if not settings.telemetry.enabled:
        return app  # the kill switch: no request middleware at all
    return ObservabilityMiddleware(
        app,
        routes=route_templates(routes),
        instruments=metrics.for_http() if metrics is not None else None,
        access_log=event_line("http_request", "docserver.http", scan=("path",)),
        tracing=tracing,
        trace_enduser=settings.telemetry.trace_enduser,
    )


def route_templates(routes: list[BaseRoute]) -> list[str]:
    """Every path the app serves, including those inside mounts: the closed set of `route` labels."""
    templates: list[str] = []
    for route in routes:
        path = getattr(route, "path", None)
        children = getattr(route, "routes", None)
        if children:
            templates += [path.rstrip("/") + child for child in route_templates(children)] if path else []
        elif path:
            templates.append(path)
    return templates


def _mcp_endpoint(settings: Settings, instrumented: Metrics | None, exported: Metrics | None) -> ASGIApp:
    """/mcp, behind the rate limit when one is configured, behind authentication when it is.

    Authentication comes first, so the rate limit counts per principal (the in-flight slots are outermost:
    see `_shedding`).
    Auth failures are counted on the exported registry, even with telemetry off.
    """
    instruments = instrumented.for_admission() if instrumented is not None else None
    endpoint = admission_gate(_McpEndpoint(), settings.admission, instruments, slots=False)
    on_failure = exported.for_auth("mcp") if exported is not None else None
    if instrumented is None:
        return authenticated(endpoint, settings.auth, on_failure)
    accepted, refused = instrumented.auth_requests.labels("ok"), instrumented.auth_requests.labels("refused")

    def count_refusal(reason: str) -> None:
        refused.inc()
        if on_failure is not None:
            on_failure(reason)

    return authenticated(endpoint, settings.auth, count_refusal, accepted.inc)


class _McpEndpoint:
    """The /mcp route.

    The MCP session manager is created in the lifespan (it runs a task
    group); this forwards to the app built then.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["app"].state.mcp_app(scope, receive, send)


def _error_body(message: str) -> dict[str, str]:
    body = {"error": message}
    correlation_id = current_correlation_id()
    if correlation_id:
        body["correlation_id"] = correlation_id
    return body


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(_error_body(exc.detail), status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(_error_body("internal server error"), status_code=500)


_PPROF_REASONS = {"wrong_token": "unknown_token", "unsupported_scheme": "malformed"}
"""The profiling gate's refusal reasons, as docserver_auth_failures_total names them."""


def _pprof_failures(count: Callable[[str], None]) -> Callable[[str], None]:
    def count_pprof(reason: str) -> None:
        count(_PPROF_REASONS.get(reason, reason))

    return count_pprof


_ERROR_HANDLERS = {HTTPException: _http_error, Exception: _internal_error}
