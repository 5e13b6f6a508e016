"""Serve an ASGI app over real HTTP on a loopback port, in this event loop (uvicorn, lifespan on).

    sock = loopback_socket()                       # the port is known before the app is built
    async with serve_over_http(app, sock) as url:  # "http://127.0.0.1:PORT"
        ...

Enter it in the test body: the lifespan's task groups run in uvicorn's task.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


class _Server(uvicorn.Server):
    """A uvicorn server that says when it listens, instead of being polled."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


@asynccontextmanager
async def serve_over_http(app: ASGIApp, sock: socket.socket, *, http: Any = "auto") -> AsyncIterator[str]:
    """`http`: uvicorn's HTTP protocol (its name, or a class such as docserver's shedding protocol)."""
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", http=http))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        listening.cancel()
        serving.result()
        raise RuntimeError("the server stopped during start-up")
    try:
        yield f"http://127.0.0.1:{port_of(sock)}"
    finally:
        server.should_exit = True
        await serving
