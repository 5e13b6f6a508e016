"""Per-source access: a `docs:read:<source>` token sees that source only, in every tool.

Two sources hold the same corpus; the official MCP client calls the tools
with a token scoped to one of them, and another source's document must
look exactly like a missing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import ResourceTemplateReference

from docserver.access.tokens import new_token, token_entry
from docserver.config import Settings
from docserver.config.auth import AuthSettings
from docserver.ingest.pipeline import IngestOptions, ingest
from docserver.runtime import Runtime
from docserver.store.base import SourceOrigin
from support.inprocess import mcp_client, serve_in_process

EVERYTHING = new_token()
TEAM_A = new_token()
BOTH = new_token()
GUIDE = new_token()


@pytest.fixture
async def two_sources(settings: Settings, runtime: Runtime, corpus: Path, tmp_path: Path) -> Settings:
    await ingest(runtime.store, runtime.embedder, [corpus], "team-a")
    await ingest(runtime.store, runtime.embedder, [corpus], "team-b")
    await ingest(runtime.store, runtime.embedder, [corpus], "team-c")
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        token_entry("everything", EVERYTHING, ["docs:read"])
        + token_entry("team-a-bot", TEAM_A, ["docs:read:team-a"])
        + token_entry("a-and-b", BOTH, ["docs:read:team-a", "docs:read:team-b"])
    )
    return settings.model_copy(update={"auth": AuthSettings(api_tokens_file=tokens)})


async def call(
    settings: Settings,
    runtime: Runtime,
    token: str,
    calls: list[tuple[str, dict[str, Any]]],
    mode: Literal["auto", "legacy"] = "auto",
) -> list[Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        serve_in_process(settings, runtime, None) as app,
        mcp_client(app, headers=headers, mode=mode) as client,
    ):
        return [await _call(client, name, arguments) for name, arguments in calls]


async def _call(client: Client, name: str, arguments: dict[str, Any]) -> Any:
    result = await client.call_tool(name, arguments)
    if result.is_error:
        return ("error", result.content[0].text)  # type: ignore[union-attr]
    return result.structured_content


def sources_of(search: dict[str, Any]) -> set[str]:
    return {hit["source"] for hit in search["results"]}


async def test_a_scoped_token_lists_and_searches_its_source_only(two_sources: Settings, runtime: Runtime) -> None:
    listed, searched = await call(
        two_sources, runtime, TEAM_A, [("list_sources", {}), ("search_docs", {"query": "install", "limit": 10})]
    )
    assert [source["name"] for source in listed["sources"]] == ["team-a"]
    assert searched["results"] and sources_of(searched) == {"team-a"}


async def test_an_unscoped_token_sees_every_source(two_sources: Settings, runtime: Runtime) -> None:
    listed, searched = await call(
        two_sources, runtime, EVERYTHING, [("list_sources", {}), ("search_docs", {"query": "install", "limit": 20})]
    )
    assert {source["name"] for source in listed["sources"]} == {"team-a", "team-b", "team-c"}
    assert len(sources_of(searched)) > 1


async def test_another_teams_source_looks_like_one_that_does_not_exist(two_sources: Settings, runtime: Runtime) -> None:
    other, missing = await call(
        two_sources,
        runtime,
        TEAM_A,
        [
            ("search_docs", {"query": "install", "source": "team-b"}),
            ("search_docs", {"query": "install", "source": "x"}),
        ],
    )
    assert other[1].endswith("unknown source 'team-b'; available sources: team-a")
    assert other[1].replace("'team-b'", "'x'") == missing[1]  # word for word, but for the name asked


async def test_another_teams_document_looks_like_a_missing_one(two_sources: Settings, runtime: Runtime) -> None:
    [found] = await call(two_sources, runtime, EVERYTHING, [("search_docs", {"query": "install", "source": "team-b"})])
    theirs = found["results"][0]["document_id"]
    other, missing, own = await call(
        two_sources,
        runtime,
        TEAM_A,
        [("get_document", {"id": theirs}), ("get_document", {"id": 999_999}), ("search_docs", {"query": "install"})],
    )
    assert other[1].endswith(f"no document with id {theirs}; use a document_id from a search_docs result")
    assert other[1].replace(str(theirs), "999999") == missing[1]
    [mine] = await call(two_sources, runtime, TEAM_A, [("get_document", {"id": own["results"][0]["document_id"]})])
    assert mine["source"] == "team-a"


async def test_a_token_with_two_sources_searches_both_merged_by_score(two_sources: Settings, runtime: Runtime) -> None:
    listed, searched = await call(
        two_sources, runtime, BOTH, [("list_sources", {}), ("search_docs", {"query": "install", "limit": 10})]
    )
    assert {source["name"] for source in listed["sources"]} == {"team-a", "team-b"}
    assert sources_of(searched) == {"team-a", "team-b"}
    scores = [hit["score"] for hit in searched["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 10


async def test_a_handshake_era_session_is_scoped_too(two_sources: Settings, runtime: Runtime) -> None:
    listed, searched = await call(
        two_sources,
        runtime,
        TEAM_A,
        [("list_sources", {}), ("search_docs", {"query": "install", "limit": 10})],
        mode="legacy",
    )
    assert [source["name"] for source in listed["sources"]] == ["team-a"]
    assert sources_of(searched) == {"team-a"}


async def test_another_teams_document_is_no_resource_and_its_source_no_completion(
    two_sources: Settings, runtime: Runtime
) -> None:
    [found] = await call(two_sources, runtime, EVERYTHING, [("search_docs", {"query": "install", "source": "team-b"})])
    theirs = found["results"][0]["document_id"]
    headers = {"Authorization": f"Bearer {TEAM_A}"}
    async with (
        serve_in_process(two_sources, runtime, None) as app,
        mcp_client(app, headers=headers) as client,
    ):
        with pytest.raises(MCPError) as other:
            await client.read_resource(f"docs://team-b/{theirs}")
        with pytest.raises(MCPError) as missing:
            await client.read_resource("docs://team-b/999999")
        completed = await client.complete(
            ResourceTemplateReference(uri="docs://{source}/{document_id}"), {"name": "source", "value": "team"}
        )
    assert str(other.value).replace(str(theirs), "999999") == str(missing.value)
    assert completed.completion.values == ["team-a"]


async def test_a_scoped_token_lists_its_sources_documents_only(two_sources: Settings, runtime: Runtime) -> None:
    headers = {"Authorization": f"Bearer {BOTH}"}
    async with serve_in_process(two_sources, runtime, None) as app, mcp_client(app, headers=headers) as client:
        listed = await client.list_resources()

    assert {resource.uri.split("/")[2] for resource in listed.resources} == {"team-a", "team-b"}


@pytest.fixture
async def versioned(two_sources: Settings, runtime: Runtime, corpus: Path, tmp_path: Path) -> Settings:
    """Two versions of `guide` beside the teams' sources, and a token scoped to `guide` by name."""
    for version in ("1.0", "2.0"):
        options = IngestOptions(origin=SourceOrigin(str(corpus), version=version))
        await ingest(runtime.store, runtime.embedder, [corpus], f"guide@{version}", options=options)
    assert two_sources.auth.api_tokens_file is not None
    with two_sources.auth.api_tokens_file.open("a") as tokens:
        tokens.write(token_entry("guide-bot", GUIDE, ["docs:read:guide"]))
    return two_sources


