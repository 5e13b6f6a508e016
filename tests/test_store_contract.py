"""The Store contract: every backend must pass this suite unchanged.

The suite is parametrized over BACKENDS; a new backend joins it by adding one
Backend entry to that list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest

from docserver.errors import DocumentNotFoundError, EmbedderMismatchError, StoreError
from docserver.observability.instruments import StoreInstruments
from docserver.store import sqlite_driver
from docserver.store.base import ChunkInput, DocumentInput, EmbedderInfo, RankedId, SourceFilter, SourceOrigin, Store
from docserver.store.migrations import migrations
from docserver.store.postgres import PostgresOptions, PostgresStore
from docserver.store.sqlite import SqliteStore
from support.postgres_server import database_name, shared_server

DIMENSION = 4
INFO = EmbedderInfo("test", "contract-v1", DIMENSION)
OTHER_INFO = EmbedderInfo("test", "contract-v2", 8)

E0 = (1.0, 0.0, 0.0, 0.0)
E1 = (0.0, 1.0, 0.0, 0.0)
E2 = (0.0, 0.0, 1.0, 0.0)
E3 = (0.0, 0.0, 0.0, 1.0)


class MakeStore(Protocol):
    def __call__(self, folder: Path, instruments: StoreInstruments | None = None) -> Store: ...


@dataclass(frozen=True)
class Backend:
    """How the suite opens one backend, and reaches its database behind the store's back."""

    name: str
    make: MakeStore
    """A closed store (timing its queries into `instruments`); the same folder always means the same database."""
    execute: Callable[[Path, str, Sequence[Any]], list[tuple[Any, ...]]]
    """Run raw SQL (`?` placeholders) on that database (schema tests only); returns the rows."""
    cleanup: Callable[[Path], None] = lambda folder: None
    """Remove the folder's database, once its stores are closed."""


