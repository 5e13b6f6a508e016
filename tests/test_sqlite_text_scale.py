"""SQLite full text at scale: every-word matches ranked alone first, all-but-one next on a large store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from docserver.store import sqlite_driver, sqlite_sql
from docserver.store.base import ChunkInput, DocumentInput, EmbedderInfo
from docserver.store.sqlite import SqliteStore

INFO = EmbedderInfo("test", "text-v1", 8)
TEXTS = (
    ["replica lag alert threshold"] * 6  # every word
    + ["replica lag dashboard"] * 6  # two of three
    + ["replica"] * 12  # one of three: many, as a common word's chunks are
    + ["zebra zebra zebra"] * 6  # one of three, a rare word: BM25 scores these above two common words
    + ["unrelated words only"] * 46  # so that "replica" is in fewer than half the chunks (see informative)
)


def _document(number: int, text: str) -> DocumentInput:
    chunk = ChunkInput(0, f"Section {number}", f"{text} {number}", 0, 1)
    vector = np.ones((1, 8), dtype=np.float32) / np.sqrt(8)
    return DocumentInput(f"doc{number}.md", f"Doc {number}", f"h{number}", text, [chunk], vector)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "text.db")
    await opened.open()
    await opened.bind_embedder(INFO)
    async with opened.update_source("docs") as writer:
        for number, text in enumerate(TEXTS):
            await writer.put_document(_document(number, text))
    yield opened
    await opened.close()


def _texts(store: SqliteStore, ids: list[int]) -> list[str]:
    db = sqlite_driver.connect(store.path)
    try:
        found = dict(
            db.execute(f"SELECT id, text FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
        )
    finally:
        db.close()
    return [found[chunk_id].rsplit(" ", 1)[0] for chunk_id in ids]


def _one_or_query(store: SqliteStore, terms: list[str], limit: int) -> list[int]:
    """The statement before every-word-first: one OR query, with the every-word tier, every match scored."""
    db = sqlite_driver.connect(store.path)
    try:
        every = [sqlite_sql._fts_query(terms, "AND")]
        ranked = sqlite_sql._ranked(db, sqlite_sql._EVERY_WORD, every, sqlite_sql._fts_query(terms), None, limit)
    finally:
        db.close()
    return [item.chunk_id for item in ranked]


async def test_every_word_matches_ranked_alone_give_the_same_page(store: SqliteStore) -> None:
    ranked = await store.search_text("replica lag alert", source=None, limit=5)
    assert [item.chunk_id for item in ranked] == _one_or_query(store, ["replica", "lag", "alert"], 5)
    assert set(_texts(store, [item.chunk_id for item in ranked])) == {"replica lag alert threshold"}


async def test_a_short_every_word_tier_is_followed_by_partial_matches(store: SqliteStore) -> None:
    ranked = await store.search_text("replica lag alert", source=None, limit=10)
    assert [item.chunk_id for item in ranked] == _one_or_query(store, ["replica", "lag", "alert"], 10)
    assert _texts(store, [item.chunk_id for item in ranked][6:]) == ["replica lag dashboard"] * 4


async def test_a_large_store_ranks_only_all_words_but_one_when_there_are_any(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    terms = ["replica", "lag", "zebra"]
    small = _texts(store, _one_or_query(store, terms, 6))
    assert set(small) == {"zebra zebra zebra"}  # below the threshold: BM25 alone orders the partial matches
    monkeypatch.setattr(sqlite_sql, "RELAX_FROM_CHUNKS", 10)
    ranked = await store.search_text("replica lag zebra", source=None, limit=6)
    two_of_three = {"replica lag alert threshold", "replica lag dashboard"}
    assert len(ranked) == 6 and set(_texts(store, [item.chunk_id for item in ranked])) <= two_of_three
    more = await store.search_text("replica lag zebra", source=None, limit=20)
    assert len(more) == 12  # a short page rather than scoring every chunk that holds one word


async def test_a_small_store_ranks_every_partial_match(store: SqliteStore) -> None:
    ranked = await store.search_text("replica lag zebra", source=None, limit=40)
    assert [item.chunk_id for item in ranked] == _one_or_query(store, ["replica", "lag", "zebra"], 40)
    assert len(ranked) == 30


async def test_a_large_store_falls_back_to_any_word_when_no_chunk_holds_all_but_one(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_sql, "RELAX_FROM_CHUNKS", 10)
    ranked = await store.search_text("threshold dashboard zebra", source=None, limit=5)
    assert len(ranked) == 5


async def test_a_large_store_returns_a_short_every_word_tier_as_it_is(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_sql, "RELAX_FROM_CHUNKS", 10)
    short = await store.search_text("replica threshold", source=None, limit=10)
    assert set(_texts(store, [item.chunk_id for item in short])) == {"replica lag alert threshold"}
    assert len(short) == 6


@pytest.mark.parametrize("large", [False, True])
async def test_a_word_no_chunk_holds_is_left_out_of_the_tiers(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    if large:
        monkeypatch.setattr(sqlite_sql, "RELAX_FROM_CHUNKS", 10)
    without = await store.search_text("replica lag alert", source=None, limit=10)
    with_typo = await store.search_text("replica lag alret alert", source=None, limit=10)
    assert [item.chunk_id for item in with_typo] == [item.chunk_id for item in without]
    assert _texts(store, [item.chunk_id for item in with_typo])[:6] == ["replica lag alert threshold"] * 6
    assert all(item.score >= 1.0 for item in with_typo[:6])  # still the every-word tier's scores


async def test_a_query_of_words_no_chunk_holds_matches_nothing(store: SqliteStore) -> None:
    assert await store.search_text("alret thresold", source=None, limit=5) == []