async def test_a_source_scope_reads_every_version_of_it_and_searches_the_newest(
    versioned: Settings, runtime: Runtime
) -> None:
    listed, newest, older = await call(
        versioned,
        runtime,
        GUIDE,
        [
            ("list_sources", {}),
            ("search_docs", {"query": "install", "limit": 10}),
            ("search_docs", {"query": "install", "limit": 10, "version": "1.0"}),
        ],
    )
    [guide] = listed["sources"]
    assert (guide["name"], [v["version"] for v in guide["versions"]]) == ("guide", ["2.0", "1.0"])
    assert (sources_of(newest), sources_of(older)) == ({"guide@2.0"}, {"guide@1.0"})
    [document] = await call(versioned, runtime, GUIDE, [("get_document", {"id": older["results"][0]["document_id"]})])
    assert document["source"] == "guide@1.0"


async def test_another_sources_versions_look_like_a_source_that_does_not_exist(
    versioned: Settings, runtime: Runtime
) -> None:
    [listed, other] = await call(
        versioned,
        runtime,
        TEAM_A,
        [("list_sources", {}), ("search_docs", {"query": "install", "source": "guide", "version": "1.0"})],
    )
    assert [source["name"] for source in listed["sources"]] == ["team-a"]
    assert other[1].endswith("unknown source 'guide'; available sources: team-a")
