"""`docserver reindex`: moving a store to another embedder while it keeps answering, on both backends.

"Another process" is a second store object on the same database, bound to the
old embedder, as a running server or an ingest would be. Pauses are events a
test releases (an embedder batch, the switch), never sleeps.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from conftest import CORPUS, KNOWN_ANSWERS
from docserver.binding import bind_embedder
from docserver.embed.hashing import HashEmbedder
from docserver.errors import EmbedderMismatchError, EmbeddingError, StoreBusyError
from docserver.ingest.pipeline import embedding_text, ingest
from docserver.observability.metrics import Metrics
from docserver.reindex import ReindexSummary, reindex
from docserver.search import SearchService
from docserver.store import postgres_reindex
from docserver.store.base import ChunkInput, ChunkRecord, DocumentInput, EmbedderInfo, Store, Vectors
from support.captured_logs import capture_events
from support.docserver_process import docserver_env, run_cli
from test_ingest import assert_one_line_error
from test_store_contract import BACKENDS, POSTGRESQL, SQLITE, Backend

OLD_DIMENSION = 128
NEW_DIMENSION = 96
SCAN_BATCH = 3
"""Small steps, so a reindex of the test corpus stages several batches before it switches."""


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


def old_embedder() -> HashEmbedder:
    return HashEmbedder(dimension=OLD_DIMENSION)


def new_embedder() -> HashEmbedder:
    return HashEmbedder(dimension=NEW_DIMENSION, batch_size=SCAN_BATCH)


class GatedEmbedder(HashEmbedder):
    """A HashEmbedder whose batch number `gate_at` sets `reached`, then waits for `release`."""

    def __init__(self, *, dimension: int, gate_at: int) -> None:
        super().__init__(dimension=dimension, batch_size=SCAN_BATCH)
        self.gate_at = gate_at
        self.calls = 0
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        if self.calls == self.gate_at:
            self.reached.set()
            await self.release.wait()
        return await super().embed_batch(texts)


class FailingEmbedder(HashEmbedder):
    """A HashEmbedder whose batch number `fail_at` fails as a provider outage would."""

    def __init__(self, *, dimension: int, fail_at: int) -> None:
        super().__init__(dimension=dimension, batch_size=SCAN_BATCH)
        self.fail_at = fail_at
        self.calls = 0

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        if self.calls == self.fail_at:
            raise EmbeddingError("the embedding provider is unreachable", "connection")
        return await super().embed_batch(texts)


class PausedSwitch:
    """A store whose first `switch_reindex` sets `reached`, then waits for `release`: all staged, nothing switched."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def switch_reindex(self, info: EmbedderInfo, version: int) -> bool:
        if not self.reached.is_set():
            self.reached.set()
            await self.release.wait()
        return await self._store.switch_reindex(info, version)


@dataclass
class Indexed:
    """The test corpus ingested with the old embedder; `store` will reindex, `other` is another process."""

    store: Store
    other: Store
    chunks: int


async def opened(backend: Backend, folder: Path) -> Store:
    store = backend.make(folder)
    await store.open()
    return store


@pytest.fixture
async def indexed(backend: Backend, tmp_path: Path) -> AsyncIterator[Indexed]:
    store = await opened(backend, tmp_path)
    other = await opened(backend, tmp_path)
    try:
        old = old_embedder()
        await bind_embedder(store, old)
        await bind_embedder(other, old)
        summary = await ingest(store, old, [CORPUS], "docs")
        assert summary.chunks > 3 * SCAN_BATCH  # several scan steps
        yield Indexed(store, other, summary.chunks)
    finally:
        await other.close()
        await store.close()
        backend.cleanup(tmp_path)


async def all_chunks(store: Store) -> list[ChunkRecord]:
    """Every chunk (ids are small and dense in these tests, on both backends)."""
    return await store.get_chunks(list(range(1, 2000)))


async def assert_vectors_from(store: Store, embedder: HashEmbedder) -> None:
    """Every chunk's stored vector is `embedder`'s vector of the text ingestion embeds for it."""
    for record in await all_chunks(store):
        vector = await embedder.embed_query(text_of(record))
        if not np.any(vector):
            continue  # a chunk without words has no direction to find it by
        ranked = await store.search_vector(vector, source=record.source, limit=10)
        assert any(item.chunk_id == record.chunk_id and item.score > 0.999 for item in ranked), record.path