def _sqlite_execute(folder: Path, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    connection = sqlite_driver.connect(folder / "contract.db")
    try:
        return list(connection.execute(sql, params).fetchall())
    finally:
        connection.close()


def _sqlite_make(folder: Path, instruments: StoreInstruments | None = None) -> Store:
    return SqliteStore(folder / "contract.db", instruments=instruments)


SQLITE = Backend("sqlite", _sqlite_make, _sqlite_execute)


def _postgres_make(folder: Path, instruments: StoreInstruments | None = None) -> Store:
    """A store on the folder's own database in the session's PostgreSQL (created on first use)."""
    server = shared_server()
    name = database_name(str(folder))
    marker = folder / "postgres-database"
    if not marker.exists():
        server.create_database(name)
        marker.write_text(name)
    options = PostgresOptions(min_size=1, max_size=4)
    return PostgresStore(server.url(name), options, instruments=instruments)


def _postgres_execute(folder: Path, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return shared_server().execute(database_name(str(folder)), sql.replace("?", "%s"), params)


def _postgres_cleanup(folder: Path) -> None:
    if (folder / "postgres-database").exists():
        shared_server().drop_database(database_name(str(folder)))


POSTGRESQL = Backend("postgresql", _postgres_make, _postgres_execute, _postgres_cleanup)

BACKENDS = [SQLITE, POSTGRESQL]


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def unbound_store(backend: Backend, tmp_path: Path) -> AsyncIterator[Store]:
    opened = backend.make(tmp_path)
    await opened.open()
    yield opened
    await opened.close()
    backend.cleanup(tmp_path)


@pytest.fixture
async def store(unbound_store: Store) -> Store:
    await unbound_store.bind_embedder(INFO)
    return unbound_store


def vectors(*rows: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.array(rows, dtype=np.float32).reshape(len(rows), DIMENSION)


def document(path: str, *chunks: tuple[str, str, Sequence[float]], title: str = "") -> DocumentInput:
    """A document whose chunks are (heading, text, vector)."""
    content = "\n\n".join(text for _, text, _ in chunks)
    return DocumentInput(
        path=path,
        title=title or path,
        content_hash=f"hash-of-{content}",
        content=content,
        chunks=[ChunkInput(i, heading, text, i + 1, i + 1) for i, (heading, text, _) in enumerate(chunks)],
        vectors=vectors(*(vector for _, _, vector in chunks)),
    )


async def put(store: Store, source: str, *documents: DocumentInput) -> None:
    async with store.update_source(source) as writer:
        for item in documents:
            await writer.put_document(item)


async def paths_of(store: Store, ranked: list[RankedId]) -> list[str]:
    return [record.path for record in await store.get_chunks([item.chunk_id for item in ranked])]


async def text_paths(store: Store, query: str, source: SourceFilter = None) -> list[str]:
    return await paths_of(store, await store.search_text(query, source=source, limit=10))


async def vector_paths(store: Store, vector: Sequence[float], source: SourceFilter = None) -> list[str]:
    query = np.array(vector, dtype=np.float32)
    return await paths_of(store, await store.search_vector(query, source=source, limit=10))


# -- lifecycle and schema -------------------------------------------------------------------------


def test_the_store_satisfies_the_protocol(unbound_store: Store) -> None:
    assert isinstance(unbound_store, Store)


async def test_open_applies_every_migration_once(backend: Backend, unbound_store: Store, tmp_path: Path) -> None:
    rows = backend.execute(tmp_path, "SELECT version FROM schema_migrations ORDER BY version", ())
    assert [version for (version,) in rows] == [version for version, _ in migrations(backend.name)]


async def test_reopening_applies_nothing_and_keeps_the_data(backend: Backend, store: Store, tmp_path: Path) -> None:
    await put(store, "docs", document("a.md", ("", "kept across reopen", E0)))
    version = await store.corpus_version()
    await store.close()
    before = backend.execute(tmp_path, "SELECT version, applied_at FROM schema_migrations ORDER BY version", ())

    reopened = backend.make(tmp_path)
    await reopened.open()
    try:
        after = backend.execute(tmp_path, "SELECT version, applied_at FROM schema_migrations ORDER BY version", ())
        assert after == before
        assert await reopened.corpus_version() == version
        assert await reopened.embedder_info() == INFO
        assert await text_paths(reopened, "kept reopen") == ["a.md"]
    finally:
        await reopened.close()


async def test_a_database_with_a_newer_schema_is_refused(
    backend: Backend, unbound_store: Store, tmp_path: Path
) -> None:
    await unbound_store.close()
    newer = migrations(backend.name)[-1][0] + 1
    backend.execute(
        tmp_path, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (newer, "2999-01-01T00:00:00Z")
    )

    reopened = backend.make(tmp_path)
    try:
        with pytest.raises(StoreError, match="newer"):
            await reopened.open()
    finally:
        await reopened.close()


async def test_ping_answers_on_an_open_store(unbound_store: Store) -> None:
    await unbound_store.ping()


# -- the embedder binding -------------------------------------------------------------------------


async def test_an_unbound_store_has_no_embedder_info(unbound_store: Store) -> None:
    assert await unbound_store.embedder_info() is None


async def test_bind_embedder_records_the_embedder(unbound_store: Store) -> None:
    await unbound_store.bind_embedder(INFO)
    assert await unbound_store.embedder_info() == INFO


async def test_bind_embedder_refuses_another_embedder_once_chunks_exist(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "some text", E0)))
    with pytest.raises(EmbedderMismatchError) as raised:
        await store.bind_embedder(OTHER_INFO)
    assert INFO.describe() in str(raised.value)
    assert OTHER_INFO.describe() in str(raised.value)
    assert "run `docserver reindex`" in str(raised.value)
    assert await store.embedder_info() == INFO


async def test_update_source_refuses_when_the_recorded_embedder_changed_since_binding(
    backend: Backend, store: Store, tmp_path: Path
) -> None:
    await put(store, "docs", document("a.md", ("", "some text", E0)))
    other = backend.make(tmp_path)  # another process, which rebinds the emptied store
    await other.open()
    try:
        async with other.update_source("docs") as writer:
            await writer.delete_documents(["a.md"])
        await other.bind_embedder(OTHER_INFO)
        with pytest.raises(EmbedderMismatchError, match="docserver reindex"):
            await put(store, "docs", document("b.md", ("", "vectors of the old embedder", E1)))
        assert await other.list_sources() == []
    finally:
        await other.close()


async def test_bind_embedder_accepts_the_same_embedder_again(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "some text", E0)))
    await store.bind_embedder(INFO)
    assert await vector_paths(store, E0) == ["a.md"]


