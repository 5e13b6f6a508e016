"""SQLite's approximate vector index: the same answers as the exact scan, kept in step, built for older databases."""

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
DOCUMENTS = 40
CHUNKS_PER_DOCUMENT = 10


def _vectors(seed: int, count: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _document(number: int) -> DocumentInput:
    vectors = _vectors(number, CHUNKS_PER_DOCUMENT)
    chunks = [ChunkInput(i, f"h{i}", f"text {number} {i}", i, i) for i in range(CHUNKS_PER_DOCUMENT)]
    return DocumentInput(f"doc{number}.md", f"Doc {number}", f"hash{number}", "content", chunks, vectors)


@pytest.fixture(autouse=True)
def small_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """The index pays from 20,000 chunks; these tests use it from 100, and build it 64 vectors per step."""
    monkeypatch.setattr(vector_index, "MIN_INDEXED_CHUNKS", 100)
    monkeypatch.setattr(vector_index, "BUILD_BATCH", 64)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "index.db")
    await opened.open()
    await opened.bind_embedder(INFO)
    async with opened.update_source("docs") as writer:
        for number in range(DOCUMENTS):
            await writer.put_document(_document(number))
    yield opened
    await opened.close()


def _raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite_driver.connect(path)
    try:
        return list(connection.execute(sql).fetchall())
    finally:
        connection.close()


def _exact_top(path: Path, query: np.ndarray, limit: int) -> list[int]:
    connection = sqlite_driver.connect(path)
    try:
        rows = connection.execute(
            "SELECT chunk_id FROM chunk_vectors WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (query.tobytes(), limit),
        ).fetchall()
    finally:
        connection.close()
    return [row[0] for row in rows]


async def _recall(store: SqliteStore, limit: int = 10) -> float:
    found = 0
    for query in _vectors(1000, 20):
        ranked = await store.search_vector(query, source=None, limit=limit)
        found += len({item.chunk_id for item in ranked} & set(_exact_top(store.path, query, limit)))
    return found / (20 * limit)


async def test_a_new_store_is_indexed_from_the_start(store: SqliteStore) -> None:
    assert _raw(store.path, "SELECT value FROM meta WHERE key = 'vector_index'") == [("chunk_vectors",)]
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_full") == [(DOCUMENTS * CHUNKS_PER_DOCUMENT,)]


async def test_the_index_returns_what_the_exact_scan_returns(store: SqliteStore) -> None:
    assert await _recall(store) >= 0.95


async def test_the_index_scores_are_exact_cosine_similarities(store: SqliteStore) -> None:
    query = _vectors(7, 1)[0]
    ranked = await store.search_vector(query, source=None, limit=3)
    stored = dict(_raw(store.path, "SELECT chunk_id, embedding FROM chunk_vectors_full"))
    for item in ranked:
        vector = np.frombuffer(stored[item.chunk_id], dtype=np.float32)  # type: ignore[call-overload]
        assert item.score == pytest.approx(float(vector @ query), abs=1e-5)


async def test_a_replaced_document_leaves_nothing_in_the_index(store: SqliteStore) -> None:
    async with store.update_source("docs") as writer:
        await writer.delete_documents(["doc0.md"])
    remaining = (DOCUMENTS - 1) * CHUNKS_PER_DOCUMENT
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_full") == [(remaining,)]
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_coarse") == [(remaining,)]


async def test_a_source_filter_applies_to_the_index(store: SqliteStore) -> None:
    async with store.update_source("other") as writer:
        await writer.put_document(_document(999))
    ranked = await store.search_vector(_vectors(999, 1)[0], source="other", limit=5)
    other_ids = {row[0] for row in _raw(store.path, "SELECT chunk_id FROM chunk_vectors WHERE source = 'other'")}
    assert ranked and {item.chunk_id for item in ranked} <= other_ids


async def test_several_sources_filter_the_index_and_keep_the_limit(store: SqliteStore) -> None:
    for source, number in (("other", 999), ("third", 998)):
        async with store.update_source(source) as writer:
            await writer.put_document(_document(number))
    ranked = await store.search_vector(_vectors(999, 1)[0], source=("other", "third"), limit=5)
    chosen = "SELECT chunk_id FROM chunk_vectors WHERE source IN ('other', 'third')"
    assert len(ranked) == 5 and {item.chunk_id for item in ranked} <= {row[0] for row in _raw(store.path, chosen)}


def _forget_index(path: Path) -> None:
    """Make the database look like one written before the index existed."""
    connection = sqlite_driver.connect(path)
    try:
        connection.execute("DROP TABLE chunk_vectors_coarse")
        connection.execute("DROP TABLE chunk_vectors_full")
        connection.execute("DELETE FROM meta WHERE key LIKE 'vector_index%'")
    finally:
        connection.close()


async def test_an_older_database_gets_its_index_built_on_open(store: SqliteStore) -> None:
    await store.close()
    _forget_index(store.path)
    await store.open()
    await store.vector_index_built()
    assert _raw(store.path, "SELECT value FROM meta WHERE key = 'vector_index'") == [("chunk_vectors",)]
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_coarse") == [(DOCUMENTS * CHUNKS_PER_DOCUMENT,)]
    assert await _recall(store) >= 0.95


async def test_an_interrupted_build_resumes_where_it_stopped(store: SqliteStore) -> None:
    await store.close()
    _forget_index(store.path)
    connection = sqlite_driver.connect(store.path)
    try:  # two steps of the build, then the process "stops"
        assert not vector_index.build_step(connection, "chunk_vectors")
        assert not vector_index.build_step(connection, "chunk_vectors")
        cursor = connection.execute("SELECT value FROM meta WHERE key = 'vector_index_cursor'").fetchone()[0]
    finally:
        connection.close()
    assert int(cursor) == 128
    await store.open()
    await store.vector_index_built()
    assert _raw(store.path, "SELECT COUNT(*) FROM chunk_vectors_full") == [(DOCUMENTS * CHUNKS_PER_DOCUMENT,)]
    assert _raw(store.path, "SELECT COUNT(*) FROM meta WHERE key = 'vector_index_cursor'") == [(0,)]


async def test_an_incomplete_index_is_not_searched(store: SqliteStore) -> None:
    await store.close()
    _forget_index(store.path)
    connection = sqlite_driver.connect(store.path)
    try:
        vector_index.build_step(connection, "chunk_vectors")  # 64 of 400 vectors indexed
        assert not vector_index.usable(connection, "chunk_vectors")
    finally:
        connection.close()


def test_the_candidate_count_is_bounded() -> None:
    assert vector_index.candidates_for(5) == vector_index.MIN_CANDIDATES
    assert vector_index.candidates_for(100) == 1000
    assert vector_index.candidates_for(10_000) == vector_index.MAX_CANDIDATES
