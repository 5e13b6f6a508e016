"""PostgresStore beyond the shared contract: pgvector, migrations with replicas, the pool, clear errors.

Against the session's real PostgreSQL + pgvector (tests/postgres_server.py), a fresh database per test.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from docserver.config import load_settings
from docserver.errors import ConfigError, StoreError
from docserver.observability.metrics import Metrics
from docserver.store import postgres_exact, postgres_schema, postgres_sql, postgres_vector
from docserver.store.base import ChunkInput, DocumentInput, EmbedderInfo, StoreUnavailableError
from docserver.store.factory import open_store
from docserver.store.migrations import migrations
from docserver.store.postgres import PostgresOptions, PostgresStore
from support.postgres_server import PostgresServer, fresh_database, shared_server

INFO = EmbedderInfo("test", "pg-v1", 4)
PASSWORD = "s3cr3t-Pa55word"
MIGRATIONS = Path(__file__).parents[1] / "src" / "docserver" / "store" / "migrations" / "postgresql"


@pytest.fixture
def server() -> PostgresServer:
    return shared_server()


@pytest.fixture
def database(server: PostgresServer, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database; yields its name."""
    with fresh_database(server, str(tmp_path)) as name:
        yield name


@pytest.fixture
def metrics() -> Metrics:
    """What the `store` fixture's queries and pool are measured into."""
    return Metrics(CollectorRegistry(), process_collectors=False)


@pytest.fixture
async def store(server: PostgresServer, database: str, metrics: Metrics) -> AsyncIterator[PostgresStore]:
    options = PostgresOptions(min_size=1, max_size=2, pool_timeout=0.5)
    opened = PostgresStore(server.url(database), options, instruments=metrics.for_store(), slow_seconds=10)
    await opened.open()
    await opened.bind_embedder(INFO)
    yield opened
    await opened.close()


def document(path: str, text: str) -> DocumentInput:
    return DocumentInput(
        path, path, f"hash-{text}", text, [ChunkInput(0, "", text, 1, 1)], np.array([[1, 0, 0, 0]], dtype=np.float32)
    )


async def put(store: PostgresStore, source: str, *documents: DocumentInput) -> None:
    async with store.update_source(source) as writer:
        for item in documents:
            await writer.put_document(item)


# -- selection and settings -------------------------------------------------------------------------


