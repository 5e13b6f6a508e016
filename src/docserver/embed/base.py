"""The Embedder interface: a provider implements `embed_batch`; the base class batches."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from opentelemetry.trace import SpanKind

from docserver.errors import EmbeddingError
from docserver.observability import tracing
from docserver.observability.logging import get_logger
from docserver.observability.metrics import EMBEDDING_ERROR_REASONS, Metrics
from docserver.store.base import EmbedderInfo, Vectors

__all__ = ["Embedder", "Vectors", "normalize"]

log = get_logger("docserver.embed")


class Embedder(ABC):
    """Turns texts into vectors of a fixed dimension."""

    provider: str
    """A fixed label (`hash`, `openai`); safe as a metric label."""

    def __init__(self, *, model: str, dimension: int, batch_size: int) -> None:
        self.model = model
        self.dimension = dimension
        self.batch_size = batch_size
        self._metrics: Metrics | None = None
        self._slow_seconds = float("inf")

    def instrument(self, metrics: Metrics | None, *, slow_seconds: float) -> None:
        """Time every batch, record its size and errors from now on; warn when one is slow."""
        self._metrics = metrics
        self._slow_seconds = slow_seconds
        if metrics is not None:
            self._duration = metrics.embedding_duration.labels(self.provider, self.model)
            self._sizes = metrics.embedding_batch_size.labels(self.provider)
            self._errors = {
                reason: metrics.embedding_errors.labels(self.provider, reason) for reason in EMBEDDING_ERROR_REASONS
            }

    async def _observed_batch(self, texts: Sequence[str]) -> Vectors:
        """`embed_batch`, measured: the embedder owns its batches, so it instruments them here, once."""
        metrics = self._metrics
        started = time.perf_counter()
        with tracing.span(f"embeddings {self.model}", SpanKind.CLIENT, self._span_attributes(len(texts))) as span:
            try:
                return await self.embed_batch(texts)
            except EmbeddingError as exc:
                if metrics is not None and exc.reason in self._errors:
                    self._errors[exc.reason].inc()
                tracing.mark_error(span, exc.reason)
                raise
            finally:
                self._observe(metrics, len(texts), time.perf_counter() - started)

    def _span_attributes(self, size: int) -> dict[str, Any]:
        return {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": self.provider,
            "gen_ai.request.model": self.model,
            "docserver.embedding.batch_size": size,
        }

    def _observe(self, metrics: Metrics | None, size: int, elapsed: float) -> None:
        if metrics is not None:
            self._duration.observe(elapsed, metrics.exemplar())
            self._sizes.observe(size)
        if elapsed > self._slow_seconds:
            log.warning(
                "slow_embedding_batch",
                provider=self.provider,
                model=self.model,
                batch_size=size,
                duration_ms=round(elapsed * 1000, 3),
            )

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
