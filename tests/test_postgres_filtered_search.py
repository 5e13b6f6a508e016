"""HNSW search settings on PostgreSQL: `hnsw.ef_search` from the options, iterative scans for filtered searches.

A plain HNSW scan keeps `ef_search` candidates and filters them afterwards:
a search of one source among ten then finds about a tenth of what it asked
for. pgvector 0.8's iterative scan reads on until it has enough; the store
turns it on for every connection. Both are shown on the exact SQL the store
sends, through the HNSW index (the plan says so).

A filter holding few chunks (EXACT_AT_MOST or fewer) is searched exactly
instead: the iterative scan walks the whole graph through other sources'
vectors and may still miss some of the filter's nearest. Past that, a filter
holding a small share of the vectors (postgres_share) keeps a longer candidate
list than the connection's, for its statement alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from docserver.store import postgres_exact, postgres_share
from docserver.store.postgres import PostgresOptions, PostgresStore
from docserver.store.postgres_schema import VECTOR_INDEX
from docserver.store.postgres_vector import search_vector_sql
from support.postgres_server import loaded_database

CHUNKS = 20_000
SOURCES = 10
"""bulk_load deals documents of 100 chunks to the sources in turn: a tenth of the chunks each."""
DIMENSION = 16
EF_SEARCH = 40
CANDIDATES = 80
"""What a search of 20 results asks the vector index for: more than EF_SEARCH."""
OPTIONS = PostgresOptions(
    min_size=1,
    max_size=2,
    hnsw_m=8,
    hnsw_ef_construction=16,
    hnsw_ef_search=EF_SEARCH,
    hnsw_filtered_ef_search=EF_SEARCH,
)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("filtered")
    for database, _ in loaded_database(folder, chunks=CHUNKS, dimension=DIMENSION, options=OPTIONS, sources=SOURCES):
        yield database


def query_vector() -> np.ndarray:  # type: ignore[type-arg]
    return np.random.default_rng(11).standard_normal(DIMENSION).astype(np.float32)


def scan(url: str, source: str | None, *, iterative: bool = False) -> tuple[list[Any], str]:
    """The store's vector query with the store's settings, iterative scans off unless asked; (rows, plan)."""
    settings = PostgresStore(url, OPTIONS)._connect_kwargs()
    if not iterative:
        settings["options"] += " -c hnsw.iterative_scan=off"
    vector = query_vector()
    params: tuple[Any, ...] = (vector, vector) if source is None else (vector, vector, source, source)
    query = search_vector_sql(filtered=source is not None, limit=CANDIDATES, dimension=DIMENSION)
    with psycopg.connect(url, autocommit=True, **settings) as conn:
        register_vector(conn)
        plan = "\n".join(row[0] for row in conn.execute(psycopg.sql.SQL("EXPLAIN ") + query, params))
        return conn.execute(query, params).fetchall(), plan


async def store_search(url: str, source: str | None) -> list[Any]:
    store = PostgresStore(url, OPTIONS)
    await store.open()
    try:
        return await store.search_vector(query_vector(), source=source, limit=CANDIDATES)
    finally:
        await store.close()


async def test_every_pooled_connection_searches_with_the_configured_ef_search(url: str) -> None:
    store = PostgresStore(url, OPTIONS)
    await store.open()
    try:
        async with store._ready_pool().connection() as conn:
            cursor = await conn.execute(
                "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')"
            )
            assert await cursor.fetchone() == (str(EF_SEARCH), "relaxed_order")
    finally:
        await store.close()


def test_a_plain_hnsw_scan_returns_at_most_ef_search_chunks(url: str) -> None:
    # The setting reaches the index scan: without iterative scans, ef_search bounds what comes back.
    rows, plan = scan(url, None)
    assert f"Index Scan using {VECTOR_INDEX}" in plan, plan
    assert len(rows) == EF_SEARCH


def test_a_plain_hnsw_scan_filtered_to_one_source_returns_fewer_than_asked(url: str) -> None:
    rows, plan = scan(url, "source-3")
    assert f"Index Scan using {VECTOR_INDEX}" in plan, plan
    assert len(rows) < CANDIDATES // 2, len(rows)  # about a tenth of ef_search


async def test_the_store_finds_every_candidate_asked_for_beyond_ef_search(url: str) -> None:
    ranked = await store_search(url, None)
    assert len(ranked) == CANDIDATES


@pytest.mark.parametrize(
    ("threshold", "value"),
    [("EXACT_AT_MOST", CHUNKS // SOURCES - 1), ("EXACT_BELOW_SHARE", 1 / SOURCES)],
    ids=["more-chunks-than-searched-exactly", "a-large-share-of-the-vectors"],
)
async def test_the_store_finds_every_candidate_of_one_source_through_the_index(
    url: str, monkeypatch: pytest.MonkeyPatch, threshold: str, value: float
) -> None:
    monkeypatch.setattr(postgres_exact, threshold, value)  # a source of 2,000 chunks, a tenth of the vectors
    ranked = await store_search(url, "source-3")
    assert len(ranked) == CANDIDATES
    rows, plan = scan(url, "source-3", iterative=True)  # what the store ran, and how
    assert f"Index Scan using {VECTOR_INDEX}" in plan, plan
    assert {row[0] for row in rows} == {item.chunk_id for item in ranked}  # relaxed order: the store sorts
    with psycopg.connect(url) as conn:
        sources = conn.execute(
            "SELECT DISTINCT source FROM chunks WHERE id = ANY(%s)", ([item.chunk_id for item in ranked],)
        ).fetchall()
    assert sources == [("source-3",)]
    assert [item.score for item in ranked] == sorted((item.score for item in ranked), reverse=True)


def exact_nearest(url: str, sources: list[str], vectors: np.ndarray) -> list[list[tuple[float, int]]]:  # type: ignore[type-arg]
    """Each query's 10 nearest chunks of `sources`, (cosine distance, chunk id), computed here from all the vectors."""
    with psycopg.connect(url) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT c.id, e.embedding FROM chunks c JOIN embeddings e ON e.id = c.embedding_id "
            "WHERE c.source = ANY(%s)",
            (sources,),
        ).fetchall()
    ids = np.array([row[0] for row in rows])
    stored = np.stack([row[1].to_numpy() for row in rows]).astype(np.float64)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    queries = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distances = 1.0 - queries @ stored.T
    nearest = np.argsort(distances, axis=1)[:, :10]
    return [[(float(d[n]), int(ids[n])) for n in row] for d, row in zip(distances, nearest, strict=True)]