async def test_an_empty_store_can_be_rebound_to_another_embedder(store: Store) -> None:
    await store.bind_embedder(OTHER_INFO)
    assert await store.embedder_info() == OTHER_INFO


async def test_a_store_emptied_of_chunks_can_be_rebound(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "some text", E0)))
    async with store.update_source("docs") as writer:
        await writer.delete_documents(["a.md"])
    await store.bind_embedder(OTHER_INFO)
    assert await store.embedder_info() == OTHER_INFO


# -- writing: transactions and versions -----------------------------------------------------------


async def test_corpus_version_grows_with_every_commit(store: Store) -> None:
    versions = [await store.corpus_version()]
    for text in ("first", "second", "third"):
        await put(store, "docs", document("a.md", ("", text, E0)))
        versions.append(await store.corpus_version())
    assert versions == sorted(set(versions))
    assert len(versions) == 4


async def test_an_exception_inside_update_source_changes_nothing(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "original wording", E0)))
    version = await store.corpus_version()
    hashes = await store.document_hashes("docs")

    with pytest.raises(RuntimeError, match="interrupted"):
        async with store.update_source("docs") as writer:
            await writer.put_document(document("a.md", ("", "replacement wording", E1)))
            await writer.put_document(document("b.md", ("", "brand new page", E2)))
            raise RuntimeError("interrupted")

    assert await store.corpus_version() == version
    assert await store.document_hashes("docs") == hashes
    assert await text_paths(store, "original") == ["a.md"]
    assert await text_paths(store, "replacement") == []
    assert await text_paths(store, "brand") == []


async def test_an_exception_while_creating_a_source_leaves_no_source(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.update_source("new") as writer:
            await writer.put_document(document("a.md", ("", "text", E0)))
            raise RuntimeError("interrupted")
    assert await store.list_sources() == []


async def test_readers_see_the_previous_version_while_a_write_is_open(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "original wording", E0)))
    version = await store.corpus_version()

    async with store.update_source("docs") as writer:
        await writer.put_document(document("a.md", ("", "replacement wording", E1)))
        await writer.put_document(document("b.md", ("", "brand new page", E2)))
        assert await text_paths(store, "original") == ["a.md"]
        assert await text_paths(store, "replacement") == []
        assert await text_paths(store, "brand") == []
        assert await store.corpus_version() == version
        assert [source.documents for source in await store.list_sources()] == [1]

    assert await text_paths(store, "original") == []
    assert await text_paths(store, "replacement") == ["a.md"]


async def test_writer_stats_count_what_changed(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "a", E0)), document("b.md", ("", "b", E1)))
    async with store.update_source("docs") as writer:
        await writer.put_document(document("c.md", ("", "one", E0), ("", "two", E1)))
        await writer.delete_documents(["a.md"])
    assert (writer.stats.written, writer.stats.chunks, writer.stats.deleted) == (1, 2, 1)
    assert writer.stats.deleted_paths == ["a.md"]


async def test_put_document_refuses_a_vector_count_that_differs_from_the_chunks(store: Store) -> None:
    bad = DocumentInput("a.md", "A", "h", "text", [ChunkInput(0, "", "text", 1, 1)], vectors(E0, E1))
    with pytest.raises(StoreError, match="vectors"):
        async with store.update_source("docs") as writer:
            await writer.put_document(bad)


async def test_put_document_replaces_the_text_of_an_existing_path(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "obsolete wording", E0), ("", "stale paragraph", E1)))
    await put(store, "docs", document("a.md", ("", "current wording", E2)))

    assert await text_paths(store, "obsolete") == []
    assert await text_paths(store, "stale") == []
    assert await text_paths(store, "current") == ["a.md"]
    [source] = await store.list_sources()
    assert (source.documents, source.chunks) == (1, 1)


