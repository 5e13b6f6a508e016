"""`docserver serve --stdio` driven by the official SDK's stdio client, as a desktop MCP host runs it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client import stdio as stdio_module
from mcp.client.session import IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client

from conftest import CORPUS, KNOWN_ANSWERS
from support.docserver_process import docserver_env, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stdio") / "docserver.db"
    result = run_cli("ingest", str(CORPUS), "--source", "corpus", env=docserver_env(path))
    assert result.returncode == 0, result.stderr
    return path


@dataclass
class StdioRun:
    """What one stdio session left behind: the client, the server process, stray messages, stderr."""

    client: Client
    stderr_path: Path
    processes: list[Any] = field(default_factory=list)
    transport_errors: list[Exception] = field(default_factory=list)


@asynccontextmanager
async def stdio_session(
    database: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> AsyncIterator[StdioRun]:
    """Spawn `python -m docserver serve --stdio` and connect the SDK client to it.

    The SDK does not expose the process it spawns; wrapping its spawn helper
    lets a test read the exit code after the client has closed.
    """
    processes: list[Any] = []
    spawn = stdio_module._create_platform_compatible_process

    async def recording_spawn(*args: Any, **kwargs: Any) -> Any:
        process = await spawn(*args, **kwargs)
        processes.append(process)
        return process

    monkeypatch.setattr(stdio_module, "_create_platform_compatible_process", recording_spawn)

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "docserver", "serve", "--stdio"],
        env=docserver_env(database, env),
        cwd=workdir,
    )
    stderr_path = workdir / "stderr.log"
    transport_errors: list[Exception] = []

    async def on_message(message: IncomingMessage) -> None:
        # A non-protocol line on stdout reaches the session as a parse exception.
        if isinstance(message, Exception):
            transport_errors.append(message)

    with stderr_path.open("w") as stderr:
        client = Client(stdio_client(params, errlog=stderr), mode="auto", message_handler=on_message)
        run = StdioRun(client, stderr_path, processes, transport_errors)
        async with client:
            yield run


async def test_stdio_session_lists_the_tools_and_finds_a_known_answer(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    query, path, _ = KNOWN_ANSWERS[0]
    async with stdio_session(database, tmp_path, monkeypatch) as run:
        listed = await run.client.list_tools()
        result = await run.client.call_tool("search_docs", {"query": query})

    assert {tool.name for tool in listed.tools} == {"search_docs", "list_sources", "get_document"}
    assert not result.is_error
    assert result.structured_content is not None
    assert result.structured_content["results"][0]["path"] == path


async def test_stdio_stdout_carries_only_protocol_and_logs_go_to_stderr(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stdio_session(database, tmp_path, monkeypatch, LOG_LEVEL="DEBUG") as run:
        result = await run.client.call_tool("list_sources", {})

    assert not result.is_error
    assert run.transport_errors == []
    assert run.stderr_path.read_text().strip(), "DEBUG logging wrote nothing: this test proves nothing"


async def test_stdio_server_exits_zero_when_the_client_closes(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stdio_session(database, tmp_path, monkeypatch) as run:
        await run.client.call_tool("list_sources", {})

    # The SDK closes stdin, then waits up to 2 s before it signals the process:
    # exit code 0 (not -SIGTERM/-SIGKILL) means the server left on its own.
    [process] = run.processes
    assert process.returncode == 0
    assert "Traceback" not in run.stderr_path.read_text()
