"""PostgreSQL's HNSW index at half precision: what it holds, that searches use it, and what they return.

The index holds each vector as `halfvec(N)` (postgres_schema.indexed); a
search orders by the same expression, so the planner answers it from the index,
and ranks the rows it returns by their full-precision distance. Migration 0006
moves a database's full-precision index to it; vectors of 2,001 to 4,000
dimensions, which pgvector indexes only at half precision, get an index too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from docserver.store.base import ChunkInput, DocumentInput, EmbedderInfo
from docserver.store.postgres import PostgresOptions, PostgresStore
from docserver.store.postgres_schema import MAX_INDEXED_DIMENSION, VECTOR_INDEX
from docserver.store.postgres_vector import search_vector_sql, vector_values
from support.postgres_server import PostgresServer, fresh_database, loaded_database, shared_server

OPTIONS = PostgresOptions(min_size=1, max_size=2, hnsw_m=8, hnsw_ef_construction=32)
DIMENSION = 64
VECTORS = 300


@pytest.fixture
def server() -> PostgresServer:
    return shared_server()


@pytest.fixture
def database(server: PostgresServer, tmp_path: Path) -> Iterator[str]:
    with fresh_database(server, str(tmp_path)) as name:
        yield name


def random_vectors(count: int, dimension: int, seed: int = 3) -> np.ndarray:  # type: ignore[type-arg]
    return np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)


async def filled(url: str, dimension: int, vectors: np.ndarray) -> PostgresStore:  # type: ignore[type-arg]
    """A store bound to an embedder of `dimension`, one chunk per vector in two sources (even and odd rows)."""
    store = PostgresStore(url, OPTIONS)
    await store.open()
    await store.bind_embedder(EmbedderInfo("test", f"halfvec-{dimension}", dimension))
    for parity in (0, 1):
        async with store.update_source(f"docs-{parity}") as writer:
            for row in range(parity, len(vectors), 2):
                chunk = ChunkInput(0, f"Section {row}", f"text {row}", 1, 1)
                await writer.put_document(
                    DocumentInput(f"{row}.md", f"Page {row}", f"h{row}", f"text {row}", [chunk], vectors[row : row + 1])
                )
    return store


@pytest.fixture
async def store(server: PostgresServer, database: str) -> AsyncIterator[PostgresStore]:
    opened = await filled(server.url(database), DIMENSION, random_vectors(VECTORS, DIMENSION))
    yield opened
    await opened.close()


def index_definition(server: PostgresServer, database: str, name: str = VECTOR_INDEX) -> str:
    [(definition,)] = server.execute(database, "SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
    return str(definition)


def plan_of(url: str, dimension: int, source: str | None) -> str:
    """EXPLAIN of the store's vector statement, with the store's session settings, sequential scans priced out:
    these tables are small enough to scan, so the plan shows whether the index answers the statement's order
    at all (tests/test_postgres_scale.py shows the planner choosing it at 100,000 chunks)."""
    vector = random_vectors(1, dimension, seed=9)[0]
    params: tuple[object, ...] = (vector, vector) if source is None else (vector, vector, source, source)
    query = search_vector_sql(filtered=source is not None, limit=20, dimension=dimension)
    with psycopg.connect(url, **PostgresStore(url)._connect_kwargs()) as conn:
        register_vector(conn)
        conn.execute("SET enable_seqscan = off")
        return "\n".join(row[0] for row in conn.execute(psycopg.sql.SQL("EXPLAIN ") + query, params))


def exact_nearest(vectors: np.ndarray, query: np.ndarray, rows: range | list[int], count: int) -> list[float]:  # type: ignore[type-arg]
    """The `count` largest cosine similarities of `query` to `vectors[rows]`, in full precision."""
    chosen = vectors[list(rows)].astype(np.float64)
    similarity = chosen @ query.astype(np.float64) / (np.linalg.norm(chosen, axis=1) * np.linalg.norm(query))
    return sorted(similarity.tolist(), reverse=True)[:count]


async def test_binding_builds_the_index_at_half_precision(server: PostgresServer, database: str, store: object) -> None:
    definition = index_definition(server, database)
    assert f"USING hnsw (((embedding)::halfvec({DIMENSION})) halfvec_cosine_ops)" in definition, definition
    assert "m='8'" in definition and "ef_construction='32'" in definition, definition


async def test_a_search_is_answered_from_the_half_precision_index(
    server: PostgresServer, database: str, store: object
) -> None:
    # Filtered, on these few chunks, the planner rightly reads the filter's rows first; at 20,000 chunks
    # the filtered statement goes through the index (tests/test_postgres_filtered_search.py).
    plan = plan_of(server.url(database), DIMENSION, None)
    assert f"Index Scan using {VECTOR_INDEX} on embeddings" in plan, plan
    assert "Seq Scan on embeddings" not in plan, plan


async def test_results_and_scores_are_an_exact_scans(store: PostgresStore) -> None:
    # 300 vectors, well within what the graph finds at the default ef_search: the same neighbours as
    # an exact scan, scored with the full-precision distance (half precision is off by about 1e-3).
    vectors = random_vectors(VECTORS, DIMENSION)
    for query in random_vectors(5, DIMENSION, seed=21):
        ranked = await store.search_vector(query, source=None, limit=10)
        assert [item.score for item in ranked] == pytest.approx(
            exact_nearest(vectors, query, range(VECTORS), 10), abs=1e-6
        )


async def test_a_filtered_search_returns_the_filters_exact_neighbours(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docserver.store import postgres_exact

    monkeypatch.setattr(postgres_exact, "EXACT_AT_MOST", -1)  # through the index, not the exact search
    vectors = random_vectors(VECTORS, DIMENSION)
    for query in random_vectors(5, DIMENSION, seed=22):
        ranked = await store.search_vector(query, source="docs-1", limit=10)
        expected = exact_nearest(vectors, query, range(1, VECTORS, 2), 10)
        assert [item.score for item in ranked] == pytest.approx(expected, abs=1e-6)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """5,000 chunks of 3,072 dimensions (OpenAI's text-embedding-3-large), bulk-loaded and indexed by the store's
    definition; a cheap graph, so it builds in seconds. Fewer, and the planner rightly sorts them all instead."""
    options = PostgresOptions(hnsw_m=8, hnsw_ef_construction=16)
    folder = tmp_path_factory.mktemp("wide")
    for url, _ in loaded_database(folder, chunks=5_000, dimension=3072, options=options):
        yield url


def test_vectors_of_3072_dimensions_are_indexed_and_searched_through_the_index(wide: str) -> None:
    # Over pgvector's 2,000 for a full-precision index, they were searched by a full scan; at half
    # precision (up to 4,000) they have an index like any other, which the planner chooses.
    assert MAX_INDEXED_DIMENSION >= 3072
    with psycopg.connect(wide) as conn:
        [(definition,)] = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [VECTOR_INDEX])
    assert "USING hnsw (((embedding)::halfvec(3072)) halfvec_cosine_ops)" in definition, definition
    vector = random_vectors(1, 3072, seed=9)[0]
    query = search_vector_sql(filtered=False, limit=80, dimension=3072)
    with psycopg.connect(wide, **PostgresStore(wide)._connect_kwargs()) as conn:
        register_vector(conn)
        plan = "\n".join(row[0] for row in conn.execute(psycopg.sql.SQL("EXPLAIN ") + query, (vector, vector)))
        assert f"Index Scan using {VECTOR_INDEX} on embeddings" in plan, plan
        assert len(conn.execute(query, (vector, vector)).fetchall()) == 80


def as_version_5_left_it(server: PostgresServer, database: str, *, m: int, ef_construction: int) -> None:
    """The database taken back to before 0006: its full-precision index, with these parameters."""
    server.execute(database, "DELETE FROM schema_migrations WHERE version >= 6")
    server.execute(database, f"DROP INDEX {VECTOR_INDEX}")
    server.execute(
        database,
        f"CREATE INDEX {VECTOR_INDEX} ON embeddings USING hnsw (embedding vector_cosine_ops) "
        f"WITH (m = {m}, ef_construction = {ef_construction})",
    )


async def test_migration_6_moves_a_full_precision_index_to_half_precision(
    server: PostgresServer, database: str, store: PostgresStore
) -> None:
    # The database as version 5 left it: the full-precision index (its own m and ef_construction), and a
    # reindex's side index; opened again, 0006 builds the half-precision index with the same parameters.
    await store.close()
    as_version_5_left_it(server, database, m=12, ef_construction=40)
    server.execute(database, "CREATE INDEX chunks_embedding_next_hnsw ON embeddings (id)")
    vectors = random_vectors(VECTORS, DIMENSION)
    query = random_vectors(1, DIMENSION, seed=33)[0]

    await store.open()
    assert server.execute(database, "SELECT version FROM schema_migrations WHERE version = 6") == [(6,)]
    definition = index_definition(server, database)
    assert f"USING hnsw (((embedding)::halfvec({DIMENSION})) halfvec_cosine_ops)" in definition, definition
    assert "m='12'" in definition and "ef_construction='40'" in definition, definition
    indexes = [name for (name,) in server.execute(database, "SELECT indexname FROM pg_indexes")]
    assert "chunks_embedding_next_hnsw" not in indexes and "chunks_embedding_halfvec_hnsw" not in indexes
    assert f"Index Scan using {VECTOR_INDEX} on embeddings" in plan_of(server.url(database), DIMENSION, None)
    ranked = await store.search_vector(query, source=None, limit=10)
    assert [item.score for item in ranked] == pytest.approx(exact_nearest(vectors, query, range(VECTORS), 10), abs=1e-6)


async def test_migration_6_builds_an_index_of_the_old_defaults_with_the_new_ones(
    server: PostgresServer, database: str, store: PostgresStore
) -> None:
    # m 16 and ef_construction 64 were the defaults: the index is built with 200, which the filtered
    # searches' recall at the default ef_search was measured with.
    await store.close()
    as_version_5_left_it(server, database, m=16, ef_construction=64)
    await store.open()
    definition = index_definition(server, database)
    assert f"USING hnsw (((embedding)::halfvec({DIMENSION})) halfvec_cosine_ops)" in definition, definition
    assert "m='16'" in definition and "ef_construction='200'" in definition, definition


async def test_migration_6_indexes_vectors_too_wide_for_a_full_precision_index(
    server: PostgresServer, database: str
) -> None:
    # 2,500 dimensions: bound before 0006, no index (pgvector's `vector` HNSW stops at 2,000).
    vectors = random_vectors(30, 2500)
    store = await filled(server.url(database), 2500, vectors)
    await store.close()
    server.execute(database, "DELETE FROM schema_migrations WHERE version >= 6")
    server.execute(database, f"DROP INDEX {VECTOR_INDEX}")

    await store.open()
    try:
        definition = index_definition(server, database)
        assert "halfvec(2500)) halfvec_cosine_ops" in definition, definition
        assert "m='16'" in definition and "ef_construction='200'" in definition, definition
    finally:
        await store.close()


async def test_migration_6_leaves_an_unbound_database_to_binding(server: PostgresServer, database: str) -> None:
    store = PostgresStore(server.url(database), OPTIONS)
    await store.open()
    try:
        assert server.execute(database, "SELECT version FROM schema_migrations WHERE version = 6") == [(6,)]
        assert not server.execute(database, "SELECT 1 FROM pg_indexes WHERE indexname = %s", [VECTOR_INDEX])
    finally:
        await store.close()


async def test_vectors_too_wide_for_the_index_are_searched_exactly_one_distance_each(
    server: PostgresServer, database: str
) -> None:
    # 4,001 dimensions: past halfvec's 4,000, binding builds no index, and the statement orders by the
    # full-precision distance itself: computed once per vector, not a second time for an index's order.
    dimension = MAX_INDEXED_DIMENSION + 1
    vectors = random_vectors(40, dimension)
    query = random_vectors(1, dimension, seed=21)[0]
    store = await filled(server.url(database), dimension, vectors)
    try:
        assert not server.execute(database, "SELECT 1 FROM pg_indexes WHERE indexname = %s", [VECTOR_INDEX])
        ranked = await store.search_vector(query, source=None, limit=5)
        assert [item.score for item in ranked] == pytest.approx(exact_nearest(vectors, query, range(40), 5), abs=1e-6)
        statement = search_vector_sql(filtered=False, limit=5, dimension=dimension)
        with psycopg.connect(server.url(database)) as conn:
            register_vector(conn)
            plan = "\n".join(
                row[0] for row in conn.execute(psycopg.sql.SQL("EXPLAIN (VERBOSE) ") + statement, vector_values(query))
            )
        # The CTE's rows carry one distance: `(e.embedding <=> '[...]')` once, no second one for an order.
        computed = next(line for line in plan.split("CTE nearest")[1].splitlines() if "Output:" in line)
        assert computed.count("<=>") == 1, computed[:200]
    finally:
        await store.close()
