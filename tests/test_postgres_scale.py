"""100,000 chunks in PostgreSQL: vector search answers from the HNSW index, full text from the GIN index.

The plans are PostgreSQL's own (EXPLAIN) for the exact SQL the store sends,
with the values it sends, and for the generic plan a prepared statement may
switch to after a few executions. Run with `-s` to see them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from docserver.store.postgres import PostgresOptions, PostgresStore
from docserver.store.postgres_exact import search_exact_sql
from docserver.store.postgres_schema import VECTOR_INDEX
from docserver.store.postgres_sql import TEXT_PLAN, search_text_sql
from docserver.store.postgres_vector import search_vector_sql
from support.postgres_server import loaded_database

pytestmark = pytest.mark.slow

CHUNKS = 100_000
DIMENSION = 16
# A cheaper graph than the defaults (16, 64), so the index builds in seconds on two cores;
# the planner's choice does not depend on it.
OPTIONS = PostgresOptions(hnsw_m=8, hnsw_ef_construction=16)
CANDIDATES = 80
"""What a search of 20 results asks each retriever for (SearchService: limit * 4)."""


def load(
    tmp_path_factory: pytest.TempPathFactory, chunks: int, dimension: int, options: PostgresOptions
) -> Iterator[tuple[str, list[str]]]:
    """A database of `chunks` chunks in two sources; yields its URL and the vocabulary."""
    yield from loaded_database(tmp_path_factory.mktemp("scale"), chunks=chunks, dimension=dimension, options=options)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """100,000 chunks of 16-dimensional vectors."""
    yield from load(tmp_path_factory, CHUNKS, DIMENSION, OPTIONS)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """10,000 chunks of 512-dimensional vectors (the built-in embedder's size, 2 KB each), default HNSW parameters."""
    yield from load(tmp_path_factory, 10_000, 512, PostgresOptions())


def explain(
    url: str, query: psycopg.sql.Composed, params: tuple[object, ...], *, generic: bool = False, prelude: str = ""
) -> str:
    # The store's own session settings (hnsw.ef_search enters the planner's cost of an index scan),
    # and what the store runs before the statement in its transaction (`prelude`).
    settings = PostgresStore(url)._connect_kwargs()
    with psycopg.connect(url, **settings) as conn:
        register_vector(conn)
        if prelude:
            conn.execute(prelude)  # type: ignore[arg-type]
        if generic:
            # The plan without values: $1, $2 stay unknown, as in a cached generic plan.
            text = query.as_string(conn)
            for number in range(1, len(params) + 1):
                text = text.replace("%s", f"${number}", 1)
            rows = conn.execute(f"EXPLAIN (GENERIC_PLAN) {text}").fetchall()  # type: ignore[arg-type]
        else:
            rows = conn.execute(psycopg.sql.SQL("EXPLAIN ") + query, params).fetchall()
    plan = "\n".join(row[0] if len(row[0]) < 200 else row[0][:200] + "..." for row in rows)
    print(f"\n{plan}")
    return plan


def test_the_table_holds_a_hundred_thousand_vectors(large: tuple[str, list[str]]) -> None:
    with psycopg.connect(large[0]) as conn:
        assert conn.execute(
            "SELECT count(e.embedding) FROM chunks c JOIN embeddings e ON e.id = c.embedding_id"
        ).fetchone() == (CHUNKS,)


@pytest.mark.parametrize("generic", [False, True], ids=["custom-plan", "generic-plan"])
@pytest.mark.parametrize("source", [None, "source-1"], ids=["all-sources", "one-source"])
def test_vector_search_is_answered_from_the_hnsw_index(
    large: tuple[str, list[str]], source: str | None, generic: bool
) -> None:
    vector = np.random.default_rng(7).standard_normal(DIMENSION).astype(np.float32)
    params: tuple[object, ...] = (vector, vector) if source is None else (vector, vector, source, source)
    query = search_vector_sql(filtered=source is not None, limit=CANDIDATES, dimension=DIMENSION)
    plan = explain(large[0], query, params, generic=generic)
    assert f"Index Scan using {VECTOR_INDEX} on embeddings" in plan, plan
    assert "Seq Scan on chunks" not in plan and "Seq Scan on embeddings" not in plan, plan
    assert "Sort" not in plan.split("Index Scan")[0], plan  # the index gives the order: no sort of 100k distances
    # nor of the chunks of every vector found: the CTE's order is the outer query's, so it stops at `limit` chunks
    assert "Sort Key" not in plan, plan


@pytest.mark.parametrize("sources", [["source-1"], ["source-0", "source-1"]], ids=["one-source", "two-sources"])
def test_the_exact_search_reads_only_the_filters_vectors(large: tuple[str, list[str]], sources: list[str]) -> None:
    # A small filter's search (EXACT_AT_MOST) compares its own vectors, fetched by id: neither the
    # HNSW index (which would order every source's vectors) nor a scan of all 100,000 vectors.
    # The filter's vector ids come from an index in its order, so the read stops at the cap: no
    # table scan and no sort of every match (each source half the table here, where a scan that stops
    # early looks cheapest). The store never prepares it: a custom plan, as here.
    vector = np.random.default_rng(7).standard_normal(DIMENSION).astype(np.float32)
    plan = explain(large[0], search_exact_sql(CANDIDATES), (sources, vector, sources))
    assert VECTOR_INDEX not in plan, plan
    assert "Seq Scan on chunks" not in plan and "Seq Scan on embeddings" not in plan, plan
    assert "embeddings_pkey on embeddings" in plan, plan
    ids = plan.split("CTE decision")[0]
    assert "Index Only Scan using chunks_by_source_embedding on chunks" in ids, plan
    assert "Sort" not in ids, plan


def test_wide_vectors_are_searched_through_the_index_too(wide: tuple[str, list[str]]) -> None:
    # Vectors of 2 KB would go to TOAST by default, where the planner cannot see what a full
    # scan reads: it would price the scan far too low and choose it (50 ms at 10,000 chunks).
    vector = np.random.default_rng(7).standard_normal(512).astype(np.float32)
    plan = explain(wide[0], search_vector_sql(filtered=False, limit=CANDIDATES, dimension=512), (vector, vector))
    assert f"Index Scan using {VECTOR_INDEX} on embeddings" in plan, plan


@pytest.mark.parametrize("every", [True, False], ids=["every-word", "some-words"])
@pytest.mark.parametrize("source", [None, "source-1"], ids=["all-sources", "one-source"])
def test_full_text_search_is_answered_from_the_gin_index(
    large: tuple[str, list[str]], source: str | None, every: bool
) -> None:
    # Common words: a few thousand matches each, far more than the tier ranks, so a scan that
    # stops after RANKED_AT_MOST matches looks cheap to the planner. The store rules it out.
    words = large[1]
    any_word, every_word = f'"{words[3]}" or "{words[17]}"', f'"{words[3]}" "{words[17]}"'
    words_of_query = (any_word, every_word) if every else (any_word, any_word, every_word)
    params: tuple[object, ...] = words_of_query if source is None else (*words_of_query, source)
    query = search_text_sql(filtered=source is not None, limit=CANDIDATES, every=every)
    plan = explain(large[0], query, params, prelude=TEXT_PLAN)
    assert "Bitmap Index Scan on chunks_tsv" in plan, plan
    assert "Seq Scan on chunks" not in plan, plan
    # A filter's chunks come from the compact index (migration 0007: one key per source, 7 MB at a million
    # chunks), never from the exact search's, which holds one entry per chunk with its vector id.
    assert "chunks_by_source_embedding" not in plan, plan


async def test_full_text_is_planned_for_each_questions_words(large: tuple[str, list[str]]) -> None:
    # A statement psycopg prepares (from its 6th execution) gets PostgreSQL's generic plan once five custom
    # plans cost more by estimate. The generic plan cannot know how many chunks the words match: it filters
    # the GIN matches by source row by row instead of intersecting them with the source index, and a filter
    # whose chunks sit at the table's end reads the other sources' rows first (docs/performance.md: full text
    # p95 9 -> 31-37 ms at 100,000 chunks of real docs). The tiers are planned for every question's words.
    url, words = large
    store = PostgresStore(url, replace(OPTIONS, min_size=1, max_size=1))
    await store.open()
    try:
        rng = np.random.default_rng(3)
        for _ in range(20):  # four words that no chunk holds together: both tiers run, the second with 80 places
            query = " ".join(words[n] for n in rng.integers(0, len(words), 4))
            await store.search_text(query, source="source-1", limit=CANDIDATES)
        async with store._ready_pool().connection() as conn:  # the one connection the searches used
            cursor = await conn.execute(
                "SELECT generic_plans, statement FROM pg_prepared_statements WHERE statement LIKE '%ts_rank_cd%'"
            )
            generic = [statement for plans, statement in await cursor.fetchall() if plans]
    finally:
        await store.close()
    assert generic == [], generic


async def test_the_store_finds_one_chunk_among_a_hundred_thousand(large: tuple[str, list[str]]) -> None:
    url = large[0]
    store = PostgresStore(url, OPTIONS)
    await store.open()
    try:
        [(chunk_id, text)] = await _one_chunk(url)
        target = await _vector_of(url, chunk_id)
        ranked = await store.search_vector(target, source=None, limit=CANDIDATES)
        assert len(ranked) == CANDIDATES
        assert ranked[0].chunk_id == chunk_id
        assert ranked[0].score == pytest.approx(1.0, abs=1e-5)
        found = await store.search_text(text, source=None, limit=CANDIDATES)  # all twelve of its words
        assert found[0].chunk_id == chunk_id
    finally:
        await store.close()


async def _one_chunk(url: str) -> list[tuple[int, str]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT id, text FROM chunks ORDER BY id OFFSET 54321 LIMIT 1")
        return await cursor.fetchall()


async def _vector_of(url: str, chunk_id: int) -> np.ndarray:  # type: ignore[type-arg]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT e.embedding::text FROM chunks c JOIN embeddings e ON e.id = c.embedding_id WHERE c.id = %s",
            (chunk_id,),
        )
        row = await cursor.fetchone()
        assert row is not None
        return np.array([float(value) for value in row[0].strip("[]").split(",")], dtype=np.float32)