def text_of(record: ChunkRecord) -> str:
    return embedding_text(record.title, ChunkInput(0, record.heading, record.text, 0, 0))


async def document(embedder: HashEmbedder, path: str, *texts: str) -> DocumentInput:
    chunks = [ChunkInput(i, "", text, i + 1, i + 1) for i, text in enumerate(texts)]
    vectors = await embedder.embed([embedding_text(path, chunk) for chunk in chunks])
    content = "\n\n".join(texts)
    return DocumentInput(path, path, f"hash-of-{content}", content, chunks, vectors)


async def known_answer_found(store: Store, embedder: HashEmbedder) -> bool:
    query, path, _heading = KNOWN_ANSWERS[1]
    hits = await SearchService(store, embedder, cache_size=0).search(query, limit=3)
    return path in [hit.path for hit in hits]


# -- the switch -----------------------------------------------------------------------------------


async def test_reindex_moves_the_store_to_the_new_embedder(indexed: Indexed) -> None:
    new = new_embedder()
    version = await indexed.store.corpus_version()

    summary = await reindex(indexed.store, new, scan_batch=SCAN_BATCH)

    assert (summary.switched, summary.chunks, summary.passes) == (True, indexed.chunks, 1)
    assert summary.previous == old_embedder().info
    assert await indexed.store.embedder_info() == new.info
    assert await indexed.other.embedder_info() == new.info
    assert await indexed.store.corpus_version() > version
    await assert_vectors_from(indexed.store, new)
    assert await known_answer_found(indexed.store, new)


async def test_other_processes_search_the_old_vectors_until_the_switch(indexed: Indexed) -> None:
    new = GatedEmbedder(dimension=NEW_DIMENSION, gate_at=3)  # two steps staged, the third waits
    running = asyncio.create_task(reindex(indexed.store, new, scan_batch=SCAN_BATCH))
    await asyncio.wait_for(new.reached.wait(), 30)

    old = old_embedder()
    assert await indexed.other.embedder_info() == old.info
    await assert_vectors_from(indexed.other, old)
    assert await known_answer_found(indexed.other, old)

    new.release.set()
    summary = await running
    assert summary.switched
    assert await indexed.other.embedder_info() == new.info
    await assert_vectors_from(indexed.other, new)


async def test_an_ingest_committed_before_the_switch_is_re_embedded(indexed: Indexed, tmp_path: Path) -> None:
    paused = PausedSwitch(indexed.store)
    new = new_embedder()
    running = asyncio.create_task(reindex(paused, new, scan_batch=SCAN_BATCH))  # type: ignore[arg-type]
    await asyncio.wait_for(paused.reached.wait(), 30)

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "late.md").write_text("# Late page\n\nWritten while the reindex ran: zanzibarite quorum.\n")
    await ingest(indexed.other, old_embedder(), [extra], "extra")  # old vectors, committed
    paused.release.set()
    summary = await running

    assert summary.passes == 2
    assert summary.chunks == indexed.chunks + 1
    await assert_vectors_from(indexed.store, new)
    [late] = await indexed.store.search_text("zanzibarite", source="extra", limit=5)
    assert late.chunk_id in [record.chunk_id for record in await all_chunks(indexed.store)]


async def test_an_ingest_for_the_old_embedder_is_refused_after_the_switch(indexed: Indexed) -> None:
    await reindex(indexed.store, new_embedder(), scan_batch=SCAN_BATCH)
    version = await indexed.store.corpus_version()

    with pytest.raises(EmbedderMismatchError, match="docserver reindex"):
        async with indexed.other.update_source("docs") as writer:
            await writer.put_document(await document(old_embedder(), "stale.md", "old model vectors"))

    assert await indexed.store.corpus_version() == version
    await assert_vectors_from(indexed.store, new_embedder())