async def test_put_document_replaces_the_vectors_of_an_existing_path(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "obsolete", E0), ("", "stale", E1)))
    await put(store, "docs", document("a.md", ("", "current", E2)))

    ranked = await store.search_vector(np.array(E0, dtype=np.float32), source=None, limit=10)
    [record] = await store.get_chunks([item.chunk_id for item in ranked])
    assert len(ranked) == 1
    assert record.text == "current"


async def test_delete_documents_removes_them_from_both_searches(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "doomed page", E0)), document("b.md", ("", "kept page", E1)))
    async with store.update_source("docs") as writer:
        await writer.delete_documents(["a.md", "not-stored.md"])

    assert await store.document_hashes("docs") == {"b.md": "hash-of-kept page"}
    assert await text_paths(store, "doomed") == []
    assert await vector_paths(store, E0) == ["b.md"]


async def test_a_source_left_without_documents_disappears(store: Store) -> None:
    await put(store, "keep", document("k.md", ("", "kept", E0)))
    await put(store, "gone", document("g.md", ("", "gone", E1)))
    async with store.update_source("gone") as writer:
        await writer.delete_documents(["g.md"])
    assert [source.name for source in await store.list_sources()] == ["keep"]


async def test_list_sources_counts_documents_and_chunks_per_source(store: Store) -> None:
    await put(store, "beta", document("b.md", ("", "one", E0)))
    await put(store, "alpha", document("a.md", ("", "one", E0), ("", "two", E1)), document("c.md", ("", "x", E2)))
    summary = [(source.name, source.documents, source.chunks) for source in await store.list_sources()]
    assert summary == [("alpha", 2, 3), ("beta", 1, 1)]


async def test_list_sources_gives_the_version_each_was_ingested_with(store: Store) -> None:
    async with store.update_source("guide@3.11") as writer:
        await writer.put_document(document("a.md", ("", "one", E0)))
        await writer.record_origin(SourceOrigin("/docs/guide", version="3.11"))
    await put(store, "plain", document("p.md", ("", "one", E0)))
    assert [(source.name, source.version) for source in await store.list_sources()] == [
        ("guide@3.11", "3.11"),
        ("plain", None),
    ]


async def test_a_refresh_lock_has_one_holder_across_stores_and_none_after_release(
    backend: Backend, store: Store, tmp_path: Path
) -> None:
    other = backend.make(tmp_path)  # another process's store on the same database
    await other.open()
    try:
        async with (
            store.refresh_lock("docs") as first,
            other.refresh_lock("docs") as second,
            other.refresh_lock("elsewhere") as unrelated,
        ):
            assert (first, second, unrelated) == (True, False, True)
        async with other.refresh_lock("docs") as after:
            assert after
    finally:
        await other.close()


async def test_document_hashes_are_per_source(store: Store) -> None:
    await put(store, "alpha", document("same.md", ("", "alpha text", E0)))
    await put(store, "beta", document("same.md", ("", "beta text", E1)))
    assert await store.document_hashes("alpha") == {"same.md": "hash-of-alpha text"}
    assert await store.document_hashes("missing") == {}


# -- full-text search -----------------------------------------------------------------------------


@pytest.fixture
async def prose(store: Store) -> Store:
    await put(
        store,
        "docs",
        document("focused.md", ("Replication", "Replication copies each queue. Replication lag is reported.", E0)),
        document(
            "passing.md",
            (
                "Storage",
                "This long page is about storage, journals, memory, clients, consumers, "
                "producers, exchanges and bindings, and mentions replication only once.",
                E1,
            ),
        ),
        document("other1.md", ("Clients", "How to connect clients to the broker.", E2)),
        document("other2.md", ("Memory", "Memory limits and the high watermark.", E3)),
        document("other3.md", ("Exchanges", "Exchanges route messages to queues.", E2)),
    )
    await put(store, "elsewhere", document("foreign.md", ("Replication", "Replication in another source.", E0)))
    return store


async def test_search_text_ranks_the_focused_chunk_first(prose: Store) -> None:
    assert await text_paths(prose, "replication", source="docs") == ["focused.md", "passing.md"]


async def test_search_text_scores_decrease(prose: Store) -> None:
    ranked = await prose.search_text("replication", source=None, limit=10)
    scores = [item.score for item in ranked]
    assert scores == sorted(scores, reverse=True)


