"""Searching versions of a source: the newest by default, one on request, unknown ones named, cached apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conftest import CORPUS
from docserver.binding import bind_embedder
from docserver.embed.hashing import HashEmbedder
from docserver.errors import SearchInputError
from docserver.ingest.pipeline import IngestOptions, ingest
from docserver.search import SearchService
from docserver.store.base import SourceOrigin
from docserver.versions import version_key
from support.counting_store import CountingStore

VERSIONS = ("3.12", "3.9", "3.11")
"""Ingested in this order: the newest is decided by the labels, not by which came last."""


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[SearchService]:
    store = CountingStore(tmp_path / "versions.db")
    await store.open()
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    await ingest(store, embedder, [CORPUS], "corpus")
    searched = SearchService(store, embedder)
    for version in VERSIONS:
        await ingest_version(searched, tmp_path, "tool", version)
    yield searched
    await store.close()


async def ingest_version(service: SearchService, tmp_path: Path, name: str, version: str) -> None:
    """`docserver ingest --source NAME --version VERSION` of a one-page folder that says which version it is."""
    folder = tmp_path / f"{name}-{version}"
    folder.mkdir()
    (folder / "frobnicate.md").write_text(f"# Frobnicate\n\nThe frobnicate setting of {name} {version}.\n")
    origin = SourceOrigin(str(folder), version=version)
    stored = f"{name}@{version}"
    await ingest(service.store, service.embedder, [folder], stored, options=IngestOptions(origin=origin))


async def sources_found(service: SearchService, **arguments: Any) -> set[str]:
    """The sources of the frobnicate pages found (the hash embedder's vectors fill the rest with other pages)."""
    hits = await service.search("frobnicate setting", limit=10, **arguments)
    return {hit.source for hit in hits if "frobnicate" in hit.snippet}


def test_version_labels_sort_like_version_numbers() -> None:
    labels = ["3.12", "v3.10", "3.9", "main", "3.12rc1", "3.12.1", "3.11"]
    assert sorted([None, *labels], key=version_key) == [
        None,
        "main",
        "3.9",
        "v3.10",
        "3.11",
        "3.12rc1",
        "3.12",
        "3.12.1",
    ]


async def test_without_a_version_a_source_answers_from_its_newest_version(service: SearchService) -> None:
    assert await sources_found(service) == {"tool@3.12"}
    assert await sources_found(service, source="tool") == {"tool@3.12"}


async def test_sources_without_versions_still_answer_beside_versioned_ones(service: SearchService) -> None:
    hits = await service.search("journal flush interval", limit=3)
    assert hits[0].source == "corpus"


async def test_a_version_searches_that_version_only(service: SearchService) -> None:
    assert await sources_found(service, source="tool", version="3.9") == {"tool@3.9"}
    assert await sources_found(service, version="3.11") == {"tool@3.11"}


async def test_a_stored_name_still_names_one_version(service: SearchService) -> None:
    assert await sources_found(service, source="tool@3.11") == {"tool@3.11"}


async def test_an_unknown_version_is_an_error_naming_the_versions(service: SearchService) -> None:
    with pytest.raises(
        SearchInputError, match=r"unknown version '3\.10' of source 'tool'; its versions: 3\.12, 3\.11, 3\.9$"
    ):
        await service.search("frobnicate", source="tool", version="3.10")
    with pytest.raises(SearchInputError, match=r"unknown version '4'; versions: 3\.12, 3\.11, 3\.9$"):
        await service.search("frobnicate", version="4")


async def test_a_version_of_a_source_without_versions_says_so(service: SearchService) -> None:
    with pytest.raises(SearchInputError, match=r"unknown version '1\.0' of source 'corpus'; it has no versions"):
        await service.search("journal", source="corpus", version="1.0")


async def test_the_version_is_part_of_the_result_cache_key(service: SearchService) -> None:
    store = service.store
    assert isinstance(store, CountingStore)
    assert await sources_found(service, source="tool") == {"tool@3.12"}
    calls = store.calls["search_text"]
    assert await sources_found(service, source="tool", version="3.9") == {"tool@3.9"}
    assert await sources_found(service, source="tool") == {"tool@3.12"}  # from the cache
    assert store.calls["search_text"] == calls + 1


async def test_removing_the_newest_version_makes_the_next_one_answer(service: SearchService) -> None:
    assert await sources_found(service) == {"tool@3.12"}
    async with service.store.update_source("tool@3.12") as writer:
        await writer.delete_all()
    assert await sources_found(service) == {"tool@3.11"}


async def test_a_newer_version_ingested_later_takes_over(service: SearchService, tmp_path: Path) -> None:
    assert await sources_found(service) == {"tool@3.12"}
    await ingest_version(service, tmp_path, "tool", "3.13")
    assert await sources_found(service) == {"tool@3.13"}


async def test_a_callers_share_is_searched_at_its_newest_version(service: SearchService) -> None:
    mine = frozenset({"tool"})
    assert await sources_found(service, within=mine) == {"tool@3.12"}
    assert {hit.source for hit in await service.search("journal flush interval", within=mine)} <= {"tool@3.12"}
    with pytest.raises(SearchInputError, match=r"unknown source 'corpus'; available sources: tool$"):
        await service.search("journal", source="corpus", within=mine)