@pytest.mark.parametrize("source", ["source-3", ["source-3", "source-7"]])
async def test_a_filter_of_few_chunks_finds_its_exact_nearest(url: str, source: str | list[str]) -> None:
    # 2,000 (or 4,000) chunks of 20,000: at most EXACT_AT_MOST, so the store reads them all and
    # orders them by distance. Through the index (ef_search 40) some of the nearest were missed.
    assert CHUNKS // SOURCES * 2 <= postgres_exact.EXACT_AT_MOST
    sources = [source] if isinstance(source, str) else source
    queries = np.random.default_rng(5).standard_normal((30, DIMENSION)).astype(np.float32)
    expected = exact_nearest(url, sources, queries)
    store = PostgresStore(url, OPTIONS)
    await store.open()
    try:
        for query, truth in zip(queries, expected, strict=True):
            ranked = await store.search_vector(query, source=source, limit=10)
            assert [item.chunk_id for item in ranked] == [chunk_id for _, chunk_id in truth]
            assert [1.0 - item.score for item in ranked] == pytest.approx([d for d, _ in truth], abs=1e-5)
    finally:
        await store.close()


async def test_a_filtered_search_through_the_index_keeps_the_filtered_ef_search_for_that_statement_alone(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the thresholds (here: every filter) a filtered search keeps hnsw_filtered_ef_search candidates:
    # more of the filter's true nearest than at the connection's ef_search, which the connection keeps.
    monkeypatch.setattr(postgres_exact, "EXACT_AT_MOST", -1)
    queries = np.random.default_rng(7).standard_normal((30, DIMENSION)).astype(np.float32)
    expected = [{chunk_id for _, chunk_id in truth} for truth in exact_nearest(url, ["source-3"], queries)]
    found: dict[int, int] = {}
    for ef in (EF_SEARCH, 400):
        store = PostgresStore(url, replace(OPTIONS, max_size=1, hnsw_filtered_ef_search=ef))
        await store.open()
        try:
            found[ef] = 0
            for query, truth in zip(queries, expected, strict=True):
                ranked = await store.search_vector(query, source="source-3", limit=10)
                found[ef] += len({item.chunk_id for item in ranked} & truth)
            async with store._ready_pool().connection() as conn:  # the one connection the searches used
                cursor = await conn.execute("SELECT current_setting('hnsw.ef_search')")
                assert await cursor.fetchone() == (str(EF_SEARCH),)
        finally:
            await store.close()
    assert found[EF_SEARCH] < found[400] <= 10 * len(queries), found


def run_exact(url: str, sources: list[str]) -> tuple[list[Any], str]:
    """The store's exact statement for `sources`, as the store runs it: (rows without the corpus version,
    EXPLAIN ANALYZE of it)."""
    query = postgres_exact.search_exact_sql(CANDIDATES)
    params = (sources, query_vector(), sources)
    with psycopg.connect(url) as conn:
        register_vector(conn)
        rows = conn.execute(query, params).fetchall()
        plan = conn.execute(psycopg.sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) ") + query, params).fetchall()
        [(version,)] = conn.execute("SELECT value FROM meta WHERE key = 'corpus_version'").fetchall()
    assert {row[1] for row in rows} == {version}
    return [(row[0], *row[2:]) for row in rows], "\n".join(row[0] for row in plan)


async def test_past_the_threshold_the_exact_statement_stops_reading_ids_and_reads_no_vector(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The decision costs at most EXACT_AT_MOST + 1 index entries, however many chunks the filter holds,
    # and past it no vector is compared: the one row says "not exact", and the store asks HNSW.
    monkeypatch.setattr(postgres_exact, "EXACT_AT_MOST", 500)
    for sources in ([f"source-{n}" for n in range(5)], ["source-3", "absent"]):
        rows, plan = run_exact(url, sources)
        assert rows == [(False, None, None)]
        assert "rows=501" in plan.split("CTE nearest")[0], plan  # the ids read (from an index: half the table)
        vectors = plan.split("CTE nearest")[1]
        assert "Index Scan using embeddings_pkey on embeddings e (never executed)" in vectors, plan
    rows, _ = run_exact(url, ["absent"])
    assert rows == [(True, None, None)]  # an empty filter is small: searched exactly, nothing found
    assert await store_search(url, "absent") == []


async def test_a_filter_of_a_large_share_of_the_vectors_is_not_searched_exactly(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2,000 chunks of 20,000: under EXACT_AT_MOST, but not under a share of a tenth (`reltuples`).
    monkeypatch.setattr(postgres_exact, "EXACT_BELOW_SHARE", 1 / SOURCES)
    rows, _ = run_exact(url, ["source-3"])
    assert rows == [(False, None, None)]
    monkeypatch.setattr(postgres_exact, "EXACT_BELOW_SHARE", 1 / SOURCES + 0.01)
    rows, _ = run_exact(url, ["source-3"])
    assert len(rows) == CANDIDATES and all(exact for exact, _, _ in rows)


def plain_scans(url: str) -> str:
    """`url` with iterative scans off: an HNSW scan then returns the filter's share of the `ef_search` candidates
    it kept, so how many rows come back tells which `ef_search` the statement ran with."""
    return f"{url}&options=-c%20hnsw.iterative_scan%3Doff"


async def test_a_filter_of_a_small_share_of_the_vectors_keeps_the_filtered_ef_search_and_a_large_one_does_not(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every filter past the exact thresholds; ef_search 40, and 400 for a filter of less than three quarters of
    # the vectors. Plain scans: about share × ef_search of the filter's chunks come back, at most the 80 asked.
    monkeypatch.setattr(postgres_exact, "EXACT_AT_MOST", -1)
    assert postgres_share.RAISED_BELOW_SHARE == 3 / 4
    three = [f"source-{n}" for n in range(3)]  # 0.3 of the vectors
    eight = [f"source-{n}" for n in range(8)]  # 0.8
    store = PostgresStore(plain_scans(url), replace(OPTIONS, max_size=1, hnsw_filtered_ef_search=400))
    await store.open()
    try:
        small = await store.search_vector(query_vector(), source=three, limit=CANDIDATES)
        assert len(small) == CANDIDATES  # about 0.3 × 400 found; at 40, at most 40
        noted = store.declined.get(three)
        assert noted is not None and noted.ef_search == 400  # decided once for this corpus version
        assert len(await store.search_vector(query_vector(), source=three, limit=CANDIDATES)) == len(small)
        large = await store.search_vector(query_vector(), source=eight, limit=CANDIDATES)
        assert 0 < len(large) <= EF_SEARCH  # about 0.8 × 40
        noted = store.declined.get(eight)
        assert noted is not None and noted.ef_search is None
        assert len(await store.search_vector(query_vector(), source=None, limit=CANDIDATES)) == EF_SEARCH
        async with store._ready_pool().connection() as conn:  # the one connection the searches used
            cursor = await conn.execute("SELECT current_setting('hnsw.ef_search')")
            assert await cursor.fetchone() == (str(EF_SEARCH),)
    finally:
        await store.close()


@pytest.mark.parametrize(("share", "raised"), [(0.5, False), (0.51, True)])
async def test_the_share_is_the_filters_chunks_against_the_vectors(
    url: str, monkeypatch: pytest.MonkeyPatch, share: float, raised: bool
) -> None:
    # Five sources of ten: 10,000 chunks of 20,000 vectors, counted no further than the share.
    monkeypatch.setattr(postgres_share, "RAISED_BELOW_SHARE", share)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        ef_search = await postgres_share.ef_search_for(conn, [f"source-{n}" for n in range(5)], 400)
    assert ef_search == (400 if raised else None)