async def test_search_text_respects_the_limit(prose: Store) -> None:
    assert len(await prose.search_text("replication", source=None, limit=1)) == 1


async def test_search_text_filters_by_source(prose: Store) -> None:
    assert await text_paths(prose, "replication", source="elsewhere") == ["foreign.md"]
    assert sorted(await text_paths(prose, "replication")) == ["focused.md", "foreign.md", "passing.md"]


async def test_search_text_filters_by_several_sources(prose: Store) -> None:
    await put(prose, "third", document("third.md", ("Replication", "Replication, a third time.", E0)))
    assert sorted(await text_paths(prose, "replication", source=("elsewhere", "third"))) == ["foreign.md", "third.md"]


async def test_search_text_of_no_source_finds_nothing(prose: Store) -> None:
    assert await text_paths(prose, "replication", source=()) == []


async def test_search_text_matches_other_forms_of_a_word(prose: Store) -> None:
    assert (await text_paths(prose, "replicated", source="docs"))[0] == "focused.md"


async def test_search_text_returns_nothing_when_no_chunk_matches(prose: Store) -> None:
    assert await prose.search_text("zebra", source=None, limit=10) == []


async def test_search_text_with_only_stopwords_still_searches(prose: Store) -> None:
    # Both words are stopwords; the chunk holding both ranks above the one holding "to" alone.
    assert await text_paths(prose, "how to") == ["other1.md", "other3.md"]


@pytest.mark.parametrize(
    "query",
    [
        '"replication',
        'replication"',
        "replication*",
        "-replication",
        "replication -storage",
        "title:replication",
        "replication:",
        "(replication",
        "replication)",
        "NEAR(replication lag)",
        "replication NEAR lag",
        "replication AND OR NOT",
        "AND replication",
        "^replication",
        "replication + {lag}",
        "replication'); DROP TABLE chunks; --",
    ],
)
async def test_fts_syntax_in_a_query_is_taken_as_words(prose: Store, query: str) -> None:
    assert "focused.md" in await text_paths(prose, query)


@pytest.mark.parametrize("query", ['"', "*", "-", ":", "()", "NEAR", "AND", "OR NOT", "^", '""', "'", "-- ;"])
async def test_a_query_of_fts_syntax_alone_never_raises(prose: Store, query: str) -> None:
    ranked = await prose.search_text(query, source=None, limit=10)
    assert isinstance(ranked, list)


# -- vector search --------------------------------------------------------------------------------


@pytest.fixture
async def compass(store: Store) -> Store:
    """Chunks at known angles from E0."""
    await put(
        store,
        "docs",
        document("east.md", ("", "east", E0)),
        document("north-east.md", ("", "north east", (0.8, 0.6, 0.0, 0.0))),
        document("north.md", ("", "north", E1)),
        document("west.md", ("", "west", (-1.0, 0.0, 0.0, 0.0))),
    )
    await put(store, "elsewhere", document("foreign-east.md", ("", "east too", (0.9, 0.1, 0.0, 0.0))))
    return store


async def test_search_vector_returns_nearest_first(compass: Store) -> None:
    assert await vector_paths(compass, E0, source="docs") == ["east.md", "north-east.md", "north.md", "west.md"]


async def test_search_vector_scores_are_cosine_similarities(compass: Store) -> None:
    ranked = await compass.search_vector(np.array(E0, dtype=np.float32), source="docs", limit=10)
    assert [item.score for item in ranked] == pytest.approx([1.0, 0.8, 0.0, -1.0], abs=1e-5)


async def test_search_vector_respects_the_limit(compass: Store) -> None:
    ranked = await compass.search_vector(np.array(E0, dtype=np.float32), source=None, limit=2)
    assert await paths_of(compass, ranked) == ["east.md", "foreign-east.md"]


async def test_search_vector_filters_by_source(compass: Store) -> None:
    assert await vector_paths(compass, E0, source="elsewhere") == ["foreign-east.md"]


