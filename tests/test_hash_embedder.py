"""The built-in `hash` embedder: the vectors of its definition, to the last bit, whatever the batch.

Stored vectors were made by earlier versions of the embedder, and a search
compares a new query's vector with them: a faster implementation must give the
same vectors. The reference below is the definition, one feature at a time.
"""

from __future__ import annotations

import re
from hashlib import blake2b
from itertools import pairwise
from pathlib import Path

import numpy as np

from docserver.embed.base import normalize
from docserver.embed.hashing import HashEmbedder
from docserver.ingest.chunk import chunk_document
from docserver.ingest.discover import read_text

DOCS = Path(__file__).resolve().parents[1] / "docs"


def reference_vector(text: str, dimension: int = 512) -> np.ndarray:
    """Each word, its character 4-grams and each word pair, hashed and added one at a time, in float32."""
    row = np.zeros(dimension, dtype=np.float32)

    def add(feature: str, weight: float) -> None:
        digest = int.from_bytes(blake2b(feature.encode(), digest_size=8).digest(), "little")
        row[digest % dimension] += (1.0 if digest >> 63 else -1.0) * weight

    words = re.findall(r"[^\W_]+(?:[_'][^\W_]+)*", text.lower())
    for word in words:
        add(word, 1.0)
        padded = f"<{word}>"
        for start in range(max(1, len(padded) - 3)):
            add(padded[start : start + 4], 0.35)
    for first, second in pairwise(words):
        add(f"{first} {second}", 0.7)
    return normalize(row[np.newaxis, :])[0]


def real_chunks() -> list[str]:
    texts = []
    for page in sorted(DOCS.glob("*.md")):
        _, chunks = chunk_document(read_text(page), ".md")
        texts += [chunk.text for chunk in chunks]
    return texts


EDGE_CASES = ["", "   ", "a", "ab", "x_y it's", "日本語のテキスト", "Ünïcode wörds", "repeat repeat repeat repeat"]


async def test_vectors_are_the_definitions_to_the_last_bit() -> None:
    texts = real_chunks() + EDGE_CASES
    vectors = await HashEmbedder().embed(texts)
    expected = np.stack([reference_vector(text) for text in texts])
    assert vectors.dtype == np.float32
    assert np.array_equal(vectors, expected)


async def test_a_text_gets_the_same_vector_alone_in_a_batch_and_again() -> None:
    texts = real_chunks()[:40]
    embedder = HashEmbedder(batch_size=16)
    together = await embedder.embed(texts)
    alone = np.stack([await embedder.embed_query(text) for text in reversed(texts)])[::-1]
    again = await HashEmbedder(batch_size=7).embed(texts)
    assert np.array_equal(together, alone)
    assert np.array_equal(together, again)


async def test_shared_words_and_fragments_bring_texts_together() -> None:
    embedder = HashEmbedder()
    query, near, far = await embedder.embed(["configure the server", "server configuration", "bake bread"])
    assert float(query @ near) > float(query @ far) + 0.2
