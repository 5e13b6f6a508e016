"""SQLite full text on a large store: the words more than half the chunks hold are left out of the query.

Every chunk's title holds the product's name and version here, as every page
title of Python's docs holds "Python 3.11.2 documentation": bm25() gives such
words no weight, so leaving them out keeps the page a full ranking returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from docserver.store import sqlite_driver, sqlite_sql
from docserver.store.base import ChunkInput, DocumentInput, EmbedderInfo, RankedId
from docserver.store.sqlite import SqliteStore

INFO = EmbedderInfo("test", "text-v1", 8)
TITLE = "Product 3.11 documentation"
FILLER = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def _text(number: int) -> str:
    """Distinct texts of distinct lengths: "replica" in a third of them, up to four times; "lag" in half."""
    words = [FILLER[number % len(FILLER)]] * (number % 7 + 1)
    if number % 3 == 0:
        words += ["replica"] * (number % 4 + 1)
    if number % 2 == 0:
        words += ["lag"]
    return " ".join(words)


def _document(number: int, title: str = TITLE, text: str | None = None) -> DocumentInput:
    body = _text(number) if text is None else text
    chunk = ChunkInput(0, f"Section {number}", body, 0, 1)
    vector = np.ones((1, 8), dtype=np.float32) / np.sqrt(8)
    return DocumentInput(f"doc{number}.md", title, f"h{number}", body, [chunk], vector)


@pytest.fixture
async def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SqliteStore]:
    monkeypatch.setattr(sqlite_sql, "RELAX_FROM_CHUNKS", 10)  # 60 chunks: a large store here
    opened = SqliteStore(tmp_path / "common.db")
    await opened.open()
    await opened.bind_embedder(INFO)
    async with opened.update_source("docs") as writer:
        for number in range(60):
            await writer.put_document(_document(number))
    yield opened
    await opened.close()


def _full_ranking(store: SqliteStore, terms: list[str], limit: int) -> list[RankedId]:
    """The every-word tier with every query word in the statement, every match scored (the statement before)."""
    db = sqlite_driver.connect(store.path)
    try:
        return sqlite_sql._ranked(db, "1", [], sqlite_sql._fts_query(terms, "AND"), None, limit)
    finally:
        db.close()


def _same_page(found: list[RankedId], full: list[RankedId]) -> bool:
    # bm25() gives a word every chunk holds an IDF of 1e-6, not 0: the scores differ by about that much.
    return [item.chunk_id for item in found] == [item.chunk_id for item in full] and all(
        abs(a.score - b.score) < 1e-4 for a, b in zip(found, full, strict=True)
    )


async def test_words_every_chunk_holds_leave_the_full_rankings_page_unchanged(store: SqliteStore) -> None:
    found = await store.search_text("product 3 documentation replica", source=None, limit=10)
    full = _full_ranking(store, ["product", "3", "documentation", "replica"], 10)
    assert len(full) == 10 and _same_page(found, full)


async def test_a_query_of_only_common_words_still_returns_the_full_rankings_best_chunks(store: SqliteStore) -> None:
    found = await store.search_text("product documentation", source=None, limit=10)
    assert len(found) == 10 and _same_page(found, _full_ranking(store, ["product", "documentation"], 10))


async def test_common_words_and_a_word_no_chunk_holds_still_answer(store: SqliteStore) -> None:
    found = await store.search_text("product documentation replica zqxjvw", source=None, limit=5)
    assert _same_page(found, _full_ranking(store, ["product", "documentation", "replica"], 5))


async def test_a_word_more_than_half_hold_no_longer_keeps_a_chunk_out_of_the_every_word_tier(
    store: SqliteStore,
) -> None:
    # The one behaviour that moves: a chunk lacking such a word (held by 60 of 61 here) now
    # ranks with those that hold it, by the informative words, as bm25() alone would rank it.
    async with store.update_source("other") as writer:
        await writer.put_document(_document(60, title="Elsewhere", text="replica replica replica replica"))
    ranked = await store.search_text("product replica", source=None, limit=20)
    chunks = await store.get_chunks([item.chunk_id for item in ranked])
    assert "other" in {chunk.source for chunk in chunks}
    assert all(item.score >= 1.0 for item in ranked)  # one tier: every informative word


async def test_a_small_store_keeps_every_word(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_sql, "RELAX_FROM_CHUNKS", 100_000)
    async with store.update_source("other") as writer:
        await writer.put_document(_document(60, title="Elsewhere", text="replica replica replica replica"))
    ranked = await store.search_text("product replica", source=None, limit=20)
    assert "other" not in {chunk.source for chunk in await store.get_chunks([item.chunk_id for item in ranked])}


async def test_words_are_counted_again_after_a_write(store: SqliteStore) -> None:
    db = sqlite_driver.connect(store.path)
    try:
        assert sqlite_sql.word_counts(db, ["zebra"])["zebra"] == 0
        async with store.update_source("other") as writer:
            await writer.put_document(_document(60, text="zebra"))
        assert sqlite_sql.word_counts(db, ["zebra"])["zebra"] == 1
    finally:
        db.close()


@pytest.mark.parametrize(("word", "held_by_more_than_half"), [("product", True), ("lag", False), ("replica", False)])
async def test_a_sampled_word_is_left_out_only_when_counted_above_half(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, word: str, held_by_more_than_half: bool
) -> None:
    monkeypatch.setattr(sqlite_sql, "COUNTED_EXACTLY_BELOW", 2)  # every word held by two chunks or more is sampled
    db = sqlite_driver.connect(store.path)
    try:
        counts = sqlite_sql.word_counts(db, [word, "replica"])
    finally:
        db.close()
    assert (sqlite_sql.informative([word, "replica"], counts) == ["replica"]) is held_by_more_than_half


async def test_a_database_made_again_at_the_same_path_is_counted_afresh(tmp_path: Path) -> None:
    # Versions start again in a new file: the counts of the file deleted before must not answer for it.
    path = tmp_path / "again.db"
    texts: list[str] = []
    for documents in (range(60), range(61)):
        _delete_database(path)
        made = SqliteStore(path)
        await made.open()
        try:
            await made.bind_embedder(INFO)
            async with made.update_source("docs") as writer:
                for number in documents:
                    await writer.put_document(_document(number, text="zebra" if number == 60 else None))
            found = await made.search_text("zebra", source=None, limit=5)
            texts = [chunk.text for chunk in await made.get_chunks([item.chunk_id for item in found])]
        finally:
            await made.close()
    assert texts == ["zebra"]


def _delete_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