async def test_search_vector_filters_by_several_sources_and_keeps_the_limit(compass: Store) -> None:
    await put(compass, "third", document("third-north.md", ("", "north too", E1)))
    query = np.array(E0, dtype=np.float32)
    ranked = await compass.search_vector(query, source=("elsewhere", "third", "docs"), limit=3)
    assert await paths_of(compass, ranked) == ["east.md", "foreign-east.md", "north-east.md"]
    assert await vector_paths(compass, E0, source=("elsewhere", "third")) == ["foreign-east.md", "third-north.md"]


async def test_search_vector_of_no_source_finds_nothing(compass: Store) -> None:
    assert await vector_paths(compass, E0, source=()) == []


async def test_search_vector_with_a_zero_query_vector_does_not_raise(compass: Store) -> None:
    ranked = await compass.search_vector(np.zeros(DIMENSION, dtype=np.float32), source=None, limit=10)
    assert isinstance(ranked, list)


async def test_a_stored_zero_vector_does_not_break_vector_search(compass: Store) -> None:
    await put(compass, "docs", document("blank.md", ("", "---", (0.0, 0.0, 0.0, 0.0))))
    assert (await vector_paths(compass, E0, source="docs"))[0] == "east.md"


# -- reading chunks and documents -----------------------------------------------------------------


async def test_get_chunks_keeps_the_requested_order_and_drops_missing_ids(store: Store) -> None:
    await put(store, "docs", document("a.md", ("H1", "first", E0), ("H2", "second", E1), ("H3", "third", E2)))
    ids = [item.chunk_id for item in await store.search_vector(np.array(E0, dtype=np.float32), source=None, limit=3)]
    first, second, third = sorted(ids)
    missing = max(ids) + 1000

    records = await store.get_chunks([third, missing, first, second])

    assert [record.chunk_id for record in records] == [third, first, second]
    assert [record.text for record in records] == ["third", "first", "second"]


async def test_get_chunks_of_nothing_is_empty(store: Store) -> None:
    assert await store.get_chunks([]) == []


async def test_a_chunk_record_says_where_it_came_from(store: Store) -> None:
    await put(store, "docs", document("guide/a.md", ("Intro > Setup", "the text", E0), title="Guide A"))
    [ranked] = await store.search_text("text", source=None, limit=1)
    [record] = await store.get_chunks([ranked.chunk_id])
    assert (record.source, record.path, record.title, record.heading, record.text) == (
        "docs",
        "guide/a.md",
        "Guide A",
        "Intro > Setup",
        "the text",
    )
    assert (record.start_line, record.end_line) == (1, 1)


async def test_get_document_returns_the_whole_file(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "first part", E0), ("", "second part", E1), title="Title A"))
    [ranked] = await store.search_text("second", source=None, limit=1)
    [record] = await store.get_chunks([ranked.chunk_id])

    stored = await store.get_document(record.document_id)

    assert (stored.source, stored.path, stored.title) == ("docs", "a.md", "Title A")
    assert stored.content == "first part\n\nsecond part"
    assert stored.content_hash == "hash-of-first part\n\nsecond part"
    assert stored.chunk_count == 2


async def test_get_document_of_an_unknown_id_raises_document_not_found(store: Store) -> None:
    with pytest.raises(DocumentNotFoundError, match="424242"):
        await store.get_document(424242)


async def test_list_documents_pages_by_id_and_filters_by_source(store: Store) -> None:
    await put(store, "docs", document("a.md", ("", "alpha", E0)), document("b.md", ("", "beta", E1)))
    await put(store, "other", document("c.md", ("", "gamma", E0), title="Title C"))

    everything = await store.list_documents(None, after=0, limit=10)
    first = await store.list_documents(None, after=0, limit=2)
    rest = await store.list_documents(None, after=first[-1].document_id, limit=2)
    other = await store.list_documents(["other", "nosuch"], after=0, limit=10)

    assert [(entry.source, entry.path) for entry in everything] == [
        ("docs", "a.md"),
        ("docs", "b.md"),
        ("other", "c.md"),
    ]
    assert [entry.document_id for entry in everything] == sorted(entry.document_id for entry in everything)
    assert first + rest == everything
    assert [(entry.path, entry.title) for entry in other] == [("c.md", "Title C")]
    assert await store.list_documents([], after=0, limit=10) == []
