"""Running the server: HTTP under uvicorn with a graceful drain on SIGTERM, or stdio."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from docserver.app import create_app
from docserver.config import Settings
from docserver.mcp.server import build_mcp
from docserver.runtime import open_runtime

log = logging.getLogger(__name__)


class _DrainingServer(uvicorn.Server):
    """uvicorn, plus: on the first SIGTERM/SIGINT, report not-ready and close the SSE streams.

    uvicorn then stops accepting connections, lets in-flight calls finish for
    up to `shutdown_timeout` seconds, and runs the lifespan shutdown.
    Long-lived GET streams would otherwise hold the process for the whole
    timeout; closing them tells their clients to reconnect elsewhere.
    """

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            asyncio.get_running_loop().call_soon_threadsafe(self._drain)
        super().handle_exit(sig, frame)

    def _drain(self) -> None:
        state = self._app.state
        runtime = getattr(state, "runtime", None)
        if runtime is not None:
            runtime.draining = True
        manager = getattr(state, "session_manager", None)
        # The SDK keeps no public list of sessions; closing each session's
        # standalone GET stream is the documented way to make a client reconnect.
        transports = list(getattr(manager, "_server_instances", {}).values())
        for transport in transports:
            transport.close_standalone_sse_stream()
        log.info("draining: readiness is now 503; closed %d SSE streams", len(transports))


def _ignore(sig: int, frame: FrameType | None) -> None:
    return None


async def serve_http(settings: Settings) -> None:
    """Open the store and embedder (failing fast with a clear error), then serve until SIGTERM."""
    if not settings.is_loopback:
        log.warning(
            "listening on %s: /mcp is reachable from other machines and has no authentication of its own; "
            "set DOCSERVER_ALLOWED_HOSTS to the names clients use and put it behind your gateway",
            settings.host,
        )
    async with open_runtime(settings) as runtime:
        app = create_app(settings, runtime)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
            timeout_graceful_shutdown=int(settings.shutdown_timeout),
        )
        # uvicorn re-raises the captured signal once it has shut down, to the
        # handler that was installed before it; a no-op one lets the runtime
        # close cleanly and the process exit 0.
        previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            await _DrainingServer(config, app).serve()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def serve_stdio(settings: Settings) -> None:
    """Serve one MCP client over stdin/stdout (stdout carries the protocol, so logs go to stderr)."""
    async with open_runtime(settings) as runtime:
        await build_mcp(runtime.service).run_stdio_async()
