"""The Embedder interface: a provider implements `embed_batch`; the base class batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from docserver.store.base import EmbedderInfo, Vectors

__all__ = ["Embedder", "Vectors", "normalize"]


class Embedder(ABC):
    """Turns texts into vectors of a fixed dimension."""

    provider: str
    """A fixed label (`hash`, `openai`); safe as a metric label."""

    def __init__(self, *, model: str, dimension: int, batch_size: int) -> None:
        self.model = model
        self.dimension = dimension
        self.batch_size = batch_size

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
            await self.embed_batch(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        return parts[0] if len(parts) == 1 else np.vstack(parts)

    async def embed_query(self, text: str) -> Vectors:
        """One vector (a 1-D row) for a search query."""
        rows = await self.embed_batch([text])
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
