"""Versions and freshness over MCP: the official client against a real `docserver serve`.

The database is filled the way an operator fills it (`docserver ingest
--version`), then one version is given a git origin with credentials and a
failed refresh whose message quotes them, through the store's own API: what
`list_sources` shows must carry neither.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from conftest import CORPUS
from docserver.store.base import SourceOrigin
from docserver.store.sqlite import SqliteStore
from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver

pytestmark = pytest.mark.slow

SECRET = "s3cret-deploy-token"
GIT_ORIGIN = f"git+https://deploy:{SECRET}@git.example.com/tool.git"
FAILURE = f"cannot reach https://{SECRET}@git.example.com/tool.git?access_token={SECRET}: connection refused"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mcp_versions")
    path = folder / "docserver.db"
    env = docserver_env(path)
    assert run_cli("ingest", str(CORPUS), "--source", "corpus", env=env).returncode == 0
    for version in ("1.9", "1.10"):
        pages = folder / f"tool-{version}"
        pages.mkdir()
        (pages / "frobnicate.md").write_text(f"# Frobnicate\n\nThe frobnicate setting of tool {version}.\n")
        ingested = run_cli("ingest", str(pages), "--source", "tool", "--version", version, env=env)
        assert ingested.returncode == 0, ingested.stderr
    asyncio.run(_record_git_origin_and_failure(path))
    return path


async def _record_git_origin_and_failure(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        async with store.update_source("tool@1.10") as writer:
            await writer.record_origin(SourceOrigin(GIT_ORIGIN, {"ref": "main"}, "1.10", "0123456789abcdef"))
        await store.record_refresh("tool@1.10", error=FAILURE)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def server(database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_docserver(
        docserver_env(database), tmp_path_factory.mktemp("mcp_versions_logs") / "serve.log"
    ) as process:
        yield process


async def call(server: ServerProcess, tool: str, arguments: dict[str, Any]) -> Any:
    async with Client(server.mcp_url, mode="auto") as client:
        result = await client.call_tool(tool, arguments)
    if result.is_error:
        return ("error", result.content[0].text)  # type: ignore[union-attr]
    return result.structured_content


def frobnicate_sources(found: dict[str, Any]) -> set[str]:
    return {hit["source"] for hit in found["results"] if "frobnicate" in hit["snippet"]}


async def test_list_sources_shows_each_source_with_its_versions_newest_first(server: ServerProcess) -> None:
    listed = await call(server, "list_sources", {})
    by_name = {source["name"]: source for source in listed["sources"]}
    assert sorted(by_name) == ["corpus", "tool"]
    tool = by_name["tool"]["versions"]
    assert [(v["version"], v["stored_as"], v["documents"], v["chunks"]) for v in tool] == [
        ("1.10", "tool@1.10", 1, 1),
        ("1.9", "tool@1.9", 1, 1),
    ]
    [corpus] = by_name["corpus"]["versions"]
    assert (corpus["version"], corpus["documents"]) == (None, len([p for p in CORPUS.rglob("*") if p.is_file()]))


async def test_list_sources_shows_freshness_and_the_origin_without_credentials(server: ServerProcess) -> None:
    listed = await call(server, "list_sources", {})
    newest, older = next(source for source in listed["sources"] if source["name"] == "tool")["versions"]
    assert newest["origin"] == "git+https://git.example.com/tool.git"
    assert newest["revision"] == "0123456789abcdef"
    assert newest["refreshed_at"] is not None and newest["last_error"].endswith("connection refused")
    assert SECRET not in str(listed)
    assert older["origin"].endswith("/tool-1.9") and older["last_error"] is None


async def test_search_docs_answers_from_the_newest_version_unless_told(server: ServerProcess) -> None:
    newest = await call(server, "search_docs", {"query": "frobnicate setting", "limit": 10})
    named = await call(server, "search_docs", {"query": "frobnicate setting", "limit": 10, "version": "1.9"})
    assert frobnicate_sources(newest) == {"tool@1.10"}
    assert frobnicate_sources(named) == {"tool@1.9"}


async def test_an_unknown_version_is_a_tool_error_naming_the_versions(server: ServerProcess) -> None:
    error = await call(server, "search_docs", {"query": "frobnicate", "source": "tool", "version": "2.0"})
    assert error[0] == "error"
    assert error[1].endswith("unknown version '2.0' of source 'tool'; its versions: 1.10, 1.9")
