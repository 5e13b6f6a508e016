"""PostgreSQL going away and coming back: at start-up, mid-run, under a server, under the CLI.

These tests stop and start a PostgreSQL of their own (not the session's shared one).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from conftest import CORPUS
from docserver.app import create_app
from docserver.config import Settings, load_settings
from docserver.runtime import open_runtime
from docserver.store.base import ChunkInput, DocumentInput, EmbedderInfo, StoreUnavailableError
from docserver.store.postgres import PostgresOptions, PostgresStore
from support.captured_logs import capture_events
from support.docserver_process import docserver_env, run_cli, start_docserver
from support.postgres_server import PostgresServer

PASSWORD = "never-Echo-th1s"


@pytest.fixture(scope="module")
def private_server() -> Iterator[PostgresServer]:
    # Not under pytest's temporary folder: a pytest starting elsewhere on the machine makes
    # that folder private to root, and the server (running as another user) then dies.
    folder = Path(tempfile.mkdtemp(prefix="docserver-pg-resilience-"))
    server = PostgresServer(folder / "data")
    yield server
    server.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database_url(private_server: PostgresServer, tmp_path: Path) -> Iterator[str]:
    """A fresh database on the private server, running; the URL carries a password (the server trusts anyone)."""
    private_server.start()
    name = f"r_{abs(hash(tmp_path)) % 10**12}"
    private_server.create_database(name)
    yield private_server.url(name, password=PASSWORD)
    private_server.start()  # a test that failed half-way may have left it stopped
    private_server.drop_database(name)


@pytest.fixture
def settings(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith(("DOCSERVER_", "LOG_")):
            monkeypatch.delenv(name)
    return load_settings(store={"url": database_url, "pool_timeout": 1.0, "connect_timeout": 2.0})


async def readiness(app: object) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:  # type: ignore[arg-type]
        return await http.get("/readyz")


async def until_ready(app: object, within: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        response = await readiness(app)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


# -- down at start ------------------------------------------------------------------------------------


async def test_a_server_starts_without_its_database_and_becomes_ready_when_it_comes_up(
    private_server: PostgresServer, settings: Settings
) -> None:
    private_server.stop()
    with capture_events() as events:
        async with open_runtime(settings, wait_for_store=False) as runtime:
            app = create_app(settings, runtime)
            down = await readiness(app)
            assert down.status_code == 503
            assert down.json()["failing"] == ["store"]
            reason = down.json()["checks"]["store"]
            assert "cannot connect to the database postgresql://postgres:***@/r_" in reason
            assert "retrying in the background" in reason
            assert PASSWORD not in down.text

            private_server.start()
            up = await until_ready(app)
            assert up.status_code == 200, up.text
            hits = await runtime.service.search("anything at all")
            assert hits == []

    warnings = [event for event in events if event["log_level"] in ("warning", "error")]
    assert [event["event"] for event in warnings] == ["store_unavailable"]
    assert [event["event"] for event in events if event["event"] == "store_connected"] == ["store_connected"]
    assert PASSWORD not in repr(events)


async def test_a_refusal_at_start_is_not_retried(private_server: PostgresServer, settings: Settings) -> None:
    async with open_runtime(settings) as runtime:
        await runtime.store.bind_embedder(EmbedderInfo("other", "model", 3))  # another embedder's database...
        async with runtime.store.update_source("docs") as writer:  # ...holding its vectors
            chunk = ChunkInput(0, "", "text", 1, 1)
            await writer.put_document(DocumentInput("a.md", "A", "h", "text", [chunk], np.ones((1, 3), np.float32)))
    with pytest.raises(Exception, match="the database holds vectors from other/model"):
        async with open_runtime(settings, wait_for_store=False):
            pass


@pytest.mark.slow
def test_a_command_without_its_database_fails_in_one_line(private_server: PostgresServer, database_url: str) -> None:
    private_server.stop()
    env = docserver_env(Path("unused.db"), {"DOCSERVER_DATABASE_URL": database_url})
    result = run_cli("sources", env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("docserver: error: cannot connect to the database postgresql://postgres:***@/")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert PASSWORD not in result.stderr + result.stdout


# -- restarted mid-run --------------------------------------------------------------------------------


async def test_a_write_in_flight_when_the_database_stops_fails_clearly(
    private_server: PostgresServer, database_url: str
) -> None:
    store = PostgresStore(database_url, PostgresOptions(min_size=1, max_size=2, pool_timeout=1.0))
    await store.open()
    await store.bind_embedder(EmbedderInfo("test", "m", 4))
    chunk = ChunkInput(0, "", "text", 1, 1)
    page = DocumentInput("a.md", "A", "h", "text", [chunk], np.ones((1, 4), np.float32))
    try:
        with pytest.raises(StoreUnavailableError, match="lost the connection to the database") as raised:
            async with store.update_source("docs") as writer:
                await writer.put_document(page)
                private_server.stop()
                await writer.put_document(page)
        assert PASSWORD not in str(raised.value)
        private_server.start()
        await store.ping()
        assert await store.list_sources() == []  # the interrupted update left nothing behind
        async with store.update_source("docs") as writer:
            await writer.put_document(page)
        assert [source.name for source in await store.list_sources()] == ["docs"]
    finally:
        await store.close()


def text_of(result: CallToolResult) -> str:
    return "\n".join(item.text for item in result.content if isinstance(item, TextContent))


@pytest.fixture
async def served(private_server: PostgresServer, database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """`docserver serve` on the private server's database, with the test corpus ingested; yields its URL."""
    extra = {"DOCSERVER_DATABASE_URL": database_url, "DOCSERVER_DB_POOL_TIMEOUT": "1", "OTEL_TRACES_EXPORTER": "none"}
    env = docserver_env(tmp_path / "unused.db", extra)
    ingested = run_cli("ingest", str(CORPUS), "--source", "corpus", env=env)
    assert ingested.returncode == 0, ingested.stderr
    with start_docserver(env, tmp_path / "serve.log") as server:
        yield server.url
        assert PASSWORD not in server.logs()
        assert "Traceback" not in server.logs()


