"""Bench only: make `hash` search as `local` and `openai` do: both retrievers, dense query vectors.

bench/search_scale.py --vector-search puts this folder on the server's
PYTHONPATH. Every search then embeds its query (with `hash`, about 0.1 ms:
the query embedding is left out, as the goal asks) and searches the vectors
too. A hash query vector is sparse, and the store searches sparse vectors
exactly (store/sqlite_vector_index.py); a fixed random rotation makes it
dense, as a language model's are, so the search takes the path theirs take,
over the same lists and rows. The answers are then meaningless; the work and
the latency are what is measured here (recall: bench/vector_index.py).
"""

import numpy as np

from docserver import search
from docserver.embed import hashing

search.FUSION_BY_PROVIDER["hash"] = search.FUSION_BY_PROVIDER["local"]
_ROTATION = np.linalg.qr(np.random.default_rng(0).standard_normal((hashing.DEFAULT_DIMENSION,) * 2))[0]
_embed_batch = hashing.HashEmbedder.embed_batch


async def _dense_batch(self, texts):  # type: ignore[no-untyped-def]
    vectors = np.asarray(await _embed_batch(self, texts), dtype=np.float32)
    return (vectors @ _ROTATION.T).astype(np.float32) if len(texts) == 1 else vectors


hashing.HashEmbedder.embed_batch = _dense_batch  # type: ignore[method-assign]
