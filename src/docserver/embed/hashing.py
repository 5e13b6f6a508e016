"""The built-in embedder: feature hashing of words, word pairs and character n-grams.

Offline, deterministic across processes and machines, no model to download.
It captures shared vocabulary (including word fragments, so "configure" and
"configuration" meet), not meaning; the `openai` provider is for that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from hashlib import blake2b
from itertools import pairwise

import numpy as np

from docserver.embed.base import BatchObserver, Embedder, Vectors, normalize

# Letters and digits of any script, so text without Latin words still embeds.
_WORD = re.compile(r"[^\W_]+(?:[_'][^\W_]+)*")
_WORD_WEIGHT = 1.0
_PAIR_WEIGHT = 0.7
_NGRAM_WEIGHT = 0.35
_NGRAM = 4
DEFAULT_DIMENSION = 512


@lru_cache(maxsize=262_144)
def _slot(feature: str, dimension: int) -> tuple[int, float]:
    """Bucket and sign of a feature; signed hashing keeps collisions unbiased."""
    digest = int.from_bytes(blake2b(feature.encode(), digest_size=8).digest(), "little")
    return digest % dimension, (1.0 if digest >> 63 else -1.0)


class HashEmbedder(Embedder):
    """Feature-hashed bag of words, word pairs and character 4-grams, L2-normalised."""

    provider = "hash"

    def __init__(
        self, *, dimension: int = DEFAULT_DIMENSION, batch_size: int = 256, observer: BatchObserver | None = None
    ) -> None:
        super().__init__(
            model=f"hash-ngram-v2-{dimension}", dimension=dimension, batch_size=batch_size, observer=observer
        )

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in zip(rows, texts, strict=True):
            self._accumulate(row, text)
        return normalize(rows)

    def _accumulate(self, row: Vectors, text: str) -> None:
        words = _WORD.findall(text.lower())
        dimension = self.dimension
        for word in words:
            index, sign = _slot(word, dimension)
            row[index] += sign * _WORD_WEIGHT
            padded = f"<{word}>"
            for start in range(max(1, len(padded) - _NGRAM + 1)):
                index, sign = _slot(padded[start : start + _NGRAM], dimension)
                row[index] += sign * _NGRAM_WEIGHT
        for first, second in pairwise(words):
            index, sign = _slot(f"{first} {second}", dimension)
            row[index] += sign * _PAIR_WEIGHT
