"""`docserver reindex`: re-embed every stored chunk with the configured embedder, then switch to it.

The new vectors are built beside the current ones, which keep answering
searches (in this process and in every other) until the store swaps them in,
in one short transaction. Ingests may go on meanwhile: the store switches only
if, under the lock ingests take, nothing was committed since the last scan
began; otherwise the scan runs again and embeds what changed. An interruption
leaves the current index as it was; running again reuses what was staged for
the same embedder.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from docserver.embed.base import Embedder
from docserver.errors import StoreBusyError, StoreError
from docserver.ingest.pipeline import ProgressFn, embedding_text
from docserver.observability import tracing
from docserver.observability.logging import get_logger
from docserver.store.base import ChunkInput, EmbedderInfo, PendingChunk, Store

T = TypeVar("T")
log = get_logger("docserver.reindex")

SCAN_BATCH = 512
"""Chunks read, embedded and staged per step: one short write transaction each."""
MAX_ATTEMPTS = 100
"""Scans (or tries for a busy lock) before giving up: ingests that never pause would keep a reindex going forever."""
RETRY_FIRST_DELAY = 0.2
RETRY_MAX_DELAY = 5.0
"""Backoff bounds (seconds) between tries for a lock another writer holds."""


@dataclass(slots=True)
class ReindexSummary:
    """What one reindex did, for the summary line and for tests."""

    target: EmbedderInfo
    previous: EmbedderInfo | None
    chunks: int = 0
    """Chunks embedded by this run (those staged by an interrupted run are not embedded again)."""
    passes: int = 0
    """Scans over the chunks: more than one when ingests committed during the reindex."""
    seconds: float = 0.0
    switched: bool = False
    """False when the index already used the embedder and nothing was done."""

    def line(self) -> str:
        if not self.switched:
            return (
                f"the index already uses {self.target.describe()}; nothing to do (--force re-embeds every chunk anyway)"
            )
        return (
            f"re-embedded {self.chunks} chunks with {self.target.describe()} in {self.seconds:.1f} s; "
            "the index now uses it"
        )


async def reindex(
    store: Store,
    embedder: Embedder,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    scan_batch: int = SCAN_BATCH,
) -> ReindexSummary:
    """Make `store`'s vectors come from `embedder` (see the module docstring); `progress` gets (chunks, total)."""
    target = embedder.info
    summary = ReindexSummary(target, await store.embedder_info())
    if summary.previous == target and not force:
        return summary
    started = time.perf_counter()
    total = sum(source.chunks for source in await store.list_sources())
    names = {
        "from_embedder": summary.previous.describe() if summary.previous else None,
        "to_embedder": target.describe(),
    }
    log.info("reindex_started", chunks=total, **names)
    with tracing.root_span("reindex", {"docserver.embedder": target.describe(), "docserver.chunks": total}):
        if total == 0:
            await store.bind_embedder(target)  # nothing to re-embed
        else:
            await _reindex(store, embedder, summary, total, progress, scan_batch)
    summary.switched = True
    summary.seconds = time.perf_counter() - started
    log.info(
        "reindex_finished",
        chunks=summary.chunks,
        passes=summary.passes,
        duration_ms=round(summary.seconds * 1000, 3),
        **names,
    )
    return summary


async def _reindex(
    store: Store,
    embedder: Embedder,
    summary: ReindexSummary,
    total: int,
    progress: ProgressFn | None,
    scan_batch: int,
) -> None:
    target = summary.target
    await _retrying("prepare", partial(store.prepare_reindex, target))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        version = await store.corpus_version()
        summary.passes += 1
        summary.chunks += await _embed_pending(store, embedder, total, progress, scan_batch)
        await store.index_reindexed()
        if await _retrying("switch", partial(store.switch_reindex, target, version)):
            return
        log.info("reindex_retry", step="switch", reason="corpus_changed", attempt=attempt)
    raise StoreError(
        f"ingests changed the documentation during each of {MAX_ATTEMPTS} scans, so the reindex could not "
        "finish; the current index is unchanged: run `docserver reindex` again when ingests pause"
    )


async def _embed_pending(
    store: Store, embedder: Embedder, total: int, progress: ProgressFn | None, scan_batch: int
) -> int:
    """One scan over every chunk, embedding those without a new vector; returns how many were embedded."""
    after, scanned, embedded = 0, 0, 0
    while True:
        batch = await store.reindex_batch(after, scan_batch)
        if batch.pending:
            vectors = await embedder.embed([_text(chunk) for chunk in batch.pending])
            await _retrying("write", partial(store.put_reindexed, batch.pending, vectors))
            embedded += len(batch.pending)
        before, scanned = scanned, scanned + batch.scanned
        if progress:
            progress(min(scanned, total), total)
        if 10 * scanned // total > 10 * before // total:  # a log line per tenth, not per batch
            log.info("reindex_progress", chunks=min(scanned, total), total=total, embedded=embedded)
        if batch.last_id is None:
            return embedded
        after = batch.last_id


def _text(chunk: PendingChunk) -> str:
    """Exactly what ingestion embedded for this chunk, so both embed the same text."""
    return embedding_text(chunk.title, ChunkInput(0, chunk.heading, chunk.text, 0, 0))


async def _retrying(step: str, call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, tried again with backoff while another writer holds the lock it needs."""
    delay = RETRY_FIRST_DELAY
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return await call()
        except StoreBusyError as exc:
            if attempt == MAX_ATTEMPTS:
                raise StoreBusyError(
                    f"{exc}, {attempt} times in a row; the current index is unchanged: run `docserver reindex` again"
                ) from None
            log.info("reindex_retry", step=step, reason="busy", attempt=attempt, error=str(exc))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # backoff, not synchronisation
            delay = min(delay * 2, RETRY_MAX_DELAY)
    raise AssertionError("unreachable: the last attempt returns or raises")