@pytest.mark.parametrize("backend", [POSTGRESQL], ids=["postgresql"], indirect=True)
async def test_postgres_an_ingest_in_flight_holds_off_the_switch(
    indexed: Indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_reindex, "WRITERS_WAIT_MS", 100)
    paused = PausedSwitch(indexed.store)
    new = new_embedder()
    running = asyncio.create_task(reindex(paused, new, scan_batch=SCAN_BATCH))  # type: ignore[arg-type]
    await asyncio.wait_for(paused.reached.wait(), 30)

    async with indexed.other.update_source("docs") as writer:
        await writer.put_document(await document(old_embedder(), "inflight.md", "written during the switch"))
        with pytest.raises(StoreBusyError):
            await indexed.store.switch_reindex(new.info, await indexed.store.corpus_version())
    paused.release.set()
    summary = await running

    assert summary.passes == 2
    await assert_vectors_from(indexed.store, new)


async def test_a_reused_chunk_id_with_new_text_is_re_embedded(tmp_path: Path) -> None:
    store = await opened(SQLITE, tmp_path)
    other = await opened(SQLITE, tmp_path)
    old, new = old_embedder(), new_embedder()
    try:
        await bind_embedder(store, old)
        await bind_embedder(other, old)
        async with store.update_source("docs") as writer:
            await writer.put_document(await document(old, "a.md", "alpha one", "alpha two"))
            await writer.put_document(await document(old, "z.md", "zulu one", "zulu two"))
        [zulu] = await store.search_text("zulu one", source=None, limit=1)
        paused = PausedSwitch(store)
        running = asyncio.create_task(reindex(paused, new, scan_batch=SCAN_BATCH))  # type: ignore[arg-type]
        await asyncio.wait_for(paused.reached.wait(), 30)

        # SQLite gives the ids freed by a delete to the next chunks inserted.
        async with other.update_source("docs") as writer:
            await writer.delete_documents(["z.md"])
            await writer.put_document(await document(old, "y.md", "yankee one", "yankee two"))
        [yankee] = await store.search_text("yankee one", source=None, limit=1)
        assert yankee.chunk_id == zulu.chunk_id
        paused.release.set()
        summary = await running

        assert (summary.passes, summary.chunks) == (2, 4 + 2)
        await assert_vectors_from(store, new)
    finally:
        await other.close()
        await store.close()


@pytest.mark.parametrize("backend", [POSTGRESQL], ids=["postgresql"], indirect=True)
async def test_postgres_the_new_column_takes_the_old_ones_name_and_index(
    indexed: Indexed, backend: Backend, tmp_path: Path
) -> None:
    await reindex(indexed.store, new_embedder(), scan_batch=SCAN_BATCH)

    [(definition,)] = backend.execute(
        tmp_path, "SELECT indexdef FROM pg_indexes WHERE indexname = ?", ["chunks_embedding_hnsw"]
    )
    # Built over the side column at half precision, it follows the column to its new name.
    assert f"USING hnsw (((embedding)::halfvec({NEW_DIMENSION})) halfvec_cosine_ops)" in definition
    columns = dict(
        backend.execute(
            tmp_path,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'embeddings'::regclass AND attnum > 0 AND NOT attisdropped",
            (),
        )
    )
    assert columns["embedding"] == f"vector({NEW_DIMENSION})"
    assert "embedding_next" not in columns
    assert "reindexed" not in columns


@pytest.mark.parametrize("backend", [SQLITE], ids=["sqlite"], indirect=True)
async def test_sqlite_the_old_vector_table_is_dropped(indexed: Indexed, backend: Backend, tmp_path: Path) -> None:
    await reindex(indexed.store, new_embedder(), scan_batch=SCAN_BATCH)
    tables = backend.execute(
        tmp_path, "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'", ()
    )
    # The new table and its approximate index (see store/sqlite_vector_index.py); nothing of the old one.
    assert sorted(name for (name,) in tables) == ["chunk_vectors_1", "chunks_fts"]
    names = backend.execute(tmp_path, "SELECT name FROM sqlite_master WHERE type = 'table'", ())
    suffixes = ("centroids", "full", "lists")
    index = [(name,) for (name,) in names if str(name).endswith(tuple(f"_{suffix}" for suffix in suffixes))]
    assert sorted(name for (name,) in index) == [f"chunk_vectors_1_{suffix}" for suffix in suffixes]
    assert backend.execute(tmp_path, "SELECT COUNT(*) FROM reindex_fingerprints", ()) == [(0,)]


