"""Running the server: HTTP under uvicorn with a graceful drain on SIGTERM, or stdio."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Literal

import uvicorn
from prometheus_client import disable_created_metrics
from starlette.types import ASGIApp

from docserver.access.shedding import shedding_protocol
from docserver.app import create_admin_app, create_app, new_metrics
from docserver.config import Settings
from docserver.empty_store import log_store_at_start
from docserver.mcp.sdk import ObservedSessionManager
from docserver.mcp.server import build_mcp
from docserver.observability.freshness import FreshnessCollector, store_records
from docserver.observability.logging import active_log_writer, get_logger
from docserver.observability.metrics import LogDropCollector, Metrics
from docserver.observability.sampling import ratio
from docserver.observability.span_export import BatchSettings
from docserver.observability.tracing_setup import Tracing, TracingConfig, configure_tracing, sampler_named
from docserver.runtime import Runtime, open_runtime
from docserver.sources.commands import open_sources
from docserver.sources.schedule import RefreshSchedule

log = get_logger(__name__)


class _DrainingServer(uvicorn.Server):
    """uvicorn, plus: on the first SIGTERM/SIGINT, report not-ready and close the SSE streams.

    uvicorn then stops accepting connections, lets in-flight calls finish for
    up to `shutdown_timeout` seconds, and runs the lifespan shutdown.
    Long-lived GET streams would otherwise hold the process for the whole
    timeout; closing them tells their clients to reconnect elsewhere.
    """

    def __init__(self, config: uvicorn.Config, runtime: Runtime, companions: list[uvicorn.Server]) -> None:
        super().__init__(config)
        self._runtime = runtime
        self._companions = companions

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            asyncio.get_running_loop().call_soon_threadsafe(self._drain)
        super().handle_exit(sig, frame)

    def _drain(self) -> None:
        self._runtime.draining = True
        app = self.config.loaded_app
        manager = _find_state(app, "session_manager")
        sessions = manager.close_streams() if isinstance(manager, ObservedSessionManager) else 0
        for companion in self._companions:
            companion.should_exit = True
        log.info("draining", readiness="503", sse_streams_closed=sessions)


class _CompanionServer(uvicorn.Server):
    """A second listener in the same process: the main server owns the signals and stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _find_state(app: object, name: str) -> object:
    """Look through middleware wrappers (`.app`) for the Starlette app's state attribute."""
    while app is not None:
        state = getattr(app, "state", None)
        if state is not None and hasattr(state, name):
            return getattr(state, name)
        app = getattr(app, "app", None)
    return None


def _ignore(sig: int, frame: FrameType | None) -> None:
    return None


def _config(
    app: ASGIApp, host: str, port: int, settings: Settings, *, lifespan: Literal["on", "off"]
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=shedding_protocol(app) or "auto",
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=int(settings.http.shutdown_timeout),
    )


async def serve_http(settings: Settings) -> None:
    """Open the store and embedder (failing fast with a clear error), then serve until SIGTERM."""
    if not settings.http.is_loopback and not settings.auth.enabled:
        log.warning(
            "listening_beyond_loopback",
            host=settings.http.host,
            hint="/mcp is reachable from other machines and anyone who reaches it can read every document; set "
            "DOCSERVER_API_TOKENS_FILE or DOCSERVER_AUTH_ISSUER to require tokens (this warning then stops), "
            "and DOCSERVER_ALLOWED_HOSTS to the names clients use",
        )
    # `_created` series would double the exposition for timestamps nobody queries.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = new_metrics(settings)
    request_metrics = metrics if settings.telemetry.enabled else None
    writer = active_log_writer()
    if writer is not None:
        metrics.register_collector(LogDropCollector(lambda: writer.dropped))
    tracing = start_tracing(settings, request_metrics)
    try:
        await _serve(settings, metrics, request_metrics, tracing)
    finally:
        if tracing is not None:
            # Queued spans get a bounded chance to leave; never on a request path.
            await asyncio.to_thread(tracing.shutdown)


