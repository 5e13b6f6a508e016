"""SQLite's approximate vector index (inverted lists): switched on by size, kept in step, resumable, near-exact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from docserver.store import sqlite_driver
from docserver.store import sqlite_vector_index as vector_index
from docserver.store.base import ChunkInput, DocumentInput, EmbedderInfo
from docserver.store.sqlite import SqliteStore

DIMENSION = 32
INFO = EmbedderInfo("test", "index-v1", DIMENSION)
DOCUMENTS = 60
CHUNKS_PER_DOCUMENT = 10
TOPICS = 24
"""Vectors cluster around topics, as real embeddings of documentation do (random vectors have no neighbours to find)."""


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


CENTRES = _unit(np.random.default_rng(0).standard_normal((TOPICS, DIMENSION)))


def _vectors(seed: int, count: int, noise: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _unit(CENTRES[rng.integers(0, TOPICS, count)] + noise * rng.standard_normal((count, DIMENSION)))


def _document(number: int) -> DocumentInput:
    vectors = _vectors(number, CHUNKS_PER_DOCUMENT)
    chunks = [ChunkInput(i, f"h{i}", f"text {number} {i}", i, i) for i in range(CHUNKS_PER_DOCUMENT)]
    return DocumentInput(f"doc{number}.md", f"Doc {number}", f"hash{number}", "content", chunks, vectors)


@pytest.fixture(autouse=True)
def small_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """The index pays from 10,000 chunks; these tests switch it on from 200, and build 64 vectors per step."""
    monkeypatch.setattr(vector_index, "MIN_INDEXED_CHUNKS", 200)
    monkeypatch.setattr(vector_index, "BUILD_BATCH", 64)


async def _open(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    await store.bind_embedder(INFO)
    return store


async def _ingest(store: SqliteStore, numbers: range, source: str = "docs") -> None:
    async with store.update_source(source) as writer:
        for number in numbers:
            await writer.put_document(_document(number))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await _open(tmp_path / "index.db")
    await _ingest(opened, range(DOCUMENTS))
    await opened.vector_index_built()
    yield opened
    await opened.close()


def _raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite_driver.connect(path)
    try:
        return list(connection.execute(sql).fetchall())
    finally:
        connection.close()


def _searched(path: Path) -> vector_index.Generation | None:
    connection = sqlite_driver.connect(path)
    try:
        return vector_index.Generation.read(connection, vector_index.SEARCHED, "chunk_vectors")
    finally:
        connection.close()


def _exact_top(path: Path, query: np.ndarray, limit: int) -> list[int]:
    rows = _raw(
        path,
        f"SELECT chunk_id FROM chunk_vectors WHERE embedding MATCH X'{query.tobytes().hex()}' AND k = {limit} "
        "ORDER BY distance",
    )
    return [int(row[0]) for row in rows]  # type: ignore[call-overload]


async def _recall(store: SqliteStore, limit: int = 10) -> float:
    found = 0
    queries = _vectors(1000, 40, noise=0.2)
    for query in queries:
        ranked = await store.search_vector(query, source=None, limit=limit)
        found += len({item.chunk_id for item in ranked} & set(_exact_top(store.path, query, limit)))
    return found / (len(queries) * limit)


async def test_a_small_store_searches_exactly_without_lists(tmp_path: Path) -> None:
    store = await _open(tmp_path / "small.db")
    try:
        await _ingest(store, range(10))  # 100 chunks, below the threshold
        await store.vector_index_built()
        assert _searched(store.path) is None
        assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_lists") == [(0,)]
        assert await _recall(store) == 1.0
    finally:
        await store.close()


async def test_the_lists_switch_on_above_the_threshold(store: SqliteStore) -> None:
    generation = _searched(store.path)
    assert generation is not None and generation.trained_on >= 200
    assert generation.lists == round((DOCUMENTS * CHUNKS_PER_DOCUMENT) ** 0.5)  # the square root of the size
    stored = DOCUMENTS * CHUNKS_PER_DOCUMENT
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_lists") == [(stored,)]
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_full") == [(stored,)]


async def test_each_vector_is_filed_under_its_nearest_centroid(store: SqliteStore) -> None:
    centroids = {
        int(row[0]): np.frombuffer(row[1], dtype=np.float32)  # type: ignore[call-overload, arg-type]
        for row in _raw(store.path, "SELECT list, embedding FROM chunk_vectors_centroids")
    }
    full = dict(_raw(store.path, "SELECT chunk_id, embedding FROM chunk_vectors_full"))
    for rowid, chunk_id in _raw(store.path, "SELECT rowid, chunk_id FROM chunk_vectors_lists LIMIT 50"):
        vector = np.frombuffer(full[chunk_id], dtype=np.float32)  # type: ignore[call-overload]
        best = max(centroids, key=lambda lst: float(centroids[lst] @ vector))
        assert int(rowid) >> 32 == best  # type: ignore[call-overload]


async def test_the_lists_return_what_the_exact_scan_returns(store: SqliteStore) -> None:
    assert await _recall(store) >= 0.95


async def test_the_scores_are_exact_cosine_similarities(store: SqliteStore) -> None:
    query = _vectors(7, 1)[0]
    ranked = await store.search_vector(query, source=None, limit=3)
    stored = dict(_raw(store.path, "SELECT chunk_id, embedding FROM chunk_vectors_full"))
    for item in ranked:
        vector = np.frombuffer(stored[item.chunk_id], dtype=np.float32)  # type: ignore[call-overload]
        assert item.score == pytest.approx(float(vector @ query), abs=1e-5)


async def test_new_vectors_are_filed_as_they_are_written(store: SqliteStore) -> None:
    await _ingest(store, range(DOCUMENTS, DOCUMENTS + 2), source="more")
    more = _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_lists WHERE source = 'more'")
    assert more == [(2 * CHUNKS_PER_DOCUMENT,)]


async def test_a_deleted_document_leaves_nothing_in_the_lists(store: SqliteStore) -> None:
    async with store.update_source("docs") as writer:
        await writer.delete_documents(["doc0.md"])
    remaining = (DOCUMENTS - 1) * CHUNKS_PER_DOCUMENT
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_full") == [(remaining,)]
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_lists") == [(remaining,)]


async def test_a_source_filter_applies_to_the_lists(store: SqliteStore) -> None:
    await _ingest(store, range(999, 1000), source="other")
    ranked = await store.search_vector(_vectors(999, 1)[0], source="other", limit=5)
    other_ids = {row[0] for row in _raw(store.path, "SELECT chunk_id FROM chunk_vectors WHERE source = 'other'")}
    assert len(ranked) == 5 and {item.chunk_id for item in ranked} <= other_ids


async def test_a_filter_the_nearest_lists_leave_short_is_answered_exactly(store: SqliteStore) -> None:
    await _ingest(store, range(999, 1000), source="other")  # 10 chunks: most lists hold none of them
    ranked = await store.search_vector(_vectors(5, 1)[0], source="other", limit=10)
    assert len(ranked) == 10


async def test_a_grown_store_gets_a_new_generation_and_the_old_one_goes(store: SqliteStore) -> None:
    first = _searched(store.path)
    assert first is not None
    await _ingest(store, range(DOCUMENTS, DOCUMENTS * vector_index.RETRAIN_GROWTH + 10), source="more")
    await store.vector_index_built()
    second = _searched(store.path)
    assert second is not None and second.number == first.number + 1
    assert second.lists > first.lists
    generations = {int(row[0]) >> 48 for row in _raw(store.path, "SELECT rowid FROM chunk_vectors_lists")}  # type: ignore[call-overload]
    assert generations == {second.number}
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_centroids") == [(second.lists,)]
    assert await _recall(store) >= 0.95


def _forget_index(path: Path) -> None:
    """Make the database look like one written before the index existed."""
    connection = sqlite_driver.connect(path)
    try:
        for table in ("chunk_vectors_full", "chunk_vectors_lists", "chunk_vectors_centroids"):
            connection.execute(f"DROP TABLE {table}")
        connection.execute("DELETE FROM meta WHERE key LIKE 'vector_index%' OR key LIKE 'vector_lists%'")
    finally:
        connection.close()


async def test_an_older_database_gets_its_index_built_on_open(store: SqliteStore) -> None:
    await store.close()
    _forget_index(store.path)
    await store.open()
    await store.vector_index_built()
    assert _searched(store.path) is not None
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_lists") == [(DOCUMENTS * CHUNKS_PER_DOCUMENT,)]
    assert await _recall(store) >= 0.95


async def test_the_int8_index_before_the_lists_is_replaced(store: SqliteStore) -> None:
    await store.close()
    connection = sqlite_driver.connect(store.path)
    try:  # the earlier index: an int8 vec0 table beside the full vectors, no lists
        connection.execute(
            "CREATE VIRTUAL TABLE chunk_vectors_coarse USING vec0("
            f"chunk_id INTEGER PRIMARY KEY, source TEXT PARTITION KEY, embedding INT8[{DIMENSION}])"
        )
        connection.execute("DROP TABLE chunk_vectors_lists")
        connection.execute("DELETE FROM meta WHERE key LIKE 'vector_lists%'")
    finally:
        connection.close()
    await store.open()
    await store.vector_index_built()
    assert _raw(store.path, "SELECT name FROM sqlite_master WHERE name = 'chunk_vectors_coarse'") == []
    assert _searched(store.path) is not None


async def test_an_interrupted_build_resumes_where_it_stopped(store: SqliteStore) -> None:
    await store.close()
    _forget_index(store.path)
    connection = sqlite_driver.connect(store.path)
    try:  # the full vectors copied, the lists trained, one batch filed; then the process "stops"
        while connection.execute("SELECT value FROM meta WHERE key = 'vector_lists_build'").fetchone() is None:
            assert not vector_index.build_step(connection, "chunk_vectors")
        assert not vector_index.build_step(connection, "chunk_vectors")
        building = vector_index.Generation.read(connection, vector_index.BUILDING, "chunk_vectors")
        assert not vector_index.usable(connection, "chunk_vectors")  # searches stay exact meanwhile
    finally:
        connection.close()
    assert building is not None and building.cursor == 64
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_lists") == [(64,)]
    await store.open()
    await store.vector_index_built()
    resumed = _searched(store.path)
    assert resumed is not None and resumed.token == building.token  # the same training, not a new one
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_lists") == [(DOCUMENTS * CHUNKS_PER_DOCUMENT,)]


def test_the_work_of_a_search_is_bounded() -> None:
    assert vector_index.candidates_for(5) == vector_index.MIN_CANDIDATES
    assert vector_index.candidates_for(10) == 50
    assert vector_index.candidates_for(1000) == vector_index.MAX_CANDIDATES
    assert vector_index.probes_for(16) == vector_index.MIN_PROBES
    assert vector_index.probes_for(1000) == 20  # 2% of the lists


async def test_a_sparse_query_is_searched_exactly(store: SqliteStore) -> None:
    query = np.zeros(DIMENSION, dtype=np.float32)  # as the hash embedder's short queries: a few dimensions set
    query[[3, 11, 20]] = (0.6, -0.64, 0.48)
    assert not vector_index.dense(query) and vector_index.dense(_vectors(3, 1)[0])
    ranked = await store.search_vector(query, source=None, limit=10)
    assert [item.chunk_id for item in ranked] == _exact_top(store.path, query, 10)


MANY_TOPICS, MANY_DOCUMENTS, WIDE = 100, 400, 128
"""4,000 chunks near 100 topics in 128 dimensions: 63 lists, fewer than the topics, as at a million chunks."""


async def _recall_many_topics(path: Path, rounds: int, monkeypatch: pytest.MonkeyPatch) -> float:
    """Recall@10 in a store whose topics outnumber its lists, trained on samples of 2 vectors a list."""
    monkeypatch.setattr(vector_index, "TRAIN_SAMPLE_PER_LIST", 2)
    monkeypatch.setattr(vector_index, "TRAIN_ROUNDS", rounds)
    centres = _unit(np.random.default_rng(5).standard_normal((MANY_TOPICS, WIDE)))
    rng = np.random.default_rng(6)

    def near_topics(count: int, noise: float) -> np.ndarray:
        return _unit(centres[rng.integers(0, MANY_TOPICS, count)] + noise * rng.standard_normal((count, WIDE)))

    store = SqliteStore(path)
    await store.open()
    await store.bind_embedder(EmbedderInfo("test", "wide", WIDE))
    try:
        async with store.update_source("docs") as writer:
            for number in range(MANY_DOCUMENTS):
                chunks = [ChunkInput(i, f"h{i}", f"text {number} {i}", i, i) for i in range(CHUNKS_PER_DOCUMENT)]
                vectors = near_topics(CHUNKS_PER_DOCUMENT, 0.06)
                await writer.put_document(
                    DocumentInput(f"doc{number}.md", f"Doc {number}", f"h{number}", "c", chunks, vectors)
                )
        await store.vector_index_built()
        found = 0
        queries = near_topics(60, 0.072)
        for query in queries:
            ranked = await store.search_vector(query, source=None, limit=10)
            found += len({item.chunk_id for item in ranked} & set(_exact_top(path, query, 10)))
        return found / (len(queries) * 10)
    finally:
        await store.close()


async def test_fresh_samples_train_the_lists_where_topics_outnumber_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One small sample leaves most topics unseen and their vectors scattered over lists; the rounds find them."""
    rounds = vector_index.TRAIN_ROUNDS
    one_sample = await _recall_many_topics(tmp_path / "one.db", 0, monkeypatch)
    with_rounds = await _recall_many_topics(tmp_path / "rounds.db", rounds, monkeypatch)
    assert with_rounds >= 0.95 and with_rounds > one_sample


def test_a_round_keeps_unit_centroids_and_a_list_no_batch_reaches() -> None:
    centroids = _unit(np.random.default_rng(2).standard_normal((4, DIMENSION)))
    batch = _unit(centroids[:3].repeat(5, axis=0) + 0.01)  # near the first three centroids only
    refined, sums = vector_index._refine(centroids, np.zeros_like(centroids), batch)
    assert np.allclose(np.linalg.norm(refined, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(refined[3], centroids[3]) and not sums[3].any()
    assert all(float(refined[i] @ centroids[i]) > 0.99 for i in range(3))
    empty = np.zeros((0, 1), dtype=np.float32)  # what a sample of freed ids reads
    assert vector_index._refine(refined, sums, empty)[0] is refined