# -- interruptions and reruns ---------------------------------------------------------------------


async def test_an_embedder_failure_leaves_the_old_index_and_a_rerun_finishes(indexed: Indexed) -> None:
    failing = FailingEmbedder(dimension=NEW_DIMENSION, fail_at=3)
    with pytest.raises(EmbeddingError):
        await reindex(indexed.store, failing, scan_batch=SCAN_BATCH)

    old = old_embedder()
    assert await indexed.store.embedder_info() == old.info
    await assert_vectors_from(indexed.other, old)
    assert await known_answer_found(indexed.other, old)

    summary = await reindex(indexed.store, new_embedder(), scan_batch=SCAN_BATCH)
    assert summary.chunks == indexed.chunks - 2 * SCAN_BATCH  # what the first run staged is kept
    await assert_vectors_from(indexed.store, new_embedder())


async def test_a_rerun_for_another_embedder_starts_afresh(indexed: Indexed) -> None:
    with pytest.raises(EmbeddingError):
        await reindex(indexed.store, FailingEmbedder(dimension=NEW_DIMENSION, fail_at=3), scan_batch=SCAN_BATCH)

    other_new = HashEmbedder(dimension=48, batch_size=SCAN_BATCH)
    summary = await reindex(indexed.store, other_new, scan_batch=SCAN_BATCH)

    assert summary.chunks == indexed.chunks
    assert await indexed.store.embedder_info() == other_new.info
    await assert_vectors_from(indexed.store, other_new)


async def test_reindexing_to_the_recorded_embedder_does_nothing(indexed: Indexed) -> None:
    same = GatedEmbedder(dimension=OLD_DIMENSION, gate_at=0)
    version = await indexed.store.corpus_version()

    summary = await reindex(indexed.store, same, scan_batch=SCAN_BATCH)

    assert not summary.switched
    assert "already uses hash/hash-ngram-v2-128 (128 dimensions)" in summary.line()
    assert same.calls == 0
    assert await indexed.store.corpus_version() == version


async def test_force_re_embeds_with_the_recorded_embedder(indexed: Indexed) -> None:
    version = await indexed.store.corpus_version()
    summary = await reindex(indexed.store, old_embedder(), force=True, scan_batch=SCAN_BATCH)
    assert (summary.switched, summary.chunks) == (True, indexed.chunks)
    assert await indexed.store.corpus_version() > version
    await assert_vectors_from(indexed.other, old_embedder())


@pytest.mark.parametrize("bound", [True, False], ids=["bound", "never-bound"])
async def test_an_empty_store_is_just_bound(backend: Backend, tmp_path: Path, bound: bool) -> None:
    store = await opened(backend, tmp_path)
    try:
        if bound:
            await bind_embedder(store, old_embedder())
        new = new_embedder()
        summary = await reindex(store, new)
        assert (summary.switched, summary.chunks) == (True, 0)
        assert await store.embedder_info() == new.info
        async with store.update_source("docs") as writer:
            await writer.put_document(await document(new, "a.md", "after the reindex"))
        await assert_vectors_from(store, new)
    finally:
        await store.close()
        backend.cleanup(tmp_path)


# -- what it reports ------------------------------------------------------------------------------


async def test_the_summary_line_names_the_count_the_embedder_and_the_time(indexed: Indexed) -> None:
    summary = await reindex(indexed.store, new_embedder(), scan_batch=SCAN_BATCH)
    assert re.fullmatch(
        rf"re-embedded {indexed.chunks} chunks with hash/hash-ngram-v2-96 \(96 dimensions\) in \d+\.\d s; "
        "the index now uses it",
        summary.line(),
    )


async def test_reindex_logs_its_start_and_end(indexed: Indexed) -> None:
    with capture_events() as events:
        await reindex(indexed.store, new_embedder(), scan_batch=SCAN_BATCH)
    by_name = {event["event"]: event for event in events}
    started, finished = by_name["reindex_started"], by_name["reindex_finished"]
    assert started["chunks"] == indexed.chunks
    assert (finished["from_embedder"], finished["to_embedder"]) == (
        "hash/hash-ngram-v2-128 (128 dimensions)",
        "hash/hash-ngram-v2-96 (96 dimensions)",
    )
    assert (finished["chunks"], finished["passes"]) == (indexed.chunks, 1)
    assert finished["duration_ms"] > 0