async def _serve(
    settings: Settings, metrics: Metrics, request_metrics: Metrics | None, tracing: Tracing | None
) -> None:
    # A database that is not up yet is waited for in the background: the
    # server starts, /readyz names the database until it answers.
    async with open_runtime(settings, request_metrics, wait_for_store=False) as runtime:
        await log_store_at_start(settings, runtime)
        if request_metrics is not None:
            # Freshness is the store's: read when Prometheus scrapes, whoever refreshed the sources.
            metrics.register_collector(FreshnessCollector(store_records(runtime.store, asyncio.get_running_loop())))
        refreshing = _start_refresh_schedule(settings, runtime, request_metrics)
        if request_metrics is None:
            metrics.set_build_info(backend=runtime.store.backend, embedder=runtime.embedder.provider)
        companions: list[uvicorn.Server] = []
        if (admin := settings.http.admin_host_port) is not None:
            admin_app = create_admin_app(settings, runtime, metrics, tracing)
            companions.append(_CompanionServer(_config(admin_app, *admin, settings, lifespan="off")))
        app = create_app(settings, runtime, metrics, tracing)
        main = _DrainingServer(
            _config(app, settings.http.host, settings.http.port, settings, lifespan="on"), runtime, companions
        )
        # uvicorn re-raises the captured signal once it has shut down, to the
        # handler that was installed before it; a no-op one lets the runtime
        # close cleanly and the process exit 0.
        previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            await asyncio.gather(main.serve(), *(companion.serve() for companion in companions))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if refreshing is not None:
                refreshing.cancel()
                await asyncio.gather(refreshing, return_exceptions=True)


async def serve_stdio(settings: Settings) -> None:
    """Serve one MCP client over stdin/stdout (stdout carries the protocol, so logs go to stderr).

    No HTTP, so no /metrics to read: request metrics are not collected here.
    The SDK's MCP spans are exported when a collector is named (as for the other
    one-shot commands). The client closing stdin ends the process; it may be
    signalled soon after, so the last export gets one second at most.
    """
    tracing = start_tracing(settings, None)
    try:
        async with open_runtime(settings) as runtime:
            await log_store_at_start(settings, runtime)
            await build_mcp(runtime.service, None, log_queries=settings.telemetry.log_queries).run_stdio_async()
    finally:
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown, 1.0)


def _start_refresh_schedule(settings: Settings, runtime: Runtime, metrics: Metrics | None) -> asyncio.Task[None] | None:
    """The scheduled refresh of every source (DOCSERVER_REFRESH_INTERVAL), when one is set."""
    interval = settings.sources.refresh_interval
    if interval is None:
        return None
    sources = open_sources(settings, runtime, metrics)
    log.info("refresh_scheduled", interval_s=interval)
    return asyncio.create_task(RefreshSchedule(sources, interval).run(), name="docserver-refresh")


def start_tracing(settings: Settings, metrics: Metrics | None) -> Tracing | None:
    """Tracing, when a collector is named (see `TelemetrySettings.tracing_enabled`); None otherwise."""
    if not settings.telemetry.tracing_enabled:
        return None
    return configure_tracing(tracing_config(settings), metrics.trace_spans_dropped if metrics is not None else None)


def tracing_config(settings: Settings) -> TracingConfig:
    if settings.telemetry.traces_sampler:
        sampling = sampler_named(settings.telemetry.traces_sampler, settings.telemetry.traces_sampler_arg)
    else:
        sampling = ratio(settings.telemetry.trace_sample_rate)
    return TracingConfig(
        service_name=settings.telemetry.service_name,
        environment=settings.telemetry.environment,
        exporter=settings.telemetry.traces_exporter or "otlp",
        protocol=settings.telemetry.otlp_protocol,
        sampling=sampling,
        endpoint=settings.telemetry.otlp_endpoint,
        batch=BatchSettings(
            settings.telemetry.batch_schedule_delay_ms,
            settings.telemetry.batch_max_queue_size,
            settings.telemetry.batch_max_export_size,
        ),
    )