@pytest.mark.slow
async def test_a_database_restart_gives_a_clear_tool_error_then_the_pool_recovers(
    private_server: PostgresServer, served: str
) -> None:
    async with Client(f"{served}/mcp") as client:
        before = await client.call_tool("search_docs", {"query": "rotate access tokens", "limit": 1})
        assert not before.is_error, text_of(before)

        private_server.stop()
        during = await client.call_tool("search_docs", {"query": "enable TLS certificate"})
        assert during.is_error
        assert "search is unavailable right now: the document store failed (" in text_of(during)
        assert "database postgresql://postgres:***@/" in text_of(during)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{served}/readyz")).status_code == 503

        private_server.start()
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while (await http.get(f"{served}/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "never ready again"
                await asyncio.sleep(0.2)
        after = await client.call_tool("search_docs", {"query": "enable TLS certificate", "limit": 1})
        assert not after.is_error, text_of(after)
        assert "security.rst" in text_of(after)


@pytest.mark.slow
async def test_docserver_serve_starts_without_its_database_and_becomes_ready(
    private_server: PostgresServer, database_url: str, tmp_path: Path
) -> None:
    extra = {"DOCSERVER_DATABASE_URL": database_url, "OTEL_TRACES_EXPORTER": "none"}
    env = docserver_env(tmp_path / "unused.db", extra)
    private_server.stop()
    with start_docserver(env, tmp_path / "serve.log") as server:
        async with httpx.AsyncClient() as http:
            down = await http.get(f"{server.url}/readyz")
            assert down.status_code == 503
            assert "store" in down.json()["failing"]
            private_server.start()
            deadline = time.monotonic() + 30
            while (await http.get(f"{server.url}/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "never became ready"
                await asyncio.sleep(0.2)  # polling readiness, the condition is what is awaited
        logs = server.logs()
    assert "Traceback" not in logs
    assert PASSWORD not in logs
    assert logs.count('"store_unavailable"') == 1