def test_a_postgresql_url_selects_the_postgres_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSERVER_DATABASE_URL", f"postgresql://docserver:{PASSWORD}@db.example.com:5432/docs")
    monkeypatch.setenv("DOCSERVER_DB_POOL_MAX_SIZE", "7")
    monkeypatch.setenv("DOCSERVER_HNSW_EF_SEARCH", "123")
    monkeypatch.setenv("DOCSERVER_HNSW_FILTERED_EF_SEARCH", "456")
    settings = load_settings()
    store = open_store(settings)
    assert isinstance(store, PostgresStore)
    assert store.backend == settings.store.backend == "postgresql"
    assert (store.options.max_size, store.options.hnsw_ef_search, store.options.hnsw_filtered_ef_search) == (
        7,
        123,
        456,
    )
    assert PASSWORD not in store.where
    assert PASSWORD in settings.secrets()  # so the log redactor masks it wherever it turns up


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://docserver:{PASSWORD}@db.example.com:notaport/docs",
        f"postgresql://docserver:{PASSWORD}@db.example.com:99999/docs",
        f"mysql://docserver:{PASSWORD}@db.example.com/docs",
    ],
)
def test_a_bad_database_url_is_refused_without_echoing_the_password(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DOCSERVER_DATABASE_URL", url)
    with pytest.raises(ConfigError, match=r"^invalid setting DOCSERVER_DATABASE_URL: ") as raised:
        load_settings()
    assert PASSWORD not in str(raised.value)


def test_a_pool_minimum_above_its_maximum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSERVER_DB_POOL_MIN_SIZE", "5")
    monkeypatch.setenv("DOCSERVER_DB_POOL_MAX_SIZE", "2")
    with pytest.raises(ConfigError, match="DOCSERVER_DB_POOL_MIN_SIZE"):
        load_settings()


# -- pgvector and migrations ------------------------------------------------------------------------


async def test_a_server_without_pgvector_is_refused_with_how_to_install_it(
    server: PostgresServer, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session's server has pgvector; asking for an extension no server has takes the same path.
    monkeypatch.setattr(postgres_schema, "EXTENSION", "vector_not_installed_here")
    store = PostgresStore(server.url(database))
    with pytest.raises(StoreError) as raised:
        await store.open()
    message = str(raised.value)
    assert "no pgvector extension" in message
    assert "apt install postgresql-NN-pgvector" in message
    assert not isinstance(raised.value, StoreUnavailableError)  # a refusal: retrying will not help
    await store.close()


async def test_a_user_who_may_not_create_the_extension_is_told_who_can(server: PostgresServer, database: str) -> None:
    server.execute(database, "DROP ROLE IF EXISTS docserver_app")
    server.execute(database, "CREATE ROLE docserver_app LOGIN")
    server.execute(database, "GRANT CREATE ON SCHEMA public TO docserver_app")
    url = server.url(database).replace("postgresql://postgres@", "postgresql://docserver_app@")
    store = PostgresStore(url)
    try:
        with pytest.raises(StoreError, match=r"CREATE EXTENSION vector"):
            await store.open()
    finally:
        await store.close()
        server.drop_database(database)
        server.execute("postgres", "DROP ROLE docserver_app")


async def test_replicas_opening_at_once_migrate_exactly_once(server: PostgresServer, database: str) -> None:
    stores = [PostgresStore(server.url(database), PostgresOptions(min_size=1, max_size=1)) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        await asyncio.gather(*(store.bind_embedder(INFO) for store in stores))
        rows = server.execute(database, "SELECT version FROM schema_migrations ORDER BY version")
        assert [version for (version,) in rows] == [version for version, _ in migrations("postgresql")]
        assert [await store.embedder_info() for store in stores] == [INFO] * 4
    finally:
        await asyncio.gather(*(store.close() for store in stores))


MOVES_DATA = {"0004_distinct_embeddings.sql"}
"""Migrations that move data and drop where it was; each has a test that every value arrives."""


def test_migrations_never_drop_or_delete_data() -> None:
    destructive = re.compile(r"\b(DROP\s+(TABLE|COLUMN|SCHEMA)|TRUNCATE|DELETE\s+FROM|ALTER\s+COLUMN)\b", re.IGNORECASE)
    files = sorted(path for path in MIGRATIONS.glob("*.sql") if path.name not in MOVES_DATA)
    assert files
    for path in files:
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        assert not destructive.search(code), f"{path.name} may destroy data"


async def test_binding_gives_the_vector_column_its_dimension_and_an_hnsw_cosine_index(
    server: PostgresServer, database: str, store: PostgresStore
) -> None:
    [(definition,)] = server.execute(
        database, "SELECT indexdef FROM pg_indexes WHERE indexname = %s", ["chunks_embedding_hnsw"]
    )
    assert "USING hnsw (((embedding)::halfvec(4)) halfvec_cosine_ops)" in definition
    assert "m='16'" in definition
    assert "ef_construction='200'" in definition
    [(column_type,)] = server.execute(
        database,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding'",
    )
    assert column_type == "vector(4)"


async def test_a_database_of_the_previous_schema_keeps_every_vector_stored_once(
    server: PostgresServer, database: str
) -> None:
    # A database as version 3 left it: vectors on `chunks`, two versions of one page with the
    # same text (so the same vector), a chunk without words (no vector), the HNSW index on `chunks`.
    with psycopg.connect(server.url(database), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz DEFAULT now())"
        )
        for version, code in migrations("postgresql"):
            if version <= 3:
                conn.execute(code)  # type: ignore[arg-type]
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        conn.execute(
            "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector(4), ALTER COLUMN embedding SET STORAGE PLAIN"
        )
        conn.execute(
            "CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 12, ef_construction = 40)"
        )
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('embedder', 'test'), ('embedding_model', 'pg-v1'), "
            "('embedding_dimension', '4')"
        )
        chunks = [
            ("docs@1", "Install", "Setup", "pip install docs", "[1,0,0,0]"),
            ("docs@2", "Install", "Setup", "pip install docs", "[1,0,0,0]"),
            ("docs@2", "Install", "Upgrade", "pip install -U docs", "[0.6,0.8,0,0]"),
            ("docs@2", "Install", "", "", None),
        ]
        for source, title, heading, text, vector in chunks:
            conn.execute("INSERT INTO sources (name, updated_at) VALUES (%s, now()) ON CONFLICT DO NOTHING", (source,))
            [(document_id,)] = conn.execute(
                "INSERT INTO documents (source, path, title, content_hash, content, ingested_at) "
                "VALUES (%s, %s, %s, 'h', '', now()) RETURNING id",
                (source, f"{heading or 'empty'}.md", title),
            ).fetchall()
            conn.execute(
                "INSERT INTO chunks (document_id, source, ordinal, title, heading, text, start_line, end_line, "
                "embedding) VALUES (%s, %s, 0, %s, %s, %s, 1, 1, %s)",
                (document_id, source, title, heading, text, vector),
            )
    store = PostgresStore(server.url(database), PostgresOptions(min_size=1, max_size=2))
    await store.open()
    try:
        await store.bind_embedder(INFO)  # the same embedder: nothing to do
        moved = server.execute(
            database,
            "SELECT c.source, c.heading, e.embedding::text, e.key FROM chunks c "
            "JOIN embeddings e ON e.id = c.embedding_id ORDER BY c.id",
        )
        assert [row[:3] for row in moved] == [
            ("docs@1", "Setup", "[1,0,0,0]"),
            ("docs@2", "Setup", "[1,0,0,0]"),
            ("docs@2", "Upgrade", "[0.6,0.8,0,0]"),
            ("docs@2", "", None),
        ]
        assert server.execute(database, "SELECT count(*) FROM embeddings") == [(3,)]  # the copies share one row
        # The key SQL computed is the store's: the same text ingested now finds the stored vector.
        assert bytes(moved[0][3]) == postgres_schema.embedding_key("Install", "Setup", "pip install docs")
        [(definition,)] = server.execute(
            database, "SELECT indexdef FROM pg_indexes WHERE indexname = %s", ["chunks_embedding_hnsw"]
        )
        # 0004 moved the index to `embeddings`, 0006 to half precision, both with its own parameters.
        assert "ON public.embeddings USING hnsw (((embedding)::halfvec(4)) halfvec_cosine_ops)" in definition
        assert "m='12'" in definition
        ranked = await store.search_vector(np.array([1, 0, 0, 0], dtype=np.float32), source=None, limit=5)
        assert len(ranked) == 3
        assert ranked[0].score == pytest.approx(1.0) and ranked[1].score == pytest.approx(1.0)
    finally:
        await store.close()


async def test_a_database_of_schema_4_gets_the_index_the_exact_search_reads_its_ids_from(
    server: PostgresServer, database: str, store: PostgresStore
) -> None:
    # Chunks of two sources in a database taken back to version 4 (0005 undone: the index on
    # `source` alone), then opened again: migration 0005 puts `embedding_id` into the source
    # index, keeps every chunk, and a filtered search (exact: few chunks) answers from it.
    await put(store, "docs@1", document("a.md", "alpha"), document("b.md", "beta"))
    await put(store, "docs@2", document("a.md", "alpha"))
    await store.close()
    server.execute(database, "DELETE FROM schema_migrations WHERE version >= 5")  # 0006 finds its index built
    server.execute(database, "DROP INDEX chunks_by_source_embedding")
    server.execute(database, "CREATE INDEX chunks_by_source ON chunks (source)")
    before = server.execute(database, "SELECT source, embedding_id FROM chunks ORDER BY id")

    await store.open()
    assert server.execute(database, "SELECT version FROM schema_migrations WHERE version >= 5 ORDER BY 1") == [
        (5,),
        (6,),
        (7,),
    ]
    indexes = dict(server.execute(database, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'"))
    assert indexes["chunks_by_source_embedding"].endswith("USING btree (source) INCLUDE (embedding_id)")
    assert "chunks_by_source" not in indexes  # the new index answers whatever it answered
    assert indexes["chunks_by_source_for_text"].endswith('USING btree (source COLLATE "C")')  # 0007, for full text
    assert server.execute(database, "SELECT source, embedding_id FROM chunks ORDER BY id") == before
    one = await store.search_vector(np.array([1, 0, 0, 0], dtype=np.float32), source="docs@1", limit=5)
    assert len(one) == 2 and one[0].score == pytest.approx(1.0)
    both = await store.search_vector(np.array([1, 0, 0, 0], dtype=np.float32), source=["docs@1", "docs@2"], limit=5)
    assert len(both) == 3


async def test_a_filter_past_the_exact_threshold_is_decided_again_once_another_replica_commits(
    server: PostgresServer, database: str, store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past EXACT_AT_MOST the decision is noted with the corpus version and the next searches go to
    # the HNSW index alone; a commit through another store (a replica) moves the version, so the
    # filter is counted again, and searched exactly once it is small enough.
    monkeypatch.setattr(postgres_exact, "EXACT_AT_MOST", 1)
    decided: list[list[str]] = []
    search_exactly = postgres_vector.search_exactly

    async def counted(conn: object, vector: object, sources: list[str], limit: int) -> object:
        decided.append(list(sources))
        return await search_exactly(conn, vector, sources, limit)  # type: ignore[arg-type]

    monkeypatch.setattr(postgres_vector, "search_exactly", counted)
    await put(store, "docs@1", document("a.md", "alpha"), document("b.md", "beta"))
    query = np.array([1, 0, 0, 0], dtype=np.float32)
    for _ in range(3):
        assert len(await store.search_vector(query, source="docs@1", limit=5)) == 2
    assert decided == [["docs@1"]]  # decided once: two chunks, past the threshold of one
    noted = store.declined.get(["docs@1"])
    assert noted is not None and noted.version == str(await store.corpus_version())

    replica = PostgresStore(server.url(database), PostgresOptions(min_size=1, max_size=1))
    await replica.open()
    try:
        async with replica.update_source("docs@1") as writer:
            await writer.delete_documents(["b.md"])
    finally:
        await replica.close()
    assert len(await store.search_vector(query, source="docs@1", limit=5)) == 1
    assert decided == [["docs@1"], ["docs@1"]]  # the version moved: decided again, and exact now
    assert store.declined.get(["docs@1"]) is None
    assert len(await store.search_vector(query, source="docs@1", limit=5)) == 1
    assert decided == [["docs@1"]] * 3  # a filter searched exactly is decided on every search


async def test_a_text_stored_before_is_not_stored_again_and_goes_when_its_last_chunk_goes(
    server: PostgresServer, database: str, store: PostgresStore
) -> None:
    await put(store, "docs@1", document("a.md", "the same section in both versions"))
    await put(store, "docs@2", document("a.md", "the same section in both versions"))
    assert server.execute(database, "SELECT count(*) FROM embeddings") == [(1,)]
    async with store.update_source("docs@1") as writer:
        await writer.delete_documents(["a.md"])
    assert server.execute(database, "SELECT count(*) FROM embeddings") == [(1,)]  # docs@2 still points to it
    async with store.update_source("docs@2") as writer:
        await writer.delete_documents(["a.md"])
    assert server.execute(database, "SELECT count(*) FROM embeddings") == [(0,)]
    assert server.execute(database, "SELECT count(*) FROM embedding_orphans") == [(0,)]


# -- what several replicas share --------------------------------------------------------------------


async def test_a_commit_through_one_store_is_seen_by_another(store: PostgresStore) -> None:
    other = PostgresStore(store.url, PostgresOptions(min_size=1, max_size=1))
    await other.open()
    try:
        before = await other.corpus_version()
        await put(store, "docs", document("a.md", "written through the first replica"))
        assert await other.corpus_version() > before
        assert [item.chunk_id for item in await other.search_text("replica", source=None, limit=5)]
    finally:
        await other.close()


async def test_two_updates_of_one_source_take_turns(store: PostgresStore) -> None:
    other = PostgresStore(store.url, PostgresOptions(min_size=1, max_size=2))
    await other.open()
    try:
        version = await store.corpus_version()
        await asyncio.gather(
            put(store, "docs", document("a.md", "alpha page")), put(other, "docs", document("b.md", "beta page"))
        )
        assert await store.document_hashes("docs") == {"a.md": "hash-alpha page", "b.md": "hash-beta page"}
        assert await store.corpus_version() == version + 2
    finally:
        await other.close()


# -- the pool: exhaustion, gauges, timeouts ---------------------------------------------------------


async def test_an_exhausted_pool_makes_callers_wait_then_fail_clearly(server: PostgresServer, database: str) -> None:
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    options = PostgresOptions(min_size=1, max_size=1, pool_timeout=0.5)
    store = PostgresStore(server.url(database), options, instruments=metrics.for_store(), slow_seconds=10)
    await store.open()
    try:
        async with store.update_source("docs"):  # holds the only connection
            waiting = asyncio.create_task(store.list_sources())
            await _until(lambda: store.pool_stats()[2] == 1)
            assert metrics.registry.get_sample_value("docserver_db_pool_pending_requests") == 1
            assert metrics.registry.get_sample_value("docserver_db_pool_connections", {"state": "active"}) == 1
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"all 1 database connections stayed busy for 0.5 s") as raised:
                await waiting
            assert time.monotonic() - started < 2
            assert not isinstance(raised.value, StoreUnavailableError)
        assert await store.list_sources() == []  # and the pool serves again
        assert (
            metrics.registry.get_sample_value(
                "docserver_query_errors_total", {"operation": "list_sources", "backend": "postgresql"}
            )
            == 1
        )
    finally:
        await store.close()


async def test_pool_gauges_come_from_the_pool_statistics(store: PostgresStore, metrics: Metrics) -> None:
    await store.list_sources()
    assert metrics.registry.get_sample_value("docserver_db_pool_connections", {"state": "idle"}) >= 1
    assert metrics.registry.get_sample_value("docserver_db_pool_connections", {"state": "active"}) == 0
    async with store.update_source("docs"):
        assert metrics.registry.get_sample_value("docserver_db_pool_connections", {"state": "active"}) == 1


async def test_operations_are_timed_under_the_sqlite_operation_names(store: PostgresStore, metrics: Metrics) -> None:
    await put(store, "docs", document("a.md", "timed text"))
    await store.search_text("timed", source=None, limit=5)
    await store.search_vector(np.array([1, 0, 0, 0], dtype=np.float32), source="docs", limit=5)
    for operation in ("begin", "put_document", "commit", "search_text", "search_vector"):
        count = metrics.registry.get_sample_value(
            "docserver_query_duration_seconds_count", {"operation": operation, "backend": "postgresql"}
        )
        assert count == 1, operation


async def test_a_statement_over_the_timeout_is_cancelled_with_a_clear_error(
    server: PostgresServer, store: PostgresStore
) -> None:
    quick = PostgresStore(store.url, PostgresOptions(min_size=1, max_size=1, statement_timeout_ms=200))
    await quick.open()
    try:
        with psycopg.connect(store.url) as blocker:
            blocker.execute("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")  # held until this block ends
            with pytest.raises(StoreError, match=r"ran longer than 200 ms \(DOCSERVER_DB_STATEMENT_TIMEOUT_MS\)"):
                await quick.search_text("anything", source=None, limit=5)
        assert await quick.search_text("anything", source=None, limit=5) == []
    finally:
        await quick.close()


# -- unreachable ------------------------------------------------------------------------------------


async def _refused(tmp_path: Path, password: str) -> tuple[PostgresStore, str]:
    """A store whose URL carries `password` and names a socket folder where no server listens, and why it
    could not open."""
    store = PostgresStore(
        f"postgresql://docserver:{password}@/docs?host={tmp_path}", PostgresOptions(connect_timeout=2)
    )
    with pytest.raises(StoreUnavailableError) as raised:
        await store.open()
    return store, str(raised.value)


async def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    store, message = await _refused(tmp_path, PASSWORD)
    assert message.startswith("cannot connect to the database postgresql://docserver:***@/docs")
    assert PASSWORD not in message
    with pytest.raises(StoreUnavailableError, match="not connected to the database"):
        await store.search_text("anything", source=None, limit=5)
    await store.close()


async def test_a_one_letter_password_is_hidden_without_mangling_the_message(tmp_path: Path) -> None:
    store, message = await _refused(tmp_path, "o")
    assert message.startswith("cannot connect to the database postgresql://docserver:***@/docs")
    assert message.endswith("failed: No such file or directory")  # libpq's own words, every letter kept
    await store.close()


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_words_most_chunks_hold_match_nothing_alone_on_a_large_store(
    server: PostgresServer, database: str, store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "manual" is in every chunk (the title), "tables" in three, "handbook" in none.
    documents = [document(f"p{n}.md", f"manual page {n}") for n in range(97)]
    documents += [document(f"t{n}.md", f"tables {n}") for n in range(3)] + [document("z.md", "zebra crossing")]
    documents = [
        DocumentInput(d.path, "Manual", d.content_hash, d.content, d.chunks, d.vectors) for d in documents
    ]  # the title puts "manual" in every chunk
    await put(store, "docs", *documents)
    server.execute(database, "ANALYZE chunks")
    monkeypatch.setattr(postgres_sql, "COMMON_AT_MATCHES", 50)  # a large store, scaled down: 50 of 101 chunks

    found = await store.search_text("manual tables", source=None, limit=20)
    assert len(found) == 3  # the chunks holding "tables"; "manual" alone does not make a match
    assert await store.search_text("manual", source=None, limit=20)  # every word of the query: still searched
    assert await store.search_text("manual handbook", source=None, limit=20) == []  # only a common word matched

    monkeypatch.setattr(postgres_sql, "COMMON_AT_MATCHES", 1_000)  # a small store: nothing is left out
    assert len(await store.search_text("manual tables", source=None, limit=20)) == 20
