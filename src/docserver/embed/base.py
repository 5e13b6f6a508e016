"""The Embedder interface: a provider implements `embed_batch`; the base class batches."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from opentelemetry.trace import SpanKind

from docserver.errors import EmbeddingError
from docserver.observability import tracing
from docserver.observability.instruments import EmbedderInstruments
from docserver.observability.logging import get_logger
from docserver.observability.metrics import EMBEDDING_ERROR_REASONS
from docserver.store.base import EmbedderInfo, Vectors

__all__ = ["BatchObserver", "Embedder", "Vectors", "normalize"]

log = get_logger("docserver.embed")

SLOW_BATCH_LOG_INTERVAL = 30.0
"""Seconds between two `slow_embedding_batch` lines for batches of several texts (ingest, reindex);
the next line counts the slow batches left out."""


class BatchObserver:
    """Times every batch, records its size and errors, and warns when one is slow.

    The embedder owns its batches, so it observes them, once, here. Handed to
    the embedder at construction; `instruments` is None with metrics off.

    `slow_seconds` is a time per text: a batch is slow when it took longer than
    that for each text in it. A search's query is a batch of one, so for searches
    this is the plain batch time; an ingest batch of 64 texts costs about 64 times
    one text with every provider (the local model computes per text, an API
    bills and works per token), so a fixed per-batch threshold fired on the
    batch's size, once per batch, for a provider working at its normal speed.
    Per text, a warning means a slow provider. A search's slow query is logged
    every time, with its request's correlation id, as a slow store query is.
    A slow provider stays slow for a whole ingest, though: for batches of
    several texts one line per `SLOW_BATCH_LOG_INTERVAL` says so, and the slow
    batches in between are counted (`suppressed` on the next line), not
    logged; the duration histogram has every batch.
    """

    __slots__ = ("_clock", "_instruments", "_next_warning", "_slow_seconds", "_suppressed")

    def __init__(
        self,
        instruments: EmbedderInstruments | None = None,
        *,
        slow_seconds: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._instruments = instruments
        self._slow_seconds = slow_seconds
        self._clock = clock
        self._next_warning = float("-inf")
        self._suppressed = 0

    def register(self, embedder: Embedder) -> None:
        """Create the embedder's series at zero, so rates and alerts work from the first scrape."""
        if self._instruments is not None:
            for reason in EMBEDDING_ERROR_REASONS:
                self._instruments.errors(embedder.provider, reason)

    async def run(self, embedder: Embedder, texts: Sequence[str]) -> Vectors:
        started = time.perf_counter()
        attributes = _span_attributes(embedder, len(texts))
        with tracing.span(f"embeddings {embedder.model}", SpanKind.CLIENT, attributes) as span:
            try:
                return await embedder.embed_batch(texts)
            except EmbeddingError as exc:
                if self._instruments is not None and exc.reason in EMBEDDING_ERROR_REASONS:
                    self._instruments.errors(embedder.provider, exc.reason).inc()
                tracing.mark_error(span, exc.reason)
                raise
            finally:
                self._observe(embedder, len(texts), time.perf_counter() - started)

    def _observe(self, embedder: Embedder, size: int, elapsed: float) -> None:
        instruments = self._instruments
        if instruments is not None:
            instruments.duration(embedder.provider, embedder.model).observe(elapsed, instruments.exemplar())
            instruments.batch_size(embedder.provider).observe(size)
        if elapsed > self._slow_seconds * max(size, 1):
            if size <= 1:
                _warn_slow(embedder, size, elapsed, suppressed=0)
            else:
                self._warn_slow_bulk(embedder, size, elapsed)

    def _warn_slow_bulk(self, embedder: Embedder, size: int, elapsed: float) -> None:
        now = self._clock()
        if now < self._next_warning:
            self._suppressed += 1
            return
        self._next_warning = now + SLOW_BATCH_LOG_INTERVAL
        _warn_slow(embedder, size, elapsed, suppressed=self._suppressed)
        self._suppressed = 0


def _warn_slow(embedder: Embedder, size: int, elapsed: float, *, suppressed: int) -> None:
    log.warning(
        "slow_embedding_batch",
        provider=embedder.provider,
        model=embedder.model,
        batch_size=size,
        duration_ms=round(elapsed * 1000, 3),
        suppressed=suppressed,
    )


def _span_attributes(embedder: Embedder, size: int) -> dict[str, Any] | None:
    if tracing.sampled_span() is None:
        return None
    return {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": embedder.provider,
        "gen_ai.request.model": embedder.model,
        "docserver.embedding.batch_size": size,
    }


_UNOBSERVED = BatchObserver()


class Embedder(ABC):
    """Turns texts into vectors of a fixed dimension."""

    provider: str
    """A fixed label (`hash`, `openai`); safe as a metric label."""

    def __init__(self, *, model: str, dimension: int, batch_size: int, observer: BatchObserver | None = None) -> None:
        self.model = model
        self.dimension = dimension
        self.batch_size = batch_size
        self._observer = observer or _UNOBSERVED
        self._observer.register(self)

    async def _observed_batch(self, texts: Sequence[str]) -> Vectors:
        return await self._observer.run(self, texts)

    @property
    def info(self) -> EmbedderInfo:
        return EmbedderInfo(self.provider, self.model, self.dimension)

    @abstractmethod
    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed at most `batch_size` texts in one call to the provider."""

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed any number of texts, `batch_size` at a time."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [
            await self._observed_batch(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        return parts[0] if len(parts) == 1 else np.vstack(parts)

    async def embed_query(self, text: str) -> Vectors:
        """One vector (a 1-D row) for a search query."""
        rows = await self._observed_batch([text])
        row: Vectors = rows[0]
        return row

    async def ping(self) -> None:
        """Raise EmbeddingError when the provider cannot embed right now."""
        await self.embed_batch(["ping"])

    async def aclose(self) -> None:
        """Release connections; the default has none."""
        return None


def normalize(rows: Vectors) -> Vectors:
    """L2-normalise each row in place (zero rows stay zero) and return the array."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    np.divide(rows, norms, out=rows, where=norms > 0)
    return rows
