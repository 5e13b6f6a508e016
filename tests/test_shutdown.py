"""Graceful shutdown of a real `docserver serve`: SIGTERM closes open SSE streams and exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import CORPUS
from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver

pytestmark = pytest.mark.slow

HANDSHAKE = "2025-11-25"
SHUTDOWN_TIMEOUT = 10.0
"""DOCSERVER_SHUTDOWN_TIMEOUT's default: how long uvicorn would wait for an open stream."""
EXIT_DEADLINE = 30.0
IDLE_EXIT_WITHIN = 5.0


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shutdown") / "docserver.db"
    result = run_cli("ingest", str(CORPUS), "--source", "corpus", env=docserver_env(path))
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def server(database: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own: every test here ends it."""
    with start_docserver(docserver_env(database), tmp_path / "serve.log") as process:
        yield process


async def open_session(http: httpx.AsyncClient, url: str) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}},
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    response = await http.post(url, headers=headers, content=json.dumps(init))
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
    headers |= {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": HANDSHAKE}
    assert (await http.post(url, headers=headers, content=initialized)).status_code == 202
    return session_id


async def wait_until_stream_registered(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
    """Poll until a second GET is refused with 409: the server now holds the first stream.

    The 200 headers of the first GET can reach us before the server has
    registered the stream; a SIGTERM in that gap would test nothing.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with http.stream("GET", url, headers=headers) as second:
            if second.status_code == 409:
                return
        await asyncio.sleep(0.02)  # polling interval; the 409, not the sleep, is what is awaited
    raise AssertionError("the server never registered the GET stream")


async def wait_for_exit(process: subprocess.Popen[bytes], deadline: float) -> int:
    return await asyncio.to_thread(process.wait, deadline)


async def test_sigterm_closes_the_sse_stream_and_exits_zero(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=EXIT_DEADLINE)) as http:
        session_id = await open_session(http, server.mcp_url)
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id, "MCP-Protocol-Version": HANDSHAKE}
        async with http.stream("GET", server.mcp_url, headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            await wait_until_stream_registered(http, server.mcp_url, headers)

            signalled_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(EXIT_DEADLINE):
                    async for _ in stream.aiter_raw():
                        pass
            except httpx.RemoteProtocolError:
                pytest.fail("the server dropped the SSE connection instead of ending the stream")
            stream_closed_after = time.monotonic() - signalled_at

        returncode = await wait_for_exit(server.process, EXIT_DEADLINE)
        exited_after = time.monotonic() - signalled_at

    assert returncode == 0, server.logs()
    # Closed by the drain, not by uvicorn giving up after the shutdown timeout.
    assert stream_closed_after < SHUTDOWN_TIMEOUT / 2
    assert exited_after < SHUTDOWN_TIMEOUT + 5
    assert "Traceback" not in server.logs()


async def test_sigterm_while_idle_exits_zero_quickly(server: ServerProcess) -> None:
    signalled_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    returncode = await wait_for_exit(server.process, EXIT_DEADLINE)

    assert returncode == 0, server.logs()
    assert time.monotonic() - signalled_at < IDLE_EXIT_WITHIN
    assert "Traceback" not in server.logs()
