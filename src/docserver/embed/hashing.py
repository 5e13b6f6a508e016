"""The built-in embedder: feature hashing of words, word pairs and character n-grams.

Offline, deterministic across processes and machines, no model to download.
It captures shared vocabulary (including word fragments, so "configure" and
"configuration" meet), not meaning; the `openai` provider is for that.

Speed, which decides how fast real documentation ingests: a word's features
(the word and its n-grams) and a word pair's are hashed once and kept, in
bounded caches, as (bucket, signed weight); a text's features are gathered by
C loops (map, chain) rather than a Python statement per feature; and a batch's
features are added into its vectors by one `np.add.at`, in the order the texts
name them. Those are the float32 additions of adding the features one at a
time, in the same order, so the vectors are the same to the last bit
(tests/test_hash_embedder.py holds that reference loop).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from hashlib import blake2b
from itertools import chain, pairwise
from operator import itemgetter

import numpy as np

from docserver.embed.base import BatchObserver, Embedder, Vectors, normalize

# Letters and digits of any script, so text without Latin words still embeds.
_WORD = re.compile(r"[^\W_]+(?:[_'][^\W_]+)*")
_WORD_WEIGHT = 1.0
_PAIR_WEIGHT = 0.7
_NGRAM_WEIGHT = 0.35
_NGRAM = 4
DEFAULT_DIMENSION = 512

WORD_CACHE_SIZE = 32_768
"""Words whose features are kept (Python's manual uses about 34,000)."""
PAIR_CACHE_SIZE = 131_072
"""Word pairs whose feature is kept. With the words, about 45 MB when both are full: 59 MB were
held for 22,087 words and 236,568 pairs of Python's docs (tracemalloc). Twice these sizes were
no faster on Python's docs (3,570 to 3,690 chunks/s against 3,852 to 3,871), as most pairs occur once."""

_buckets, _weights = itemgetter(0), itemgetter(1)


def feature_slot(feature: str, dimension: int) -> tuple[int, float]:
    """Bucket and sign of a feature; signed hashing keeps collisions unbiased."""
    digest = int.from_bytes(blake2b(feature.encode(), digest_size=8).digest(), "little")
    return digest % dimension, (1.0 if digest >> 63 else -1.0)


class _FeatureCache(dict[str, tuple[object, object]]):
    """Features by word (or word pair), computed on first use; emptied when full, so its memory is bounded."""

    def __init__(self, compute: Callable[[str], tuple[object, object]], size: int) -> None:
        super().__init__()
        self._compute = compute
        self.size = size

    def __missing__(self, key: str) -> tuple[object, object]:
        value = self[key] = self._compute(key)
        return value


class HashEmbedder(Embedder):
    """Feature-hashed bag of words, word pairs and character 4-grams, L2-normalised."""

    provider = "hash"

    def __init__(
        self, *, dimension: int = DEFAULT_DIMENSION, batch_size: int = 256, observer: BatchObserver | None = None
    ) -> None:
        super().__init__(
            model=f"hash-ngram-v2-{dimension}", dimension=dimension, batch_size=batch_size, observer=observer
        )
        self._words = _FeatureCache(self._word_features, WORD_CACHE_SIZE)
        self._pairs = _FeatureCache(self._pair_feature, PAIR_CACHE_SIZE)

    def _word_features(self, word: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """The word's bucket, then its character 4-grams' (of `<word>`), with their signed weights."""
        padded = f"<{word}>"
        features = [(word, _WORD_WEIGHT)]
        features += [
            (padded[start : start + _NGRAM], _NGRAM_WEIGHT) for start in range(max(1, len(padded) - _NGRAM + 1))
        ]
        slots = [(*feature_slot(feature, self.dimension), weight) for feature, weight in features]
        return tuple(index for index, _, _ in slots), tuple(sign * weight for _, sign, weight in slots)

    def _pair_feature(self, pair: str) -> tuple[int, float]:
        index, sign = feature_slot(pair, self.dimension)
        return index, sign * _PAIR_WEIGHT

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        for cache in (self._words, self._pairs):
            if len(cache) > cache.size:
                cache.clear()
        buckets: list[int] = []
        weights: list[float] = []
        counts = [self._features(text, buckets, weights) for text in texts]
        flat = np.repeat(np.arange(len(texts), dtype=np.intp) * self.dimension, counts)
        flat += np.array(buckets, dtype=np.intp)
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        # np.add.at adds unbuffered, in order: a bucket named twice gets both additions, one after the other.
        np.add.at(rows.reshape(-1), flat, np.array(weights, dtype=np.float32))
        return normalize(rows)

    def _features(self, text: str, buckets: list[int], weights: list[float]) -> int:
        """Append the text's features (each word with its n-grams, then the word pairs); returns their count."""
        words = _WORD.findall(text.lower())
        before = len(buckets)
        per_word = list(map(self._words.__getitem__, words))
        buckets.extend(chain.from_iterable(map(_buckets, per_word)))
        weights.extend(chain.from_iterable(map(_weights, per_word)))
        per_pair = list(map(self._pairs.__getitem__, map(" ".join, pairwise(words))))
        buckets.extend(map(_buckets, per_pair))
        weights.extend(map(_weights, per_pair))
        return len(buckets) - before