async def test_store_work_is_timed_under_reindex_operation_names(
    indexed: Indexed, backend: Backend, tmp_path: Path
) -> None:
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    timed = backend.make(tmp_path, metrics.for_store())  # the indexed database, through an instrumented store
    await timed.open()
    try:
        await reindex(timed, new_embedder(), scan_batch=SCAN_BATCH)
    finally:
        await timed.close()
    for operation in ("reindex_prepare", "reindex_scan", "reindex_write", "reindex_switch"):
        count = metrics.registry.get_sample_value(
            "docserver_query_duration_seconds_count", {"operation": operation, "backend": backend.name}
        )
        assert count, operation


# -- the command ----------------------------------------------------------------------------------

SUMMARY = re.compile(
    r"^re-embedded (?P<chunks>\d+) chunks with hash/hash-ngram-v2-512 \(512 dimensions\) in \d+\.\d s; "
    r"the index now uses it$"
)


@pytest.mark.slow
def test_cli_a_changed_embedder_is_told_to_reindex_and_reindex_fixes_it(embedding_server: str, tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    openai_env = docserver_env(
        database,
        {
            "DOCSERVER_EMBEDDER": "openai",
            "DOCSERVER_EMBEDDING_URL": embedding_server,
            "DOCSERVER_EMBEDDING_MODEL": "test-embed",
        },
    )
    hash_env = docserver_env(database)
    ingested = run_cli("ingest", str(CORPUS), "--source", "docs", env=openai_env)
    assert ingested.returncode == 0, ingested.stderr

    refused = run_cli("search", "restore a snapshot", env=hash_env)
    assert_one_line_error(
        refused,
        "openai/test-embed (256 dimensions)",
        "hash/hash-ngram-v2-512 (512 dimensions)",
        "run `docserver reindex`",
    )

    result = run_cli("reindex", env=hash_env)
    assert result.returncode == 0, result.stderr
    match = SUMMARY.match(result.stdout.strip())
    assert match is not None, result.stdout
    assert int(match.group("chunks")) > 0

    searched = run_cli("search", "restore a snapshot", "--json", env=hash_env)
    assert searched.returncode == 0, searched.stderr
    assert "guide/backup.mdx" in [hit["path"] for hit in json.loads(searched.stdout)]
    again = run_cli("reindex", env=hash_env)
    assert again.returncode == 0, again.stderr
    assert "already uses hash/hash-ngram-v2-512" in again.stdout
    assert_one_line_error(run_cli("sources", env=openai_env), "run `docserver reindex`")


def test_summary_line_of_an_unchanged_index() -> None:
    info = EmbedderInfo("hash", "hash-ngram-v2-512", 512)
    assert ReindexSummary(info, info).line() == (
        "the index already uses hash/hash-ngram-v2-512 (512 dimensions); nothing to do "
        "(--force re-embeds every chunk anyway)"
    )


@pytest.mark.parametrize("backend", [POSTGRESQL], ids=["postgresql"], indirect=True)
async def test_postgres_a_text_two_versions_share_is_embedded_once_and_progress_counts_chunks(
    indexed: Indexed,
) -> None:
    await ingest(indexed.store, old_embedder(), [CORPUS], "docs@2")  # a second version, every page the same
    seen: list[tuple[int, int]] = []
    summary = await reindex(
        indexed.store, new_embedder(), scan_batch=SCAN_BATCH, progress=lambda done, total: seen.append((done, total))
    )
    assert summary.chunks == indexed.chunks  # each distinct text once, not once per version
    assert seen[-1] == (2 * indexed.chunks, 2 * indexed.chunks)
    [vector] = await new_embedder().embed(["install"])
    for version in ("docs", "docs@2"):  # both versions' chunks found through the shared vectors
        assert len(await indexed.store.search_vector(vector, source=version, limit=3)) == 3
