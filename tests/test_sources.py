"""Sources with an origin: filters, versions, remove and refresh from folders, in process on a real store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import CORPUS
from docserver.binding import bind_embedder
from docserver.embed.hashing import HashEmbedder
from docserver.errors import DocserverError
from docserver.sources.commands import source_lines
from docserver.sources.filters import FileFilter
from docserver.sources.git import GitRepositories
from docserver.sources.origin import parse_origin
from docserver.sources.request import SourceRequest, stored_name
from docserver.sources.service import Sources
from docserver.sources.web import CrawlLimits, WebCrawler
from docserver.store.base import SourceInfo, SourceRecord
from docserver.store.sqlite import SqliteStore

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
"""Debian's python3.11-doc, which `make system-deps` installs: real Sphinx output to filter."""


@pytest.fixture
async def sources(store: SqliteStore, tmp_path: Path) -> Sources:
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    web = WebCrawler(tmp_path / "web", CrawlLimits())
    return Sources(store, embedder, GitRepositories(tmp_path / "git"), web, max_chars=1500)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return Path(shutil.copytree(CORPUS, tmp_path / "docs"))


def request(folder: Path, name: str = "docs", version: str | None = None, **filters: tuple[str, ...]) -> SourceRequest:
    origin = parse_origin(str(folder))
    return SourceRequest(stored_name(name, version), origin, FileFilter(**filters), version, (origin.location,))


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("guide/install.md", True),
        ("_sources/library/os.rst.txt", False),
        ("library/_static/basic.css.txt", False),
        ("_templates/layout.html", False),
        ("node_modules/pkg/README.md", False),
        ("build/html/index.html", False),
        ("genindex-A.html", False),
        ("requirements.txt", False),
    ],
)
def test_default_excludes(path: str, kept: bool) -> None:
    assert FileFilter().allows(path) is kept


def test_include_and_exclude_globs() -> None:
    chosen = FileFilter(include=("guide/*",), exclude=("*.rst",))
    assert [chosen.allows(p) for p in ("guide/a.md", "guide/b.rst", "reference/c.md")] == [True, False, False]


def test_no_default_excludes_keeps_sphinx_copies() -> None:
    assert FileFilter(default_excludes=False).allows("_sources/os.rst.txt")


async def test_the_origin_and_options_are_recorded(sources: Sources, store: SqliteStore, docs: Path) -> None:
    await sources.ingest(request(docs, exclude=("*.txt",)))
    [record] = await store.source_records()
    assert (record.name, record.origin, record.documents, record.last_error) == ("docs", str(docs), 5, None)
    assert record.options["exclude"] == ["*.txt"]
    assert record.refreshed_at is not None


async def test_exclude_is_honoured(sources: Sources, store: SqliteStore, docs: Path) -> None:
    await sources.ingest(request(docs, exclude=("reference/",)))
    assert sorted(await store.document_hashes("docs")) == [
        "guide/backup.mdx",
        "guide/install.md",
        "guide/security.rst",
        "guide/tuning.md",
    ]


async def test_versions_live_side_by_side_and_remove_takes_one(
    sources: Sources, store: SqliteStore, docs: Path
) -> None:
    await sources.ingest(request(docs, "guide", "1.0"))
    await sources.ingest(request(docs, "guide", "2.0"))

    assert await sources.remove("guide@1.0") == 6

    assert [(r.name, r.version) for r in await store.source_records()] == [("guide@2.0", "2.0")]
    assert [info.name for info in await store.list_sources()] == ["guide@2.0"]


async def test_remove_deletes_chunks_and_vectors(sources: Sources, store: SqliteStore, docs: Path) -> None:
    await sources.ingest(request(docs))
    await sources.remove("docs")
    assert await store.search_text("install", source=None, limit=5) == []
    assert await store.search_vector(await sources.embedder.embed_query("install"), source=None, limit=5) == []


async def test_removing_an_unknown_source_is_an_error(sources: Sources) -> None:
    with pytest.raises(DocserverError, match="no such source: nope"):
        await sources.remove("nope")


async def test_force_re_embeds_unchanged_files(sources: Sources, docs: Path) -> None:
    await sources.ingest(request(docs))
    outcome = await sources.ingest(request(docs), force=True)
    assert outcome.summary is not None and (outcome.summary.changed, outcome.summary.unchanged) == (6, 0)


async def test_refresh_reads_the_recorded_origin(sources: Sources, docs: Path) -> None:
    await sources.ingest(request(docs, exclude=("reference/",)))
    (docs / "guide" / "new.md").write_text("# New page\n\nFresh words.\n")

    [outcome] = await sources.refresh()

    assert outcome.result == "ok" and outcome.summary is not None
    assert (outcome.summary.files, outcome.summary.changed) == (5, 1)


async def test_a_failed_refresh_keeps_the_documents_and_records_why(
    sources: Sources, store: SqliteStore, docs: Path
) -> None:
    await sources.ingest(request(docs))
    shutil.rmtree(docs)

    [outcome] = await sources.refresh(["docs"])

    [record] = await store.source_records()
    assert outcome.result == "failed"
    assert record.documents == 6
    assert record.last_error == f"path not found: {docs}"
    assert record.last_error_at is not None


async def test_refreshing_an_unknown_source_is_an_error(sources: Sources) -> None:
    with pytest.raises(DocserverError, match="no such source: nope"):
        await sources.refresh(["nope"])


def test_python_docs_sphinx_copies_are_left_out_by_default() -> None:
    from docserver.ingest.discover import discover

    found = [item.path for item in discover(PYTHON_DOCS).files]
    kept = [path for path in found if FileFilter().allows(path)]
    assert any(path.startswith("_sources/") for path in found)
    assert not [path for path in kept if path.startswith(("_sources/", "_static/"))]
    assert "library/os.html" in kept


def test_docserver_sources_shows_origins_and_errors_without_credentials() -> None:
    record = SourceRecord(
        name="internal",
        documents=3,
        origin="https://ci-bot:s3cret-pass@docs.example.com/guide/?token=abc123",
        options={},
        version=None,
        revision=None,
        refreshed_at="2026-12-05T10:00:00Z",
        last_error="fetch of https://ci-bot:s3cret-pass@docs.example.com/guide/ failed: 503",
        last_error_at="2026-12-05T11:00:00Z",
    )
    info = SourceInfo("internal", 3, 12, "2026-12-05T10:00:00Z")

    printed = "\n".join(source_lines([info], {"internal": record}))

    assert "docs.example.com/guide/" in printed and "failed: 503" in printed
    assert "s3cret-pass" not in printed and "ci-bot" not in printed and "abc123" not in printed
